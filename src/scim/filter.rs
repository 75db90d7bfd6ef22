//! SCIM filter expressions (RFC 7644 §3.4.2.2): the builder the client uses for
//! matching, and the parser/evaluator the emulator serves them with.
//!
//! The builder escapes `"` and `\` so that a name like `a"b` cannot inject filter
//! syntax; the parser is strict and says where a filter went wrong.

use crate::scim::attribute::{get_ci, AttrPath};
use serde_json::Value;

/// Escapes a filter string value: `"` and `\` get a backslash.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Reverses `escape` (JSON string escapes, as RFC 7644 values are JSON strings).
pub fn unescape(s: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{s}\""))
        .unwrap_or_else(|_| s.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// `path eq "value"`, escaped.
pub fn eq(path: &str, value: &str) -> String {
    format!("{path} eq \"{}\"", escape(value))
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(String),
    Compare(String, Op, Value),
    /// `emails[type eq "work" and value co "x"]`
    Complex(String, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Parses a filter; the error says at which character it failed.
pub fn parse(input: &str) -> Result<Filter, String> {
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
        src: input,
    };
    let f = p.or_expr()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected {:?} at {}", &input[p.i..], p.i));
    }
    Ok(f)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.i + kw.len();
        // Compared as bytes: a multi-byte character there is simply not the keyword
        // (slicing the text could split it).
        if end <= self.s.len()
            && self.s[self.i..end].eq_ignore_ascii_case(kw.as_bytes())
            && (end == self.s.len() || !self.s[end].is_ascii_alphanumeric())
        {
            self.i = end;
            true
        } else {
            false
        }
    }
    fn or_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Filter, String> {
        self.ws();
        if self.keyword("not") {
            self.ws();
            if self.peek() != Some(b'(') {
                return Err(format!("expected '(' after not at {}", self.i));
            }
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(b'(') {
            self.i += 1;
            let f = self.or_expr()?;
            self.ws();
            if self.peek() != Some(b')') {
                return Err(format!("expected ')' at {}", self.i));
            }
            self.i += 1;
            return Ok(f);
        }
        let path = self.attr_path()?;
        self.ws();
        if self.peek() == Some(b'[') {
            self.i += 1;
            let inner = self.or_expr()?;
            self.ws();
            if self.peek() != Some(b']') {
                return Err(format!("expected ']' at {}", self.i));
            }
            self.i += 1;
            // `emails[type eq "work"].value eq "x"` : a sub-attribute after the filter.
            if self.peek() == Some(b'.') {
                self.i += 1;
                let sub = self.attr_path()?;
                let op = self.op()?;
                let v = self.value()?;
                let sub_cmp = Filter::Compare(sub, op, v);
                return Ok(Filter::Complex(
                    path,
                    Box::new(Filter::And(Box::new(inner), Box::new(sub_cmp))),
                ));
            }
            return Ok(Filter::Complex(path, Box::new(inner)));
        }
        if self.keyword("pr") {
            return Ok(Filter::Present(path));
        }
        let op = self.op()?;
        let v = self.value()?;
        Ok(Filter::Compare(path, op, v))
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn attr_path(&mut self) -> Result<String, String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'$') {
                self.i += 1;
            } else {
                break;
            }
        }
        if start == self.i {
            return Err(format!("expected an attribute name at {start}"));
        }
        Ok(self.src[start..self.i].to_string())
    }
    fn op(&mut self) -> Result<Op, String> {
        for (kw, op) in [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("co", Op::Co),
            ("sw", Op::Sw),
            ("ew", Op::Ew),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("le", Op::Le),
        ] {
            if self.keyword(kw) {
                return Ok(op);
            }
        }
        Err(format!("expected an operator at {}", self.i))
    }
    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        if self.peek() == Some(b'"') {
            let start = self.i;
            self.i += 1;
            while self.i < self.s.len() {
                match self.s[self.i] {
                    b'\\' => self.i += 2,
                    b'"' => {
                        self.i += 1;
                        return serde_json::from_str(&self.src[start..self.i])
                            .map_err(|e| format!("bad string at {start}: {e}"));
                    }
                    _ => self.i += 1,
                }
            }
            return Err(format!("unterminated string at {start}"));
        }
        for (kw, v) in [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ] {
            if self.keyword(kw) {
                return Ok(v);
            }
        }
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_digit()
                || matches!(self.s[self.i], b'-' | b'.' | b'e' | b'E' | b'+'))
        {
            self.i += 1;
        }
        serde_json::from_str(&self.src[start..self.i])
            .map_err(|_| format!("expected a value at {start}"))
    }
}

/// Attributes whose values compare case-sensitively (RFC 7643 `caseExact`).
fn case_exact(attr: &str) -> bool {
    let a = attr.rsplit('.').next().unwrap_or(attr);
    a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("externalId")
}

impl Filter {
    /// Evaluates the filter against a resource.
    pub fn matches(&self, r: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(r) && b.matches(r),
            Filter::Or(a, b) => a.matches(r) || b.matches(r),
            Filter::Not(a) => !a.matches(r),
            Filter::Present(p) => values_at(r, p)
                .iter()
                .any(|v| !v.is_null() && v != &&Value::String(String::new())),
            Filter::Compare(p, op, want) => values_at(r, p)
                .iter()
                .any(|v| compare(v, *op, want, case_exact(p))),
            Filter::Complex(p, inner) => match resolve(r, p) {
                Some(Value::Array(items)) => items.iter().any(|e| inner.matches(e)),
                Some(v @ Value::Object(_)) => inner.matches(v),
                _ => false,
            },
        }
    }
}

fn resolve<'a>(r: &'a Value, path: &str) -> Option<&'a Value> {
    AttrPath::parse(path).ok()?.get(r)
}

/// All values at a path; `emails.value` looks into every element of `emails`.
fn values_at<'a>(r: &'a Value, path: &str) -> Vec<&'a Value> {
    let Ok(p) = AttrPath::parse(path) else {
        return vec![];
    };
    let container = match &p.schema {
        None => Some(r),
        Some(urn) => get_ci(r, urn),
    };
    let Some(base) = container.and_then(|c| get_ci(c, &p.attr)) else {
        return vec![];
    };
    match (&p.sub, base) {
        (Some(s), Value::Array(items)) => items.iter().filter_map(|e| get_ci(e, s)).collect(),
        (Some(s), v) => get_ci(v, s).into_iter().collect(),
        (None, Value::Array(items)) => items
            .iter()
            .map(|e| get_ci(e, "value").unwrap_or(e))
            .collect(),
        (None, v) => vec![v],
    }
}

fn compare(have: &Value, op: Op, want: &Value, exact: bool) -> bool {
    match (have, want) {
        (Value::String(h), Value::String(w)) => {
            let (h, w) = if exact {
                (h.clone(), w.clone())
            } else {
                (h.to_lowercase(), w.to_lowercase())
            };
            match op {
                Op::Eq => h == w,
                Op::Ne => h != w,
                Op::Co => h.contains(&w),
                Op::Sw => h.starts_with(&w),
                Op::Ew => h.ends_with(&w),
                Op::Gt => h > w,
                Op::Ge => h >= w,
                Op::Lt => h < w,
                Op::Le => h <= w,
            }
        }
        (Value::Bool(h), Value::Bool(w)) => match op {
            Op::Eq => h == w,
            Op::Ne => h != w,
            _ => false,
        },
        (Value::Number(h), Value::Number(w)) => {
            let (h, w) = (h.as_f64().unwrap_or(0.0), w.as_f64().unwrap_or(0.0));
            match op {
                Op::Eq => h == w,
                Op::Ne => h != w,
                Op::Gt => h > w,
                Op::Ge => h >= w,
                Op::Lt => h < w,
                Op::Le => h <= w,
                _ => false,
            }
        }
        (h, Value::Null) => matches!(op, Op::Eq) == h.is_null(),
        _ => matches!(op, Op::Ne),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escape_blocks_injection() {
        let f = eq("userName", "a\" or userName pr or \"\\");
        let parsed = parse(&f).expect("parse");
        assert!(
            matches!(parsed, Filter::Compare(_, Op::Eq, _)),
            "{parsed:?}"
        );
        let r = json!({"userName":"bob@x.com"});
        assert!(!parsed.matches(&r));
        let r2 = json!({"userName":"a\" or userName pr or \"\\"});
        assert!(parsed.matches(&r2));
    }

    #[test]
    fn evaluates_common_filters() {
        let r = json!({"userName":"Bob@X.com","externalId":"E1","active":true,
            "emails":[{"type":"work","value":"bob@x.com"}]});
        assert!(parse("userName eq \"bob@x.com\"").expect("p").matches(&r));
        assert!(!parse("externalId eq \"e1\"").expect("p").matches(&r));
        assert!(parse("emails[type eq \"work\"].value eq \"bob@x.com\"")
            .expect("p")
            .matches(&r));
        assert!(parse("emails.value eq \"bob@x.com\" and active eq true")
            .expect("p")
            .matches(&r));
        assert!(parse("not (userName sw \"z\")").expect("p").matches(&r));
        assert!(parse("userName eq").is_err());
    }
}
