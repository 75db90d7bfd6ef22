//! Splits a directory document (`{"users": [...], "groups": [...], ...}`) into its
//! top-level keys and the elements of their arrays, reading the file in blocks.
//!
//! Why by hand: a streaming JSON parser over `io::Read` goes byte by byte through
//! the reader (some 45 MB/s here); finding where an element ends is a much simpler
//! job, and each element is then parsed on its own from a slice at full speed. The
//! document is never held whole: memory is one block and one element.

use sha2::{Digest, Sha256};
use std::io::Read;

/// Where the document is not what it must be.
#[derive(Debug)]
pub(super) struct ScanError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// A JSON syntax error (else the document's shape).
    pub syntax: bool,
}

/// What is done with each top-level key and array element.
pub(super) trait Visit {
    /// A top-level key was read; whether its elements are wanted.
    fn key(&mut self, key: &str) -> Result<bool, String>;
    /// One element of the last key's array: its text, and where it starts.
    fn element(
        &mut self,
        index: usize,
        text: &str,
        line: usize,
        column: usize,
    ) -> Result<(), ScanError>;
}

/// A reader that hashes what passes through it and knows where it is.
struct Bytes<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    line: usize,
    column: usize,
    hash: Sha256,
}

impl<R: Read> Bytes<R> {
    fn peek(&mut self) -> Result<Option<u8>, ScanError> {
        if self.pos == self.len {
            self.len = self.inner.read(&mut self.buf).map_err(|e| ScanError {
                line: self.line,
                column: self.column,
                message: format!("cannot read: {e}"),
                syntax: false,
            })?;
            self.pos = 0;
            self.hash.update(&self.buf[..self.len]);
            if self.len == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn bump(&mut self) -> Result<Option<u8>, ScanError> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.pos += 1;
            if b == b'\n' {
                self.line += 1;
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        Ok(b)
    }

    fn error(&self, message: impl Into<String>) -> ScanError {
        ScanError {
            line: self.line,
            column: self.column,
            message: message.into(),
            syntax: true,
        }
    }

    fn skip_ws(&mut self) -> Result<(), ScanError> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.bump()?;
        }
        Ok(())
    }

    fn expect(&mut self, want: u8) -> Result<(), ScanError> {
        match self.bump()? {
            Some(b) if b == want => Ok(()),
            Some(b) => Err(self.error(format!(
                "expected `{}`, found `{}`",
                want as char, b as char
            ))),
            None => Err(self.error("EOF while parsing")),
        }
    }

    /// Moves over `n` bytes of the current block (appending them to `out`),
    /// keeping the line and column.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) {
        let chunk = &self.buf[self.pos..self.pos + n];
        out.extend_from_slice(chunk);
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.line += chunk.iter().filter(|&&b| b == b'\n').count();
                self.column = n - last - 1;
            }
            None => self.column += n,
        }
        self.pos += n;
    }

    /// One JSON value, its bytes appended to `out`: strings and nesting are
    /// followed; whether the value is valid JSON is for its parser to say. Scans
    /// a block at a time (this is the hot loop of reading a large file).
    fn value(&mut self, out: &mut Vec<u8>) -> Result<(), ScanError> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            if self.peek()?.is_none() {
                return Err(self.error("EOF while parsing a value"));
            }
            let block = &self.buf[self.pos..self.len];
            let mut end = None;
            for (j, &b) in block.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(j + 1);
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        end = Some(j);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j + 1);
                            break;
                        }
                    }
                    b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
            }
            match end {
                Some(n) => {
                    self.take(n, out);
                    return Ok(());
                }
                None => {
                    let n = self.len - self.pos;
                    self.take(n, out);
                }
            }
        }
    }
}

/// Reads the document from `r`, calling `visit` for each key and wanted element.
/// Returns the SHA-256 of everything read.
pub(super) fn scan(r: impl Read, visit: &mut dyn Visit) -> Result<String, ScanError> {
    let mut s = Bytes {
        inner: r,
        buf: vec![0u8; 1 << 16],
        pos: 0,
        len: 0,
        line: 1,
        column: 0,
        hash: Sha256::new(),
    };
    s.skip_ws()?;
    if s.peek()?.is_none() {
        return Err(s.error("EOF while parsing a value"));
    }
    if s.peek()? != Some(b'{') {
        return Err(ScanError {
            syntax: false,
            ..s.error("the top level must be an object with \"users\", \"groups\", \"assignments\"")
        });
    }
    s.bump()?;
    s.skip_ws()?;
    let mut element: Vec<u8> = Vec::with_capacity(4096);
    if s.peek()? == Some(b'}') {
        s.bump()?;
    } else {
        loop {
            members(&mut s, visit, &mut element)?;
            s.skip_ws()?;
            match s.bump()? {
                Some(b',') => s.skip_ws()?,
                Some(b'}') => break,
                _ => return Err(s.error("expected `,` or `}` after a top-level value")),
            }
        }
    }
    s.skip_ws()?;
    if s.peek()?.is_some() {
        return Err(s.error("trailing characters"));
    }
    Ok(format!("sha256:{:x}", s.hash.finalize()))
}

/// One top-level key and its array.
fn members<R: Read>(
    s: &mut Bytes<R>,
    visit: &mut dyn Visit,
    element: &mut Vec<u8>,
) -> Result<(), ScanError> {
    if s.peek()? != Some(b'"') {
        return Err(s.error("expected a key"));
    }
    element.clear();
    s.value(element)?;
    let key: String = serde_json::from_slice(element).map_err(|e| s.error(e.to_string()))?;
    s.skip_ws()?;
    s.expect(b':')?;
    s.skip_ws()?;
    let wanted = visit.key(&key).map_err(|m| ScanError {
        syntax: false,
        ..s.error(m)
    })?;
    match s.peek()? {
        Some(b'[') => {}
        None => return Err(s.error("EOF while parsing a value")),
        Some(_) => {
            return Err(ScanError {
                syntax: false,
                ..s.error(format!("\"{key}\" must be an array"))
            })
        }
    }
    s.bump()?;
    s.skip_ws()?;
    if s.peek()? == Some(b']') {
        s.bump()?;
        return Ok(());
    }
    let mut i = 0;
    loop {
        let (line, column) = (s.line, s.column);
        element.clear();
        s.value(element)?;
        if wanted {
            let text = std::str::from_utf8(element).map_err(|e| ScanError {
                line,
                column,
                message: format!("not UTF-8: {e}"),
                syntax: true,
            })?;
            visit.element(i, text, line, column)?;
        }
        i += 1;
        s.skip_ws()?;
        match s.bump()? {
            Some(b',') => s.skip_ws()?,
            Some(b']') => return Ok(()),
            _ => return Err(s.error(format!("expected `,` or `]` in \"{key}\""))),
        }
    }
}

/// Checks an element is JSON, with the error placed in the document.
pub(super) fn validate(text: &str, line: usize, column: usize) -> Result<(), ScanError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| ScanError {
            line: line + e.line() - 1,
            column: if e.line() == 1 {
                column + e.column()
            } else {
                e.column()
            },
            message: e.to_string(),
            syntax: true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(String, String)>, String);

    impl Visit for Collect {
        fn key(&mut self, key: &str) -> Result<bool, String> {
            self.1 = key.to_string();
            Ok(key != "skip")
        }
        fn element(
            &mut self,
            _: usize,
            text: &str,
            line: usize,
            column: usize,
        ) -> Result<(), ScanError> {
            validate(text, line, column)?;
            self.0.push((self.1.clone(), text.to_string()));
            Ok(())
        }
    }

    fn run(doc: &str) -> Result<Vec<(String, String)>, ScanError> {
        let mut c = Collect::default();
        scan(doc.as_bytes(), &mut c)?;
        Ok(c.0)
    }

    #[test]
    fn elements_come_whole_strings_and_nesting_included() -> Result<(), ScanError> {
        let got = run(
            r#" { "users" : [ {"id":"a]}\"","x":[1,{"y":"}"}]} , 7 , "s" ], "skip": [1, 2], "groups":[] } "#,
        )?;
        assert_eq!(
            got,
            vec![
                ("users".into(), r#"{"id":"a]}\"","x":[1,{"y":"}"}]}"#.into()),
                ("users".into(), "7".into()),
                ("users".into(), "\"s\"".into()),
            ]
        );
        Ok(())
    }

    #[test]
    fn errors_say_where() {
        let e = run("{\n\"users\": [\n{,}]}").err();
        assert!(e.as_ref().is_some_and(|e| e.line == 3 && e.syntax), "{e:?}");
        let e = run("{\"users\": {}}").err();
        assert!(e.is_some_and(|e| e.message.contains("must be an array") && !e.syntax));
        let e = run("{\"users\": [] } x").err();
        assert!(e.is_some_and(|e| e.message.contains("trailing")));
        let e = run("{\"users\": [1, 2").err();
        assert!(e.is_some_and(|e| e.message.contains("EOF")));
        assert!(run("[]").is_err());
        let e = run("{\"users\": [], \"assignments\": ").err();
        assert!(e.is_some_and(|e| e.syntax && e.message.contains("EOF")));
        assert!(run("  ").err().is_some_and(|e| e.syntax));
    }
}
