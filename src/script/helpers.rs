//! The helper library registered in the script engine: Entra's attribute-mapping
//! functions with Entra's argument order and null handling, so that an expression
//! from the Entra portal translates line by line, plus regex helpers for scoping.
//!
//! Null (`()`) flows through the way Entra documents: most string functions return
//! `()` for a `()` source, which a mapping can then use to leave an attribute alone.

use rhai::{Array, Dynamic, Engine, ImmutableString};
use std::cell::RefCell;
use std::collections::HashMap;
use unicode_normalization::UnicodeNormalization;

pub use crate::ids::random_hex as random_token_hex;

/// Random alphanumeric text, for tests and scripts.
pub fn random_token(n: usize) -> String {
    crate::ids::random_hex(n)
}

fn s(d: &Dynamic) -> Option<String> {
    if d.is_unit() {
        None
    } else if d.is_string() {
        d.clone().into_string().ok()
    } else {
        Some(d.to_string())
    }
}

fn is_null_or_empty(d: &Dynamic) -> bool {
    d.is_unit()
        || (d.is_string()
            && d.clone()
                .into_string()
                .map(|x| x.is_empty())
                .unwrap_or(false))
}

fn opt(v: Option<String>) -> Dynamic {
    v.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Result<regex::Regex, String>>> = RefCell::new(HashMap::new());
}

/// Compiled regexes are cached: a scoping rule runs once per object.
fn with_regex<T>(
    pattern: &str,
    f: impl FnOnce(&regex::Regex) -> T,
) -> Result<T, Box<rhai::EvalAltResult>> {
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 256 {
            c.clear();
        }
        let entry = c
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).map_err(|e| e.to_string()));
        match entry {
            Ok(re) => Ok(f(re)),
            Err(e) => Err(format!("bad regular expression {pattern:?}: {e}").into()),
        }
    })
}

/// Entra's NormalizeDiacritics: decompose and drop combining marks, plus the letters
/// that have no decomposition.
pub fn normalize_diacritics(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.nfd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        match c {
            'ø' => out.push('o'),
            'Ø' => out.push('O'),
            'æ' => out.push_str("ae"),
            'Æ' => out.push_str("AE"),
            'œ' => out.push_str("oe"),
            'Œ' => out.push_str("OE"),
            'ß' => out.push_str("ss"),
            'đ' => out.push('d'),
            'Đ' => out.push('D'),
            'ł' => out.push('l'),
            'Ł' => out.push('L'),
            'ı' => out.push('i'),
            other => out.push(other),
        }
    }
    out
}

fn coalesce(args: &[Dynamic]) -> Dynamic {
    args.iter()
        .find(|a| !is_null_or_empty(a))
        .cloned()
        .unwrap_or(Dynamic::UNIT)
}

fn join(sep: &str, parts: &[Dynamic]) -> Dynamic {
    let mut items: Vec<String> = Vec::new();
    for p in parts {
        if p.is_array() {
            if let Some(a) = p.clone().try_cast::<Array>() {
                items.extend(a.iter().filter_map(s));
            }
        } else if let Some(x) = s(p) {
            items.push(x);
        }
    }
    Dynamic::from(items.join(sep))
}

/// Registers every helper.
pub fn register(e: &mut Engine) {
    // rhai's own `append(string, x)` appends in place and returns (); these concrete
    // overloads are registered on the engine, so they win over the package version.
    fn append(src: &Dynamic, suffix: &Dynamic) -> Dynamic {
        match s(src) {
            None => Dynamic::UNIT,
            Some(a) => Dynamic::from(a + s(suffix).unwrap_or_default().as_str()),
        }
    }
    e.register_fn("append", |a: ImmutableString, b: ImmutableString| {
        append(&a.into(), &b.into())
    });
    e.register_fn("append", |a: ImmutableString, b: ()| {
        append(&a.into(), &b.into())
    });
    e.register_fn("append", |a: (), b: ImmutableString| {
        append(&a.into(), &b.into())
    });
    e.register_fn("append", |a: Dynamic, b: Dynamic| append(&a, &b));
    e.register_fn("is_null", |v: Dynamic| v.is_unit());
    e.register_fn("is_null_or_empty", |v: Dynamic| is_null_or_empty(&v));
    e.register_fn("is_present", |v: Dynamic| !is_null_or_empty(&v));
    e.register_fn("is_string", |v: Dynamic| v.is_string());
    e.register_fn("not", |v: bool| !v);
    e.register_fn(
        "iif",
        |c: bool, t: Dynamic, f: Dynamic| if c { t } else { f },
    );
    e.register_fn(
        "to_lower",
        |v: Dynamic| opt(s(&v).map(|x| x.to_lowercase())),
    );
    e.register_fn(
        "to_upper",
        |v: Dynamic| opt(s(&v).map(|x| x.to_uppercase())),
    );
    e.register_fn("strip_spaces", |v: Dynamic| {
        opt(s(&v).map(|x| x.replace(' ', "")))
    });
    e.register_fn("normalize_diacritics", |v: Dynamic| {
        opt(s(&v).map(|x| normalize_diacritics(&x)))
    });
    e.register_fn("left", |v: Dynamic, n: i64| {
        opt(s(&v).map(|x| x.chars().take(n.max(0) as usize).collect()))
    });
    e.register_fn("mid", |v: Dynamic, start: i64, len: i64| {
        // Entra's Mid is 1-based.
        opt(s(&v).map(|x| {
            x.chars()
                .skip((start.max(1) - 1) as usize)
                .take(len.max(0) as usize)
                .collect()
        }))
    });
    e.register_fn("word", |v: Dynamic, n: i64, delims: ImmutableString| {
        opt(s(&v).and_then(|x| {
            let words: Vec<&str> = x
                .split(|c: char| delims.contains(c))
                .filter(|w| !w.is_empty())
                .collect();
            if n < 1 {
                None
            } else {
                words.get((n - 1) as usize).map(|w| w.to_string())
            }
        }))
    });
    e.register_fn(
        "regex_match",
        |v: Dynamic, pattern: ImmutableString| -> Result<bool, Box<rhai::EvalAltResult>> {
            match s(&v) {
                None => Ok(false),
                Some(x) => with_regex(&pattern, |re| re.is_match(&x)),
            }
        },
    );
    e.register_fn(
        "regex_replace",
        |v: Dynamic,
         pattern: ImmutableString,
         rep: ImmutableString|
         -> Result<Dynamic, Box<rhai::EvalAltResult>> {
            match s(&v) {
                None => Ok(Dynamic::UNIT),
                Some(x) => with_regex(&pattern, |re| {
                    Dynamic::from(re.replace_all(&x, rep.as_str()).into_owned())
                }),
            }
        },
    );
    e.register_fn("single_app_role", |roles: Dynamic| -> Dynamic {
        match roles.try_cast::<Array>() {
            Some(a) => a
                .into_iter()
                .filter_map(|r| s(&r))
                .find(|r| r != crate::source::directory::DEFAULT_ACCESS)
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT),
            None => Dynamic::UNIT,
        }
    });
    e.register_fn(
        "switch_value",
        |src: Dynamic, default: Dynamic, pairs: Array| -> Dynamic {
            let key = s(&src);
            for kv in pairs.chunks(2) {
                if kv.len() == 2 && s(&kv[0]) == key {
                    return kv[1].clone();
                }
            }
            default
        },
    );
    e.register_fn("coalesce", |a: Array| coalesce(&a));
    e.register_fn("coalesce", |a: Dynamic, b: Dynamic| coalesce(&[a, b]));
    e.register_fn("coalesce", |a: Dynamic, b: Dynamic, c: Dynamic| {
        coalesce(&[a, b, c])
    });
    e.register_fn(
        "coalesce",
        |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| coalesce(&[a, b, c, d]),
    );
    e.register_fn("join", |sep: ImmutableString, a: Dynamic| join(&sep, &[a]));
    e.register_fn("join", |sep: ImmutableString, a: Dynamic, b: Dynamic| {
        join(&sep, &[a, b])
    });
    e.register_fn(
        "join",
        |sep: ImmutableString, a: Dynamic, b: Dynamic, c: Dynamic| join(&sep, &[a, b, c]),
    );
    e.register_fn(
        "join",
        |sep: ImmutableString, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
            join(&sep, &[a, b, c, d])
        },
    );
    e.register_fn("guid", crate::ids::guid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str) -> Dynamic {
        let e = crate::script::engine();
        e.eval::<Dynamic>(expr)
            .unwrap_or_else(|err| panic!("{expr}: {err}"))
    }

    #[test]
    fn documented_examples() {
        assert_eq!(
            eval(r#"append("john.doe", "@contoso.com")"#).to_string(),
            "john.doe@contoso.com"
        );
        assert!(eval(r#"append((), "@contoso.com")"#).is_unit());
        assert_eq!(eval(r#"normalize_diacritics("Zoë")"#).to_string(), "Zoe");
        assert_eq!(
            eval(r#"strip_spaces("Hello World ")"#).to_string(),
            "HelloWorld"
        );
        assert_eq!(
            eval(r#"coalesce((), "", "x@y.com")"#).to_string(),
            "x@y.com"
        );
        assert_eq!(eval(r#"join(",", "a", (), "b")"#).to_string(), "a,b");
        assert_eq!(eval(r#"switch_value("NSW", "Australia/Sydney", ["QLD", "Australia/Brisbane", "NSW", "Australia/Sydney2"])"#).to_string(), "Australia/Sydney2");
        assert_eq!(
            eval(r#"word("The quick brown fox", 3, " ")"#).to_string(),
            "brown"
        );
        assert_eq!(eval(r#"mid("John Doe", 3, 5)"#).to_string(), "hn Do");
        assert_eq!(eval(r#"left("John Doe", 3)"#).to_string(), "Joh");
        assert!(eval(r#"regex_match("svc-backup@x.com", "^svc-")"#)
            .as_bool()
            .unwrap_or(false));
        assert_eq!(
            eval(r#"single_app_role(["Default Access", "Admin"])"#).to_string(),
            "Admin"
        );
    }

    #[test]
    fn bad_regex_is_an_error() {
        let e = crate::script::engine();
        assert!(e.eval::<bool>(r#"regex_match("x", "(")"#).is_err());
    }
}
