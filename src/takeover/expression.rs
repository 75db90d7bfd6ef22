//! Entra's attribute-mapping expression language, parsed: what the portal's
//! expression box and a synchronization schema's `source.expression` hold.
//!
//! The syntax is small and VBA-like: `[attribute]`, `"text"` with `\` escaping `"`
//! and `\`, integers, `Function(arg, …)` with empty arguments meaning null, and in
//! `IIF` a condition `a = b`. Parsing is separate from translation so an error can
//! say exactly where in the expression it is.

use std::fmt;

/// One parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `[name]`: a source attribute.
    Attribute(String),
    /// `"text"`, escapes resolved.
    Text(String),
    /// An integer constant.
    Number(i64),
    /// An empty argument: null.
    Null,
    /// `Name(args…)`.
    Call(String, Vec<Expr>),
    /// `left = right`, the condition form of `IIF`.
    Equals(Box<Expr>, Box<Expr>),
}

/// Where parsing stopped and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based character position in the expression.
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at, self.message)
    }
}

/// Parses a whole expression; anything left over is an error.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    p.skip_space();
    if p.peek().is_none() {
        return Err(p.error("the expression is empty"));
    }
    let e = p.condition()?;
    p.skip_space();
    match p.peek() {
        None => Ok(e),
        Some(c) => Err(p.error(format!("unexpected {c:?} after a complete expression"))),
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            at: self.at + 1,
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// A term, optionally compared with `=` to another.
    fn condition(&mut self) -> Result<Expr, ParseError> {
        let left = self.term()?;
        self.skip_space();
        if self.peek() != Some('=') {
            return Ok(left);
        }
        self.at += 1;
        self.skip_space();
        let right = self.term()?;
        Ok(Expr::Equals(Box::new(left), Box::new(right)))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Some('[') => self.attribute(),
            Some('"') => self.text(),
            Some(c) if c.is_ascii_digit() || c == '-' => self.number(),
            Some(c) if c.is_alphabetic() => self.call(),
            Some(c) => Err(self.error(format!("unexpected {c:?}"))),
            None => Err(self.error("the expression ends too early")),
        }
    }

    fn attribute(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        self.at += 1;
        let mut name = String::new();
        loop {
            match self.peek() {
                Some(']') => break,
                Some(c) => name.push(c),
                None => {
                    self.at = start;
                    return Err(self.error("an attribute `[` is never closed by `]`"));
                }
            }
            self.at += 1;
        }
        self.at += 1;
        let name = name.trim().to_string();
        if name.is_empty() {
            self.at = start;
            return Err(self.error("an attribute name `[]` is empty"));
        }
        Ok(Expr::Attribute(name))
    }

    fn text(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                Some('"') => break,
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c) => out.push(c),
                        None => break,
                    }
                }
                Some(c) => out.push(c),
                None => break,
            }
            self.at += 1;
        }
        if self.peek() != Some('"') {
            self.at = start;
            return Err(self.error("a string constant is never closed by `\"`"));
        }
        self.at += 1;
        Ok(Expr::Text(out))
    }

    fn number(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        let mut digits = String::new();
        if self.peek() == Some('-') {
            digits.push('-');
            self.at += 1;
        }
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            digits.push(c);
            self.at += 1;
        }
        digits.parse().map(Expr::Number).map_err(|_| {
            self.at = start;
            self.error(format!("{digits:?} is not a whole number"))
        })
    }

    fn call(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.at += 1;
        }
        self.skip_space();
        if self.peek() != Some('(') {
            self.at = start;
            return Err(self.error(format!(
                "{name:?} is neither a function call nor a constant (attributes are written [{name}], text \"{name}\")"
            )));
        }
        self.at += 1;
        let mut args = vec![];
        self.skip_space();
        if self.peek() == Some(')') {
            self.at += 1;
            return Ok(Expr::Call(name, args));
        }
        loop {
            self.skip_space();
            // An empty argument (`Switch([a], , "x", "y")`) is null.
            let arg = match self.peek() {
                Some(',') | Some(')') => Expr::Null,
                _ => self.condition()?,
            };
            args.push(arg);
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(')') => {
                    self.at += 1;
                    return Ok(Expr::Call(name, args));
                }
                Some(c) => return Err(self.error(format!("expected `,` or `)`, found {c:?}"))),
                None => {
                    self.at = start;
                    return Err(self.error(format!("{name}( is never closed by `)`")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call(name.into(), args)
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(
            parse("[userPrincipalName]"),
            Ok(Expr::Attribute("userPrincipalName".into()))
        );
        assert_eq!(
            parse(r#""Company: \"Contoso\" \\ HQ""#),
            Ok(Expr::Text(r#"Company: "Contoso" \ HQ"#.into()))
        );
        assert_eq!(
            parse(r#"Switch([IsSoftDeleted], , "False", "True")"#),
            Ok(call(
                "Switch",
                vec![
                    Expr::Attribute("IsSoftDeleted".into()),
                    Expr::Null,
                    Expr::Text("False".into()),
                    Expr::Text("True".into())
                ]
            ))
        );
        assert_eq!(
            parse(r#"IIF([country]="USA", Mid([mail], 1, 8), Guid())"#),
            Ok(call(
                "IIF",
                vec![
                    Expr::Equals(
                        Box::new(Expr::Attribute("country".into())),
                        Box::new(Expr::Text("USA".into()))
                    ),
                    call(
                        "Mid",
                        vec![
                            Expr::Attribute("mail".into()),
                            Expr::Number(1),
                            Expr::Number(8)
                        ]
                    ),
                    call("Guid", vec![])
                ]
            ))
        );
    }

    #[test]
    fn errors_say_where() {
        let e = parse("Join(\".\", [givenName], [surname]").unwrap_err();
        assert_eq!(e.at, 1, "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        let e = parse("Left([mail], 3) extra").unwrap_err();
        assert_eq!(e.at, 17, "{e}");
        let e = parse("Left(mail, 3)").unwrap_err();
        assert!(e.message.contains("[mail]"), "{e}");
        assert!(parse("\"open").is_err());
        assert!(parse("").is_err());
    }
}
