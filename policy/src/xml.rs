//! A small, strict XML pull tokenizer for busconfig files.
//!
//! It accepts what the configuration files need (elements, attributes,
//! character data, comments, processing instructions, CDATA, a DOCTYPE with
//! simple internal entity declarations, predefined entities and character
//! references) and reports malformed input the way expat does: the same error
//! strings, a 1-based line and a 0-based column counted in characters.

use std::collections::HashMap;

/// One parse event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `<name a="v">` (also emitted for `<name/>`, followed by an `End`).
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    /// `</name>`
    End { name: String },
    /// Character data (entities already replaced).
    Text(String),
}

/// A well-formedness error, positioned like expat positions it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct XmlError {
    /// expat's error string.
    pub msg: &'static str,
    /// 1-based line.
    pub line: usize,
    /// 0-based column, in characters.
    pub column: usize,
}

const INVALID: &str = "not well-formed (invalid token)";
const UNCLOSED: &str = "unclosed token";

/// The tokenizer state.
pub(crate) struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
    stack: Vec<String>,
    seen_root: bool,
    pending_end: Option<String>,
    entities: HashMap<String, String>,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn valid_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

impl<'a> Reader<'a> {
    /// A reader over `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Reader {
            s: text.as_bytes(),
            pos: 0,
            stack: Vec::new(),
            seen_root: false,
            pending_end: None,
            entities: HashMap::new(),
        }
    }

    /// The 1-based line the reader has reached (the end of the last event).
    pub(crate) fn line(&self) -> usize {
        position(self.s, "", self.pos.min(self.s.len())).line
    }

    /// The error `msg` at byte offset `at`.
    fn err<T>(&self, msg: &'static str, at: usize) -> Result<T, XmlError> {
        Err(position(self.s, msg, at))
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.s.get(self.pos + off).copied()
    }

    fn starts_with(&self, p: &[u8]) -> bool {
        self.s.get(self.pos..).is_some_and(|r| r.starts_with(p))
    }

    /// Returns the next event, `Ok(None)` at the end of a complete document.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        if let Some(name) = self.pending_end.take() {
            return Ok(Some(Event::End { name }));
        }
        loop {
            if self.stack.is_empty() {
                // prolog or epilog
                self.skip_space();
                if self.pos >= self.s.len() {
                    if self.seen_root {
                        return Ok(None);
                    }
                    return self.err("no element found", self.pos);
                }
                if self.starts_with(b"<!--") {
                    self.comment()?;
                } else if self.starts_with(b"<?") {
                    self.pi()?;
                } else if !self.seen_root && self.starts_with(b"<!DOCTYPE") {
                    self.doctype()?;
                } else if self.seen_root {
                    return self.err("junk after document element", self.pos);
                } else if self.peek(0) == Some(b'<') {
                    if self.peek(1) == Some(b'/') {
                        return self.err(INVALID, self.pos + 1);
                    }
                    self.seen_root = true;
                    return self.start_tag().map(Some);
                } else {
                    return self.err("syntax error", self.pos);
                }
                continue;
            }
            // inside an element
            if self.pos >= self.s.len() {
                return self.err("no element found", self.pos);
            }
            if self.starts_with(b"<!--") {
                self.comment()?;
            } else if self.starts_with(b"<![CDATA[") {
                let start = self.pos + 9;
                match find(self.s, start, b"]]>") {
                    Some(end) => {
                        self.pos = end + 3;
                        let t = String::from_utf8_lossy(&self.s[start..end]).into_owned();
                        return Ok(Some(Event::Text(t)));
                    }
                    None => return self.err("unclosed CDATA section", self.s.len()),
                }
            } else if self.starts_with(b"<?") {
                self.pi()?;
            } else if self.starts_with(b"</") {
                return self.end_tag().map(Some);
            } else if self.peek(0) == Some(b'<') {
                return self.start_tag().map(Some);
            } else {
                return self.text().map(Some);
            }
        }
    }

    fn skip_space(&mut self) {
        while self.peek(0).is_some_and(is_space) {
            self.pos += 1;
        }
    }

    fn comment(&mut self) -> Result<(), XmlError> {
        match find(self.s, self.pos + 4, b"-->") {
            Some(end) => {
                self.pos = end + 3;
                Ok(())
            }
            None => self.err(UNCLOSED, self.pos),
        }
    }

    fn pi(&mut self) -> Result<(), XmlError> {
        let start = self.pos;
        let name_start = start + 2;
        let mut i = name_start;
        if !self.s.get(i).copied().is_some_and(is_name_start) {
            return self.err(INVALID, i);
        }
        while self.s.get(i).copied().is_some_and(is_name_char) {
            i += 1;
        }
        let target = &self.s[name_start..i];
        if target.eq_ignore_ascii_case(b"xml") && start != 0 {
            return self.err("XML or text declaration not at start of entity", start);
        }
        match find(self.s, i, b"?>") {
            Some(end) => {
                self.pos = end + 2;
                Ok(())
            }
            None => self.err(UNCLOSED, start),
        }
    }

    /// Skips a DOCTYPE declaration, remembering simple internal entities.
    fn doctype(&mut self) -> Result<(), XmlError> {
        let start = self.pos;
        let mut i = start + 9;
        let mut in_subset = false;
        loop {
            let Some(&b) = self.s.get(i) else {
                return self.err("no element found", self.s.len());
            };
            match b {
                b'"' | b'\'' => match self.s[i + 1..].iter().position(|&c| c == b) {
                    Some(n) => i += n + 2,
                    None => return self.err("no element found", self.s.len()),
                },
                b'[' if !in_subset => {
                    in_subset = true;
                    i += 1;
                }
                b']' if in_subset => {
                    in_subset = false;
                    i += 1;
                }
                b'<' if in_subset && self.s[i..].starts_with(b"<!ENTITY") => {
                    i = self.entity_decl(i)?;
                }
                b'<' if in_subset && self.s[i..].starts_with(b"<!--") => {
                    match find(self.s, i + 4, b"-->") {
                        Some(end) => i = end + 3,
                        None => return self.err(UNCLOSED, i),
                    }
                }
                b'>' if !in_subset => {
                    self.pos = i + 1;
                    return Ok(());
                }
                _ => i += 1,
            }
        }
    }

    /// Parses `<!ENTITY name "value">` at `i`; returns the offset after it.
    fn entity_decl(&mut self, i: usize) -> Result<usize, XmlError> {
        let mut j = i + 8;
        while self.s.get(j).copied().is_some_and(is_space) {
            j += 1;
        }
        let parameter = self.s.get(j) == Some(&b'%');
        let name_start = j;
        while self
            .s
            .get(j)
            .copied()
            .is_some_and(|b| !is_space(b) && b != b'>')
        {
            j += 1;
        }
        let name = String::from_utf8_lossy(&self.s[name_start..j]).into_owned();
        while self.s.get(j).copied().is_some_and(is_space) {
            j += 1;
        }
        let mut value = None;
        if let Some(&q) = self.s.get(j).filter(|&&b| b == b'"' || b == b'\'') {
            match self.s[j + 1..].iter().position(|&c| c == q) {
                Some(n) => {
                    value = Some(String::from_utf8_lossy(&self.s[j + 1..j + 1 + n]).into_owned());
                    j += n + 2;
                }
                None => return self.err("no element found", self.s.len()),
            }
        }
        match find(self.s, j, b">") {
            Some(end) => {
                if let (false, Some(v)) = (parameter, value) {
                    self.entities.entry(name).or_insert(v);
                }
                Ok(end + 1)
            }
            None => self.err("no element found", self.s.len()),
        }
    }

    fn name_at(&self, mut i: usize) -> Result<(String, usize), XmlError> {
        let start = i;
        if !self.s.get(i).copied().is_some_and(is_name_start) {
            if i >= self.s.len() {
                return self.err(UNCLOSED, start);
            }
            return self.err(INVALID, i);
        }
        while self.s.get(i).copied().is_some_and(is_name_char) {
            i += 1;
        }
        Ok((String::from_utf8_lossy(&self.s[start..i]).into_owned(), i))
    }

    fn start_tag(&mut self) -> Result<Event, XmlError> {
        let lt = self.pos;
        let unclosed = |r: &Self| r.err(UNCLOSED, lt);
        if lt + 1 >= self.s.len() {
            return unclosed(self);
        }
        let (name, mut i) = self.name_at(lt + 1)?;
        // (name, value, offset of name)
        let mut attrs: Vec<(String, String, usize)> = Vec::new();
        let empty;
        loop {
            let had_space = self.s.get(i).copied().is_some_and(is_space);
            while self.s.get(i).copied().is_some_and(is_space) {
                i += 1;
            }
            match self.s.get(i) {
                None => return unclosed(self),
                Some(b'>') => {
                    empty = false;
                    i += 1;
                    break;
                }
                Some(b'/') => match self.s.get(i + 1) {
                    None => return unclosed(self),
                    Some(b'>') => {
                        empty = true;
                        i += 2;
                        break;
                    }
                    Some(_) => return self.err(INVALID, i + 1),
                },
                Some(&b) if is_name_start(b) && had_space => {
                    let name_pos = i;
                    let (an, j) = self.name_at(i)?;
                    i = j;
                    while self.s.get(i).copied().is_some_and(is_space) {
                        i += 1;
                    }
                    match self.s.get(i) {
                        None => return unclosed(self),
                        Some(b'=') => i += 1,
                        Some(_) => return self.err(INVALID, i),
                    }
                    while self.s.get(i).copied().is_some_and(is_space) {
                        i += 1;
                    }
                    let q = match self.s.get(i) {
                        None => return unclosed(self),
                        Some(&q) if q == b'"' || q == b'\'' => q,
                        Some(_) => return self.err(INVALID, i),
                    };
                    i += 1;
                    let (value, j) = self.attr_value(i, q, lt)?;
                    i = j;
                    attrs.push((an, value, name_pos));
                }
                Some(_) => return self.err(INVALID, i),
            }
        }
        for (k, (n, _, p)) in attrs.iter().enumerate() {
            if attrs[..k].iter().any(|(m, _, _)| m == n) {
                return self.err("duplicate attribute", *p);
            }
        }
        self.pos = i;
        if empty {
            self.pending_end = Some(name.clone());
        } else {
            self.stack.push(name.clone());
        }
        Ok(Event::Start {
            name,
            attrs: attrs.into_iter().map(|(n, v, _)| (n, v)).collect(),
        })
    }

    /// Reads an attribute value from `i` up to the quote `q`.
    fn attr_value(&self, mut i: usize, q: u8, lt: usize) -> Result<(String, usize), XmlError> {
        let mut out = String::new();
        let mut run = i;
        loop {
            match self.s.get(i) {
                None => return self.err(UNCLOSED, lt),
                Some(&b) if b == q => {
                    out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
                    return Ok((out, i + 1));
                }
                Some(b'<') => return self.err(INVALID, i),
                Some(b'&') => {
                    out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
                    let (t, j) = self.reference(i, lt)?;
                    out.push_str(&t);
                    i = j;
                    run = i;
                }
                Some(b'\t' | b'\n' | b'\r') => {
                    out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
                    if self.s[i] == b'\r' && self.s.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    out.push(' ');
                    i += 1;
                    run = i;
                }
                Some(&b) if b < 0x20 => return self.err(INVALID, i),
                Some(_) => i += 1,
            }
        }
    }

    /// Decodes the reference starting with `&` at `amp`. `unclosed_at` is
    /// where an end of input inside it is reported.
    fn reference(&self, amp: usize, unclosed_at: usize) -> Result<(String, usize), XmlError> {
        let mut i = amp + 1;
        if self.s.get(i) == Some(&b'#') {
            i += 1;
            let hex = self.s.get(i) == Some(&b'x');
            if hex {
                i += 1;
            }
            let digits_start = i;
            while self.s.get(i).is_some_and(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            }) {
                i += 1;
            }
            match self.s.get(i) {
                None => return self.err(UNCLOSED, unclosed_at),
                Some(b';') if i > digits_start => {}
                Some(_) => return self.err(INVALID, i),
            }
            let digits = std::str::from_utf8(&self.s[digits_start..i]).unwrap_or("");
            let code = u32::from_str_radix(digits, if hex { 16 } else { 10 }).ok();
            return match code.filter(|&c| valid_xml_char(c)).and_then(char::from_u32) {
                Some(c) => Ok((c.to_string(), i + 1)),
                None => self.err("reference to invalid character number", amp),
            };
        }
        let (name, j) = match self.s.get(i) {
            None => return self.err(UNCLOSED, unclosed_at),
            Some(&b) if is_name_start(b) => self.name_at(i)?,
            Some(_) => return self.err(INVALID, i),
        };
        match self.s.get(j) {
            None => return self.err(UNCLOSED, unclosed_at),
            Some(b';') => {}
            Some(_) => return self.err(INVALID, j),
        }
        let text = match name.as_str() {
            "lt" => "<".to_owned(),
            "gt" => ">".to_owned(),
            "amp" => "&".to_owned(),
            "quot" => "\"".to_owned(),
            "apos" => "'".to_owned(),
            other => match self.entities.get(other) {
                Some(v) => v.clone(),
                None => return self.err("undefined entity", amp),
            },
        };
        Ok((text, j + 1))
    }

    fn end_tag(&mut self) -> Result<Event, XmlError> {
        let lt = self.pos;
        if lt + 2 >= self.s.len() {
            return self.err(UNCLOSED, lt);
        }
        let (name, mut i) = self.name_at(lt + 2)?;
        while self.s.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        match self.s.get(i) {
            None => return self.err(UNCLOSED, lt),
            Some(b'>') => {}
            Some(_) => return self.err(INVALID, i),
        }
        if self.stack.last() != Some(&name) {
            return self.err("mismatched tag", lt + 2);
        }
        self.stack.pop();
        self.pos = i + 1;
        Ok(Event::End { name })
    }

    fn text(&mut self) -> Result<Event, XmlError> {
        let mut out = String::new();
        let mut i = self.pos;
        let mut run = i;
        loop {
            match self.s.get(i) {
                None | Some(b'<') => break,
                Some(b'&') => {
                    out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
                    let (t, j) = self.reference(i, i)?;
                    out.push_str(&t);
                    i = j;
                    run = i;
                }
                Some(b']') if self.s[i..].starts_with(b"]]>") => return self.err(INVALID, i + 2),
                Some(b'\r') => {
                    out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
                    out.push('\n');
                    i += 1;
                    if self.s.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    run = i;
                }
                Some(&b) if b < 0x20 && !is_space(b) => return self.err(INVALID, i),
                Some(_) => i += 1,
            }
        }
        out.push_str(&String::from_utf8_lossy(&self.s[run..i]));
        self.pos = i;
        Ok(Event::Text(out))
    }
}

fn find(s: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// Builds an error at byte offset `at`, computing expat's line and column.
pub(crate) fn position(s: &[u8], msg: &'static str, at: usize) -> XmlError {
    let at = at.min(s.len());
    let mut line = 1;
    let mut column = 0;
    let mut i = 0;
    while i < at {
        match s[i] {
            b'\n' => {
                line += 1;
                column = 0;
            }
            b'\r' => {
                line += 1;
                column = 0;
                if s.get(i + 1) == Some(&b'\n') && i + 1 < at {
                    i += 1;
                }
            }
            // UTF-8 continuation bytes do not start a character
            b if (0x80..0xC0).contains(&b) => {}
            _ => column += 1,
        }
        i += 1;
    }
    XmlError { msg, line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Result<Vec<Event>, XmlError> {
        let mut r = Reader::new(s);
        let mut v = Vec::new();
        while let Some(e) = r.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    fn err(s: &str) -> (&'static str, usize, usize) {
        let e = all(s).unwrap_err();
        (e.msg, e.line, e.column)
    }

    #[test]
    fn events() {
        let v = all("<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY foo \"bar\">]><a x='1&amp;2'>t&foo;&#65;<b/></a>")
            .unwrap();
        assert_eq!(
            v,
            vec![
                Event::Start {
                    name: "a".into(),
                    attrs: vec![("x".into(), "1&2".into())]
                },
                Event::Text("tbarA".into()),
                Event::Start {
                    name: "b".into(),
                    attrs: vec![]
                },
                Event::End { name: "b".into() },
                Event::End { name: "a".into() },
            ]
        );
    }

    // Expected values were produced with expat (python3 xml.parsers.expat).
    #[test]
    fn expat_positions() {
        let cases: &[(&str, &str, usize, usize)] = &[
            ("<a>", "no element found", 1, 3),
            ("", "no element found", 1, 0),
            ("<a>&</a>", INVALID, 1, 4),
            ("<a b>", INVALID, 1, 4),
            ("<a></a>x", "junk after document element", 1, 7),
            ("<a></a><b/>", "junk after document element", 1, 7),
            ("abc", "syntax error", 1, 0),
            ("<a>&foo;</a>", "undefined entity", 1, 3),
            ("<a x=\"<\"/>", INVALID, 1, 6),
            ("<a>&#0;</a>", "reference to invalid character number", 1, 3),
            ("<!-- x", UNCLOSED, 1, 0),
            ("<a><!-- x", UNCLOSED, 1, 3),
            ("<a><![CDATA[ x", "unclosed CDATA section", 1, 14),
            ("<a b=\"1\" b=\"2\"/>", "duplicate attribute", 1, 9),
            ("<a></b>", "mismatched tag", 1, 5),
            ("<a>\n  <b c=\"x", UNCLOSED, 2, 2),
            (
                " <?xml version=\"1.0\"?><a/>",
                "XML or text declaration not at start of entity",
                1,
                1,
            ),
            ("<a>]]></a>", INVALID, 1, 5),
            ("<a b=\"1\"c=\"2\"/>", INVALID, 1, 8),
            ("<a/ >", INVALID, 1, 3),
            ("<a><b></a>", "mismatched tag", 1, 8),
            ("<1/>", INVALID, 1, 1),
            ("<a>\u{e9}\u{e9}</b>", "mismatched tag", 1, 7),
            ("<a>\r\n</b>", "mismatched tag", 2, 2),
            ("<a>\r</b>", "mismatched tag", 2, 2),
            ("<a>abc", "no element found", 1, 6),
            ("<a>&lt", UNCLOSED, 1, 3),
            (
                "<a>&#x110000;</a>",
                "reference to invalid character number",
                1,
                3,
            ),
            ("<a>&#65</a>", INVALID, 1, 7),
            ("<a b=\"&\"/>", INVALID, 1, 7),
            ("<a b=1/>", INVALID, 1, 5),
            ("<a>\u{1}</a>", INVALID, 1, 3),
            ("<!DOCTYPE a PUBLIC \"x\" \"y\"", "no element found", 1, 26),
            ("<a x=\"1\"", UNCLOSED, 1, 0),
            ("</a>", INVALID, 1, 1),
            ("<a>&amp</a>", INVALID, 1, 7),
            ("<a>& </a>", INVALID, 1, 4),
        ];
        for (input, msg, line, col) in cases {
            assert_eq!(err(input), (*msg, *line, *col), "input {input:?}");
        }
        assert!(all("<a b =  \"1\" />").is_ok());
        assert!(all("<!DOCTYPE a PUBLIC \"x\" \"y\"><a></a>").is_ok());
    }
}
