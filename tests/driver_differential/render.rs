//! Turns received messages into comparable text, and normalises the parts
//! of that text that differ between two correct daemons.
//!
//! Rendering is generic: the body is decoded from its signature (any type
//! the bus can send), so nothing about a reply is left out of the
//! comparison unless a normalisation below says so.

use super::common::{Msg, ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL};

/// How numbers in a body are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// As they are.
    Exact,
    /// As `#` (type kept): Debug.Stats counters (serials, memory-pool
    /// figures, peaks) depend on how each daemon counts internally, so only
    /// which keys exist and their types are compared.
    Shape,
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    be: bool,
    numbers: Numbers,
}

/// Splits off the first complete type of a signature.
fn first_type(sig: &str) -> Option<(&str, &str)> {
    let b = sig.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'a') {
        i += 1;
    }
    let end = match b.get(i)? {
        b'(' | b'{' => {
            let mut depth = 0;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'(' | b'{' => depth += 1,
                    b')' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            j + 1
        }
        _ => i + 1,
    };
    Some((&sig[..end], &sig[end..]))
}

fn align_of(t: &str) -> usize {
    match t.as_bytes().first() {
        Some(b'y' | b'g' | b'v') => 1,
        Some(b'n' | b'q') => 2,
        Some(b'x' | b't' | b'd' | b'(' | b'{') => 8,
        _ => 4,
    }
}

impl Dec<'_> {
    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).ok_or("overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("short body")?;
        self.pos = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        self.align(n);
        let be = self.be;
        let b = self.take(n)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if be { b[i] } else { b[n - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }
    fn num(&self, v: impl std::fmt::Display) -> String {
        match self.numbers {
            Numbers::Exact => v.to_string(),
            Numbers::Shape => "#".into(),
        }
    }
    fn string(&mut self, len: usize) -> Result<String, String> {
        let s = self.take(len + 1)?;
        Ok(format!("{:?}", String::from_utf8_lossy(&s[..len])))
    }

    fn value(&mut self, t: &str) -> Result<String, String> {
        let c = t.as_bytes().first().copied().ok_or("empty type")?;
        Ok(match c {
            b'y' => {
                let v = self.uint(1)?;
                format!("y={}", self.num(v))
            }
            b'b' => format!("b={}", self.uint(4)?),
            b'n' => {
                let v = self.uint(2)? as u16 as i16;
                format!("n={}", self.num(v))
            }
            b'q' => {
                let v = self.uint(2)?;
                format!("q={}", self.num(v))
            }
            b'i' => {
                let v = self.uint(4)? as u32 as i32;
                format!("i={}", self.num(v))
            }
            b'u' => {
                let v = self.uint(4)?;
                format!("u={}", self.num(v))
            }
            b'h' => format!("h={}", self.uint(4)?),
            b'x' => {
                let v = self.uint(8)? as i64;
                format!("x={}", self.num(v))
            }
            b't' => {
                let v = self.uint(8)?;
                format!("t={}", self.num(v))
            }
            b'd' => {
                let v = f64::from_bits(self.uint(8)?);
                format!("d={}", self.num(v))
            }
            b's' | b'o' => {
                let len = self.uint(4)? as usize;
                format!("{}{}", c as char, self.string(len)?)
            }
            b'g' => {
                let len = self.uint(1)? as usize;
                format!("g{}", self.string(len)?)
            }
            b'v' => {
                let len = self.uint(1)? as usize;
                let sig = self.take(len + 1)?;
                let sig = String::from_utf8_lossy(&sig[..len]).into_owned();
                format!("v({})", self.value(&sig)?)
            }
            b'(' => {
                self.align(8);
                let mut inner = &t[1..t.len() - 1];
                let mut parts = Vec::new();
                while let Some((one, rest)) = first_type(inner) {
                    parts.push(self.value(one)?);
                    inner = rest;
                }
                format!("({})", parts.join(", "))
            }
            b'a' => {
                let len = self.uint(4)? as usize;
                let elem = &t[1..];
                self.align(align_of(elem));
                let end = self.pos + len;
                let mut items = Vec::new();
                while self.pos < end {
                    if elem.starts_with('{') {
                        self.align(8);
                        let inner = &elem[1..elem.len() - 1];
                        let (k, v) = first_type(inner).ok_or("bad dict")?;
                        let k = self.value(k)?;
                        let v = self.value(v)?;
                        items.push(format!("{k}: {v}"));
                    } else {
                        items.push(self.value(elem)?);
                    }
                }
                if elem.starts_with('{') {
                    // Dict entries are unordered (the specification says a
                    // dict is a map; dbus-daemon fills them from hash tables).
                    items.sort();
                    format!("{{{}}}", items.join(", "))
                } else {
                    format!("[{}]", items.join(", "))
                }
            }
            other => return Err(format!("unknown type {}", other as char)),
        })
    }
}

/// The body as text, one value per complete type of its signature.
pub fn body_text(m: &Msg, numbers: Numbers) -> String {
    let mut d = Dec {
        buf: &m.body,
        pos: 0,
        be: m.big_endian,
        numbers,
    };
    let mut sig = m.signature.as_str();
    let mut parts = Vec::new();
    while let Some((one, rest)) = first_type(sig) {
        match d.value(one) {
            Ok(v) => parts.push(v),
            Err(e) => {
                parts.push(format!("<undecodable: {e}>"));
                break;
            }
        }
        sig = rest;
    }
    parts.join(", ")
}

/// Sorts the elements of the first array argument of a rendered body.
/// Used for ListNames and ListActivatableNames: the specification does not
/// order them and dbus-daemon lists them in hash-table order.
pub fn sorted_array(text: &str) -> String {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return text.to_string();
    };
    if inner.is_empty() {
        return text.to_string();
    }
    let mut items: Vec<&str> = inner.split(", ").collect();
    items.sort();
    format!("[{}]", items.join(", "))
}

/// One message as a line: type, flags, the header fields a client can see
/// and the body. `bus_serial` is false for messages the bus sent: their
/// serials count the bus's own traffic, which differs between daemons.
pub fn message_line(m: &Msg, numbers: Numbers, sort: bool) -> String {
    let kind = match m.msg_type {
        METHOD_CALL => "call",
        METHOD_RETURN => "return",
        ERROR => "error",
        SIGNAL => "signal",
        _ => "unknown-type",
    };
    let mut s = format!("{kind} flags={}", m.flags);
    // No sender: the daemon's own connection answered (dbus-daemon does so
    // for Peer methods without a destination); its serials count too.
    let from_bus = matches!(m.sender.as_deref(), None | Some("org.freedesktop.DBus"));
    if !from_bus {
        s.push_str(&format!(" serial={}", m.serial));
    }
    if let Some(r) = m.reply_serial {
        s.push_str(&format!(" reply_to={r}"));
    }
    for (k, v) in [
        ("from", &m.sender),
        ("to", &m.destination),
        ("path", &m.path),
        ("iface", &m.interface),
        ("member", &m.member),
        ("error", &m.error_name),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if m.unix_fds != 0 {
        s.push_str(&format!(" fds={}", m.unix_fds));
    }
    let mut body = body_text(m, numbers);
    if sort {
        body = sorted_array(&body);
    }
    s.push_str(&format!(" sig={:?} body=[{body}]", m.signature));
    s
}

/// Replaces what legitimately differs between two daemons that behave the
/// same: connection names, the bus GUID and process ids.
pub struct Norm {
    /// Unique name -> role ("A", "B", "T3", ...), by the client that got it
    /// from Hello. Unique names are compared by role, not by number: the
    /// numbering scheme is not something this test judges.
    pub roles: Vec<(String, String)>,
    /// The daemon's pid (GetConnectionUnixProcessID and credentials of
    /// org.freedesktop.DBus): "<daemon-pid>".
    pub daemon_pid: u32,
    /// The server GUID (GetId, the address, SASL OK): "<guid>". It is random
    /// per run.
    pub guid: String,
    /// The bus's id (GetId): "<bus-id>". Random per run; the specification
    /// and dbus-daemon make it distinct from the address's GUID.
    pub bus_id: String,
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// org.busbar.Daemon1 in Introspect's XML, as a rendered string shows it.
const BUSBAR_IFACE_XML: &str = r#"  <interface name=\"org.busbar.Daemon1\">\n    <method name=\"Reexec\">\n    </method>\n  </interface>\n"#;

impl Norm {
    /// A new normaliser.
    pub fn new(daemon_pid: u32, guid: String) -> Norm {
        Norm {
            roles: Vec::new(),
            daemon_pid,
            guid,
            bus_id: String::new(),
        }
    }

    /// Records that `unique` belongs to `role`.
    pub fn add_role(&mut self, unique: &str, role: &str) {
        self.roles.push((unique.to_string(), role.to_string()));
    }

    /// Normalises one case's text. Unique-name-shaped tokens that belong to
    /// no client (such as the made-up names the cases send) become `<?N>`
    /// by order of first appearance within the text.
    pub fn apply(&self, text: &str) -> String {
        // busbar's own interface (org.busbar.Daemon1, issue 11), which
        // dbus-daemon does not have, is left out of Introspect's answer.
        let text = text.replace(BUSBAR_IFACE_XML, "");
        let text = if self.guid.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.guid, "<guid>")
        };
        let text = if self.bus_id.is_empty() {
            text
        } else {
            text.replace(&self.bus_id, "<bus-id>")
        };
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut unknown: Vec<String> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b':' && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                let mut j = i + 1;
                while j < b.len() && is_name_char(b[j]) {
                    j += 1;
                }
                // a sentence may end right after a name
                let mut end = j;
                while end > i + 1 && b[end - 1] == b'.' {
                    end -= 1;
                }
                let tok = &text[i..end];
                let shaped = tok[1..].split('.').count() >= 2
                    && tok[1..]
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
                if let Some((_, role)) = self.roles.iter().find(|(u, _)| u == tok) {
                    out.push_str(&format!("<{role}>"));
                    i = end;
                    continue;
                }
                if shaped {
                    let k = match unknown.iter().position(|u| u == tok) {
                        Some(k) => k,
                        None => {
                            unknown.push(tok.to_string());
                            unknown.len() - 1
                        }
                    };
                    out.push_str(&format!("<?{k}>"));
                    i = end;
                    continue;
                }
                out.push_str(&text[i..j]);
                i = j;
                continue;
            }
            if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let mut j = i;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let tok = &text[i..j];
                // a whole number, not a run of digits inside a hex string
                let whole = j == b.len() || !b[j].is_ascii_alphanumeric();
                // A serial is not a pid, even when it has the same value
                // (a fresh machine's pids are small, like serials).
                let serial = text[..i].ends_with("reply_to=") || text[..i].ends_with("serial=");
                if !whole || serial {
                    out.push_str(tok);
                } else if tok == self.daemon_pid.to_string() {
                    out.push_str("<daemon-pid>");
                } else if tok == std::process::id().to_string() {
                    // every client is this test process
                    out.push_str("<test-pid>");
                } else {
                    out.push_str(tok);
                }
                i = j;
                continue;
            }
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    }
}
