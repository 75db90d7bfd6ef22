//! Entra expressions and scoping clauses as rhai, with scimsync's Entra function
//! library (Entra's argument order, so the translation is one call per call).
//!
//! What cannot be said in rhai with the same meaning is an error naming the
//! function, operator or attribute — never a silent drop.

use super::expression::Expr;
use std::collections::BTreeSet;

/// The record a generated function reads: `user` or `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    User,
    Group,
}

impl Record {
    pub fn var(self) -> &'static str {
        match self {
            Record::User => "user",
            Record::Group => "group",
        }
    }
}

/// An Entra function: its rhai name and how many arguments it takes.
struct Function {
    entra: &'static str,
    rhai: &'static str,
    min: usize,
    max: usize,
}

const fn f(entra: &'static str, rhai: &'static str, min: usize, max: usize) -> Function {
    Function {
        entra,
        rhai,
        min,
        max,
    }
}

const MANY: usize = 64;

/// Entra's function library (functions-for-customizing-application-data) and
/// scimsync's name for each. `Join`, `Coalesce`, `SelectUniqueValue` and `Switch`
/// take their variable part as one array.
const FUNCTIONS: &[Function] = &[
    f("Append", "append", 2, 2),
    f("BitAnd", "bit_and", 2, 2),
    f("CBool", "cbool", 1, 1),
    f("CDate", "cdate", 1, 1),
    f("Coalesce", "coalesce", 1, MANY),
    f("ConvertToBase64", "convert_to_base64", 1, 1),
    f("ConvertToUTF8Hex", "convert_to_utf8_hex", 1, 1),
    f("Count", "count", 1, 1),
    f("CStr", "cstr", 1, 1),
    f("DateAdd", "date_add", 3, 3),
    f("DateDiff", "date_diff", 3, 3),
    f("DateFromNum", "date_from_num", 1, 1),
    f("FormatDateTime", "format_date_time", 3, 4),
    f("Guid", "guid", 0, 0),
    f(
        "IgnoreFlowIfNullOrEmpty",
        "ignore_flow_if_null_or_empty",
        1,
        1,
    ),
    f("IIF", "iif", 3, 3),
    f("InStr", "instr", 2, 4),
    f("IsNull", "is_null", 1, 1),
    f("IsNullOrEmpty", "is_null_or_empty", 1, 1),
    f("IsPresent", "is_present", 1, 1),
    f("IsString", "is_string", 1, 1),
    f("Item", "item", 2, 2),
    f("Join", "join", 1, MANY),
    f("Left", "left", 2, 2),
    f("Len", "len", 1, 1),
    f("Mid", "mid", 3, 3),
    f("NormalizeDiacritics", "normalize_diacritics", 1, 1),
    f("Not", "not", 1, 1),
    f("Now", "now", 0, 0),
    f("NumFromDate", "num_from_date", 1, 1),
    f("PCase", "pcase", 1, 2),
    f("RandomString", "random_string", 5, 6),
    f("Redact", "redact", 1, 1),
    f("RemoveDuplicates", "remove_duplicates", 1, 1),
    f("Replace", "replace", 2, 7),
    f("SelectUniqueValue", "select_unique_value", 1, MANY),
    f("SingleAppRoleAssignment", "single_app_role", 1, 1),
    f("Split", "split", 2, 2),
    f("StripSpaces", "strip_spaces", 1, 1),
    f("Switch", "switch_value", 2, MANY),
    f("ToLower", "to_lower", 1, 2),
    f("ToUpper", "to_upper", 1, 2),
    f("Word", "word", 3, 3),
];

/// Entra functions scimsync leaves out, and why (said in the error).
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "AppRoleAssignmentsComplex",
        "Dropbox takes no roles; scimsync sends one role with SingleAppRoleAssignment",
    ),
    (
        "AssertiveAppRoleAssignmentsComplex",
        "Dropbox takes no roles; scimsync sends one role with SingleAppRoleAssignment",
    ),
    (
        "DefaultDomain",
        "scimsync does not read the tenant's domains; write the domain as a constant",
    ),
];

/// How many of Entra's functions the translator covers.
pub fn function_count() -> usize {
    FUNCTIONS.len()
}

/// Entra's names of the directory's attributes → where the Graph-shaped record
/// keeps them (the file source and Graph give the same record).
fn record_field(name: &str, record: Record) -> Option<String> {
    let v = record.var();
    let field = match name {
        "objectId" => format!("{v}.id"),
        "appRoleAssignments" => format!("{v}.appRoles"),
        "physicalDeliveryOfficeName" => format!("{v}.officeLocation"),
        "mobile" => format!("{v}.mobilePhone"),
        "facsimileTelephoneNumber" => format!("{v}.faxNumber"),
        "telephoneNumber" => format!("item({v}.businessPhones, 1)"),
        // A mapping runs for objects in scope: soft deleted there means disabled.
        "IsSoftDeleted" => match record {
            Record::User => format!("!({v}.accountEnabled ?? true)"),
            Record::Group => "false".to_string(),
        },
        n if n.starts_with("extensionAttribute") => {
            format!("{v}.onPremisesExtensionAttributes?.{n}")
        }
        "manager" => return None,
        n if n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && n.starts_with(|c: char| c.is_ascii_alphabetic()) =>
        {
            format!("{v}.{n}")
        }
        n => format!("{v}[{}]", quote(n)),
    };
    Some(field)
}

/// The Graph user property an Entra attribute name reads (for the advice on
/// `[source] attributes`); `None` for what scimsync computes (`appRoles`).
pub fn graph_property(name: &str) -> Option<&str> {
    Some(match name {
        "objectId" => "id",
        "appRoleAssignments" => return None,
        "physicalDeliveryOfficeName" => "officeLocation",
        "mobile" => "mobilePhone",
        "facsimileTelephoneNumber" => "faxNumber",
        "telephoneNumber" => "businessPhones",
        "IsSoftDeleted" => "accountEnabled",
        n if n.starts_with("extensionAttribute") => "onPremisesExtensionAttributes",
        n => n,
    })
}

/// The directory attributes a translation reads (for the summary's advice on
/// `[source] attributes`).
#[derive(Default)]
pub struct Reads(pub BTreeSet<String>);

/// A rhai string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The rhai for one attribute of the record.
pub fn attribute(name: &str, record: Record, reads: &mut Reads) -> Result<String, String> {
    reads.0.insert(name.to_string());
    record_field(name, record).ok_or_else(|| {
        format!(
            "[{name}] is a reference attribute; scimsync does not resolve references to target ids"
        )
    })
}

/// The rhai for an expression.
pub fn expression(e: &Expr, record: Record, reads: &mut Reads) -> Result<String, String> {
    match e {
        Expr::Attribute(name) => attribute(name, record, reads),
        Expr::Text(t) => Ok(quote(t)),
        Expr::Number(n) => Ok(n.to_string()),
        Expr::Null => Ok("()".to_string()),
        Expr::Equals(..) => {
            Err("a condition `a = b` is allowed only as IIF's first argument".into())
        }
        Expr::Call(name, args) => call(name, args, record, reads),
    }
}

fn call(name: &str, args: &[Expr], record: Record, reads: &mut Reads) -> Result<String, String> {
    let Some(func) = FUNCTIONS
        .iter()
        .find(|f| f.entra.eq_ignore_ascii_case(name))
    else {
        return Err(
            match LEFT_OUT.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((n, why)) => format!("the function {n} is not translated: {why}"),
                None => format!("unknown function {name:?} (not in Entra's function library)"),
            },
        );
    };
    if args.len() < func.min || args.len() > func.max {
        let wanted = match (func.min, func.max) {
            (a, b) if a == b => format!("{a}"),
            (a, MANY) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(format!(
            "{} takes {wanted} argument(s), the expression gives {}",
            func.entra,
            args.len()
        ));
    }
    let mut out = vec![];
    for (i, a) in args.iter().enumerate() {
        out.push(match (func.entra, i, a) {
            ("IIF", 0, Expr::Equals(l, r)) => format!(
                "equals({}, {})",
                expression(l, record, reads)?,
                expression(r, record, reads)?
            ),
            _ => expression(a, record, reads)?,
        });
    }
    Ok(format!("{}({})", func.rhai, arguments(func.entra, out)?))
}

/// The argument list in the shape the rhai function takes.
fn arguments(entra: &str, mut a: Vec<String>) -> Result<String, String> {
    let array = |items: &[String]| format!("[{}]", items.join(", "));
    Ok(match entra {
        "Join" => format!("{}, {}", a[0], array(&a[1..])),
        "Coalesce" | "SelectUniqueValue" => array(&a),
        "Switch" => {
            if !a.len().is_multiple_of(2) {
                return Err(
                    "Switch needs a value for every key (key, value pairs after the default)"
                        .into(),
                );
            }
            format!("{}, {}, {}", a[0], a[1], array(&a[2..]))
        }
        // dateTimeStyles is optional in Entra and unused by scimsync.
        "FormatDateTime" if a.len() == 3 => {
            a.insert(1, "()".into());
            a.join(", ")
        }
        // Replace's trailing arguments are optional in Entra: null.
        "Replace" => {
            a.resize(7, "()".into());
            a.join(", ")
        }
        _ => a.join(", "),
    })
}

/// Entra's scoping operators → scimsync's functions of the same name and null rule.
pub fn clause(operator: &str, attribute_rhai: &str, values: &[String]) -> Result<String, String> {
    let op = operator.trim().to_ascii_uppercase();
    let unary = |f: &str| -> Result<String, String> {
        if !values.is_empty() {
            return Err(format!(
                "{operator} takes no value, the clause gives {}",
                values.len()
            ));
        }
        Ok(format!("{f}({attribute_rhai})"))
    };
    let one = || -> Result<&String, String> {
        match values {
            [v] => Ok(v),
            [] => Err(format!(
                "{operator} needs a value (targetOperand.values is empty)"
            )),
            _ => Err(format!(
                "{operator} with {} values: Entra compares with one value per clause",
                values.len()
            )),
        }
    };
    let binary = |f: &str| -> Result<String, String> {
        Ok(format!("{f}({attribute_rhai}, {})", quote(one()?)))
    };
    let number = |f: &str| -> Result<String, String> {
        let v = one()?;
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| format!("{operator} compares integers; {v:?} is not one"))?;
        Ok(format!("{f}({attribute_rhai}, {n})"))
    };
    match op.as_str() {
        "EQUALS" => binary("equals"),
        "NOT EQUALS" => binary("not_equals"),
        "IS TRUE" => unary("is_true"),
        "IS FALSE" => unary("is_false"),
        "IS NULL" => unary("is_null_or_empty"),
        "IS NOT NULL" => unary("is_present"),
        "REGEX MATCH" => binary("regex_match"),
        "NOT REGEX MATCH" => binary("not_regex_match"),
        "ENDS_WITH" => binary("ends_with"),
        "INCLUDES" => binary("includes"),
        "&" => binary("part_of"),
        "!&" => binary("not_part_of"),
        "GREATER_THAN" => number("greater_than"),
        "GREATER_THAN_OR_EQUALS" => number("greater_than_or_equals"),
        _ => Err(format!(
            "unknown scoping operator {operator:?} (Entra's are EQUALS, NOT EQUALS, IS TRUE, IS FALSE, IS NULL, IS NOT NULL, REGEX MATCH, NOT REGEX MATCH, ENDS_WITH, Includes, &, !&, Greater_Than, Greater_Than_OR_EQUALS)"
        )),
    }
}

/// How many of Entra's documented scoping operators `clause` covers.
pub const OPERATOR_COUNT: usize = 14;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::takeover::expression::parse;

    fn rhai(text: &str) -> Result<String, String> {
        let e = parse(text).map_err(|e| e.to_string())?;
        expression(&e, Record::User, &mut Reads::default())
    }

    #[test]
    fn expressions_become_library_calls() {
        assert_eq!(rhai("[objectId]").unwrap(), "user.id");
        assert_eq!(
            rhai(r#"Join(".", [givenName], [surname])"#).unwrap(),
            r#"join(".", [user.givenName, user.surname])"#
        );
        assert_eq!(
            rhai(r#"Switch([IsSoftDeleted], , "False", "True", "True", "False")"#).unwrap(),
            r#"switch_value(!(user.accountEnabled ?? true), (), ["False", "True", "True", "False"])"#
        );
        assert_eq!(
            rhai(r#"IIF([country]="USA", [country], [department])"#).unwrap(),
            r#"iif(equals(user.country, "USA"), user.country, user.department)"#
        );
        assert_eq!(
            rhai(r#"Replace([mail], "@old.com", , , "@new.com", , )"#).unwrap(),
            r#"replace(user.mail, "@old.com", (), (), "@new.com", (), ())"#
        );
        assert_eq!(
            rhai("[extensionAttribute3]").unwrap(),
            "user.onPremisesExtensionAttributes?.extensionAttribute3"
        );
        assert_eq!(rhai(r#""a \"b\"""#).unwrap(), r#""a \"b\"""#);
    }

    #[test]
    fn what_cannot_be_translated_is_named() {
        assert!(rhai("Frobnicate([mail])")
            .unwrap_err()
            .contains("Frobnicate"));
        assert!(rhai("Left([mail])").unwrap_err().contains("Left takes 2"));
        assert!(rhai("[manager]").unwrap_err().contains("reference"));
        assert!(rhai("AppRoleAssignmentsComplex([appRoleAssignments])")
            .unwrap_err()
            .contains("not translated"));
        assert!(clause("Less_Than", "user.x", &["1".into()])
            .unwrap_err()
            .contains("unknown scoping operator"));
        assert!(clause("Greater_Than", "user.x", &["ten".into()]).is_err());
        assert!(clause("EQUALS", "user.x", &[]).is_err());
    }
}
