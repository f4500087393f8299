//! Minimal raw D-Bus client: SASL EXTERNAL, little-endian message marshalling, a frame reader.
//!
//! Only what the load generator needs. Written from the D-Bus specification; every blocking
//! operation honours a deadline and a shared abort flag so that a misbehaving daemon can never
//! hang the benchmark.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const T_CALL: u8 = 1;
pub const T_RETURN: u8 = 2;
pub const T_ERROR: u8 = 3;
pub const T_SIGNAL: u8 = 4;

pub const BUS_NAME: &str = "org.freedesktop.DBus";
pub const BUS_PATH: &str = "/org/freedesktop/DBus";

/// Largest frame we accept (the spec's maximum message size is 128 MiB).
const MAX_FRAME: usize = 256 << 20;
/// Socket poll granularity: how often a blocked read/write re-checks deadline and abort flag.
const TICK: Duration = Duration::from_millis(100);

/// A header field to marshal.
#[allow(dead_code)]
pub enum F<'a> {
    Path(&'a str),
    Interface(&'a str),
    Member(&'a str),
    ErrorName(&'a str),
    ReplySerial(u32),
    Destination(&'a str),
    Sender(&'a str),
    Signature(&'a str),
}

fn pad(b: &mut Vec<u8>, align: usize) {
    while !b.len().is_multiple_of(align) {
        b.push(0);
    }
}

fn str_field(b: &mut Vec<u8>, code: u8, sig: u8, s: &str) {
    // struct (yv) starts 8-aligned; "code, sig-len, sig, nul" is 4 bytes, so the u32 is aligned.
    b.extend_from_slice(&[code, 1, sig, 0]);
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// Marshals a message header (fixed part + header field array), padded to 8 so the body can
/// follow directly. The serial lives at byte offset 8; with `F::ReplySerial` as the first field
/// its value lives at offset 20 (templates patch these in place).
pub fn header(typ: u8, flags: u8, serial: u32, fields: &[F], body_len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(&[b'l', typ, flags, 1]);
    b.extend_from_slice(&(body_len as u32).to_le_bytes());
    b.extend_from_slice(&serial.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    for f in fields {
        pad(&mut b, 8);
        match *f {
            F::Path(s) => str_field(&mut b, 1, b'o', s),
            F::Interface(s) => str_field(&mut b, 2, b's', s),
            F::Member(s) => str_field(&mut b, 3, b's', s),
            F::ErrorName(s) => str_field(&mut b, 4, b's', s),
            F::ReplySerial(v) => {
                b.extend_from_slice(&[5, 1, b'u', 0]);
                b.extend_from_slice(&v.to_le_bytes());
            }
            F::Destination(s) => str_field(&mut b, 6, b's', s),
            F::Sender(s) => str_field(&mut b, 7, b's', s),
            F::Signature(s) => {
                b.extend_from_slice(&[8, 1, b'g', 0]);
                b.push(s.len() as u8);
                b.extend_from_slice(s.as_bytes());
                b.push(0);
            }
        }
    }
    let flen = (b.len() - 16) as u32;
    b[12..16].copy_from_slice(&flen.to_le_bytes());
    pad(&mut b, 8);
    b
}

/// Body of signature `ay` with `n` payload bytes.
pub fn body_ay(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + n);
    b.extend_from_slice(&(n as u32).to_le_bytes());
    b.extend((0..n).map(|i| (i % 251) as u8));
    b
}

/// Body of signature `s`.
pub fn body_s(s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + s.len());
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    b.push(0);
    b
}

#[inline]
pub fn patch_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline]
fn u32le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A parsed view of one received message.
pub struct Msg<'a> {
    pub typ: u8,
    pub serial: u32,
    pub reply_serial: u32,
    pub sender: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub error_name: &'a str,
    pub body: &'a [u8],
    /// The whole frame.
    pub raw: &'a [u8],
}

impl Msg<'_> {
    /// First string of the body, if the body starts with one (error messages, Hello reply).
    pub fn body_str(&self) -> &str {
        if self.body.len() < 5 {
            return "";
        }
        let n = u32le(self.body, 0) as usize;
        self.body
            .get(4..4 + n)
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("")
    }
}

/// Total length of the frame at the start of `b`, once its 16-byte fixed header is there.
pub fn frame_len(b: &[u8]) -> io::Result<Option<usize>> {
    if b.len() < 16 {
        return Ok(None);
    }
    if b[0] != b'l' {
        return Err(bad(format!("unsupported endianness byte {:#x}", b[0])));
    }
    let body = u32le(b, 4) as usize;
    let fields = u32le(b, 12) as usize;
    let total = ((16 + fields + 7) & !7) + body;
    if total > MAX_FRAME {
        return Err(bad(format!("frame of {total} bytes")));
    }
    Ok(Some(total))
}

fn field_str<'a>(b: &'a [u8], pos: &mut usize) -> io::Result<&'a str> {
    *pos = (*pos + 3) & !3;
    let n = u32le(b, *pos) as usize;
    let s = b
        .get(*pos + 4..*pos + 4 + n)
        .ok_or_else(|| bad("truncated header string"))?;
    *pos += 4 + n + 1;
    std::str::from_utf8(s).map_err(|_| bad("non-UTF-8 header string"))
}

/// Parses one complete frame (as delimited by `frame_len`).
pub fn parse(b: &[u8]) -> io::Result<Msg<'_>> {
    let fields_end = 16 + u32le(b, 12) as usize;
    let body_start = (fields_end + 7) & !7;
    let mut m = Msg {
        typ: b[1],
        serial: u32le(b, 8),
        reply_serial: 0,
        sender: "",
        interface: "",
        member: "",
        error_name: "",
        body: &b[body_start..],
        raw: b,
    };
    let mut pos = 16;
    while pos < fields_end {
        pos = (pos + 7) & !7;
        if pos + 3 > fields_end {
            return Err(bad("truncated header field"));
        }
        let code = b[pos];
        let siglen = b[pos + 1] as usize;
        let sig = &b[pos + 2..pos + 2 + siglen];
        pos += 2 + siglen + 1;
        match sig {
            b"s" | b"o" => {
                let s = field_str(b, &mut pos)?;
                match code {
                    2 => m.interface = s,
                    3 => m.member = s,
                    4 => m.error_name = s,
                    7 => m.sender = s,
                    _ => {}
                }
            }
            b"u" => {
                pos = (pos + 3) & !3;
                let v = u32le(b, pos);
                pos += 4;
                if code == 5 {
                    m.reply_serial = v;
                }
            }
            b"g" => {
                let n = b[pos] as usize;
                pos += 1 + n + 1;
            }
            _ => return Err(bad(format!("unexpected header field signature {sig:?}"))),
        }
    }
    Ok(m)
}

/// One authenticated bus connection with buffered, deadline-bounded I/O.
pub struct Conn {
    s: UnixStream,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Outgoing bytes not yet written; `flush` writes them.
    pub wbuf: Vec<u8>,
    /// Last serial used by this connection.
    pub serial: u32,
    pub unique: String,
    deadline: Instant,
    abort: Arc<AtomicBool>,
}

impl Conn {
    /// Connects, authenticates with SASL EXTERNAL and says Hello.
    pub fn connect(path: &str, deadline: Instant, abort: Arc<AtomicBool>) -> io::Result<Conn> {
        let s = UnixStream::connect(path)
            .map_err(|e| io::Error::new(e.kind(), format!("connect {path}: {e}")))?;
        s.set_read_timeout(Some(TICK))?;
        s.set_write_timeout(Some(TICK))?;
        let mut c = Conn {
            s,
            rbuf: vec![0; 256 << 10],
            rpos: 0,
            rend: 0,
            wbuf: Vec::with_capacity(256 << 10),
            serial: 0,
            unique: String::new(),
            deadline,
            abort,
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let hex: String = uid
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        c.write_raw(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = c.read_line()?;
        if !line.starts_with("OK ") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("SASL EXTERNAL rejected: {line:?}"),
            ));
        }
        c.write_raw(b"BEGIN\r\n")?;
        let reply = c.call(BUS_NAME, BUS_PATH, BUS_NAME, "Hello", "", &[])?;
        let m = parse(&reply)?;
        c.unique = m.body_str().to_string();
        if c.unique.is_empty() {
            return Err(bad("empty Hello reply"));
        }
        Ok(c)
    }

    /// The bare socket, dropping the buffers (for connections that only sit there).
    pub fn into_stream(self) -> UnixStream {
        self.s
    }

    /// The socket's fd (for epoll over many connections).
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.s)
    }

    /// Errors out if the scenario was aborted or its deadline passed.
    pub fn check(&self) -> io::Result<()> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "aborted (another connection failed)",
            ));
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "scenario deadline passed",
            ));
        }
        Ok(())
    }

    pub fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.rbuf[self.rpos..self.rend]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line =
                    String::from_utf8_lossy(&self.rbuf[self.rpos..self.rpos + i]).into_owned();
                self.rpos += i + 2;
                return Ok(line);
            }
            if self.rend - self.rpos > 4096 {
                return Err(bad("overlong SASL line"));
            }
            let need = self.rend - self.rpos + 1;
            self.fill(need)?;
        }
    }

    /// Writes all of `data`, retrying on timeouts until the deadline.
    pub fn write_raw(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.s.write(data) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket write returned 0",
                    ))
                }
                Ok(n) => data = &data[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.check()?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes out `wbuf`.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let w = std::mem::take(&mut self.wbuf);
        let r = self.write_raw(&w);
        self.wbuf = w;
        self.wbuf.clear();
        r
    }

    /// Reads more bytes, making room for a frame of `need` bytes starting at `rpos`.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rpos > 0
            && (self.rpos + need > self.rbuf.len() || self.rbuf.len() - self.rend < 4096)
        {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        if need > self.rbuf.len() {
            self.rbuf.resize(need.next_power_of_two(), 0);
        }
        loop {
            match self.s.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "daemon closed the connection",
                    ))
                }
                Ok(n) => {
                    self.rend += n;
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.check()?
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Blocks until at least one complete message is buffered, then hands every complete
    /// buffered message to `f` (with `wbuf` for replies). Returns how many were handled.
    pub fn poll<Fn_>(&mut self, mut f: Fn_) -> io::Result<usize>
    where
        Fn_: FnMut(&Msg, &mut Vec<u8>) -> io::Result<()>,
    {
        loop {
            let avail = self.rend - self.rpos;
            let need = frame_len(&self.rbuf[self.rpos..self.rend])?.unwrap_or(16);
            if avail >= need {
                break;
            }
            self.fill(need)?;
        }
        let mut n = 0;
        loop {
            let avail = &self.rbuf[self.rpos..self.rend];
            match frame_len(avail)? {
                Some(len) if len <= avail.len() => {
                    let m = parse(&avail[..len])?;
                    f(&m, &mut self.wbuf)?;
                    self.rpos += len;
                    n += 1;
                }
                _ => break,
            }
        }
        Ok(n)
    }

    /// Synchronous method call; returns the whole reply frame. Other messages that arrive
    /// meanwhile are dropped (only used during setup).
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        sig: &str,
        body: &[u8],
    ) -> io::Result<Vec<u8>> {
        let serial = self.next_serial();
        let mut fields = vec![
            F::Path(path),
            F::Interface(iface),
            F::Member(member),
            F::Destination(dest),
        ];
        if !sig.is_empty() {
            fields.push(F::Signature(sig));
        }
        let h = header(T_CALL, 0, serial, &fields, body.len());
        self.wbuf.extend_from_slice(&h);
        self.wbuf.extend_from_slice(body);
        self.flush()?;
        loop {
            let mut reply: Option<io::Result<Vec<u8>>> = None;
            self.poll(|m, _| {
                if reply.is_none()
                    && (m.typ == T_RETURN || m.typ == T_ERROR)
                    && m.reply_serial == serial
                {
                    reply = Some(if m.typ == T_ERROR {
                        Err(io::Error::other(format!(
                            "{member} failed: {}: {}",
                            m.error_name,
                            m.body_str()
                        )))
                    } else {
                        Ok(m.raw.to_vec())
                    });
                }
                Ok(())
            })?;
            if let Some(r) = reply {
                return r;
            }
        }
    }
}
