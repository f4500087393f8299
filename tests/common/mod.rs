//! Shared helpers for the integration tests: spawn a bus daemon (busbar by
//! default, or whatever `BUSBAR_TEST_DAEMON` names, e.g.
//! `/usr/bin/dbus-daemon`) on a private config, and talk to it with a tiny
//! raw client over a `UnixStream`, building and parsing messages by hand.
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The generous timeout used for every blocking wait.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub const DRIVER: &str = "org.freedesktop.DBus";
pub const DRIVER_PATH: &str = "/org/freedesktop/DBus";

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

pub const NO_REPLY_EXPECTED: u8 = 0x1;

pub const F_PATH: u8 = 1;
pub const F_INTERFACE: u8 = 2;
pub const F_MEMBER: u8 = 3;
pub const F_ERROR_NAME: u8 = 4;
pub const F_REPLY_SERIAL: u8 = 5;
pub const F_DESTINATION: u8 = 6;
pub const F_SENDER: u8 = 7;
pub const F_SIGNATURE: u8 = 8;
pub const F_UNIX_FDS: u8 = 9;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The daemon binary under test.
pub fn daemon_path() -> String {
    match std::env::var("BUSBAR_TEST_DAEMON") {
        Ok(p) if !p.is_empty() => p,
        _ => env!("CARGO_BIN_EXE_busbar").to_string(),
    }
}

/// Spawns `cmd`, again while exec fails with ETXTBSY. The tests share one
/// process, and a test that has just written a binary (the re-exec tests
/// copy busbar) races with other threads' forks: until such a child execs,
/// it holds a copy of the written file's descriptor, and exec of that file
/// fails meanwhile.
pub fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    const ETXTBSY: i32 = 26; // Linux
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// A test whose prerequisite (root, a data file, /usr/bin/dbus-daemon, a
/// program) is missing calls this and returns. Outside CI it says why on
/// stderr (directly, so the harness's capture does not hide it) and the
/// test passes without having checked anything; with `CI` set in the
/// environment it fails instead, so a CI run cannot go green by skipping.
pub fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("prerequisite missing, and CI is set: {why}");
    }
    let _ = writeln!(io::stderr(), "SKIPPED: {why}");
}

/// Reads the address a daemon started with `--print-address=1` (stdout
/// piped) prints, within [`TIMEOUT`]. On failure the child is killed and
/// reaped, and the error says what was read instead.
pub fn read_printed_address(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("daemon stdout is not piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(line)) if !line.trim().is_empty() => Ok(line.trim().to_string()),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("daemon printed no address: {other:?}"))
        }
    }
}

/// True when the tests run against the reference dbus-daemon.
pub fn is_reference_daemon() -> bool {
    daemon_path().contains("dbus-daemon")
}

/// A running bus daemon with its own config in a private temp dir.
/// Dropping it sends SIGTERM and waits (SIGKILL after the timeout).
pub struct Bus {
    child: Child,
    pub address: String,
    pub dir: PathBuf,
}

impl Bus {
    /// A session-like bus with the default limits.
    pub fn start() -> Bus {
        Bus::start_with("")
    }

    /// A session-like bus; `extra` is inserted into the `<busconfig>`
    /// (e.g. `<limit name="max_message_size">65536</limit>`).
    pub fn start_with(extra: &str) -> Bus {
        Bus::start_listen(None, extra)
    }

    /// Like [`Bus::start_with`], listening on `listen` instead of a
    /// `unix:path=` in the temp dir.
    pub fn start_listen(listen: Option<&str>, extra: &str) -> Bus {
        Bus::start_inner(listen, extra, None, false)
    }

    /// The daemon `daemon` (not [`daemon_path`]) with `policy` in place of
    /// the permissive default `<policy>`; its stderr goes to
    /// [`Bus::stderr_log`].
    pub fn start_daemon_with_policy(daemon: &str, policy: &str) -> Bus {
        Bus::start_full(Some(daemon), None, Some(policy), "", None, true, &[])
    }

    /// Like [`Bus::start_with`], but runs `daemon` whatever
    /// `BUSBAR_TEST_DAEMON` says (the differential tests start busbar and
    /// dbus-daemon in the same run).
    pub fn start_daemon(daemon: &str, extra: &str) -> Bus {
        Bus::start_full(Some(daemon), None, None, extra, None, false, &[])
    }

    /// Like [`Bus::start_with`], with the daemon's stderr going to a file
    /// that [`Bus::stderr_log`] reads.
    pub fn start_logging(extra: &str) -> Bus {
        Bus::start_inner(None, extra, None, true)
    }

    /// What the daemon wrote to stderr so far (only for
    /// [`Bus::start_logging`]).
    pub fn stderr_log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Like [`Bus::start_with`], with the environment variable `var` set to
    /// the path of the daemon's configuration file.
    #[allow(dead_code)]
    pub fn start_with_config_env(extra: &str, var: &str) -> Bus {
        Bus::start_inner(None, extra, Some(var), false)
    }

    /// Like [`Bus::start_with`], with extra environment variables for the
    /// daemon.
    #[allow(dead_code)]
    pub fn start_with_env(extra: &str, env: &[(&str, &std::ffi::OsStr)]) -> Bus {
        Bus::start_full(None, None, None, extra, None, false, env)
    }

    /// The daemon `daemon` (not [`daemon_path`]) with `extra` in the
    /// `<busconfig>`, extra environment variables, and its stderr going to
    /// [`Bus::stderr_log`] (the re-exec tests start a copy of busbar).
    pub fn start_daemon_logging_env(
        daemon: &str,
        extra: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Bus {
        Bus::start_full(Some(daemon), None, None, extra, None, true, env)
    }

    fn start_inner(
        listen: Option<&str>,
        extra: &str,
        config_env: Option<&str>,
        log_to_file: bool,
    ) -> Bus {
        Bus::start_full(None, listen, None, extra, config_env, log_to_file, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn start_full(
        daemon: Option<&str>,
        listen: Option<&str>,
        policy: Option<&str>,
        extra: &str,
        config_env: Option<&str>,
        log_to_file: bool,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Bus {
        let daemon = daemon.map_or_else(daemon_path, str::to_string);
        let policy = policy.unwrap_or(
            r#"<policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>"#,
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("busbar-itest-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        let config = dir.join("bus.conf");
        let listen = match listen {
            Some(l) => l.to_string(),
            None => format!("unix:path={}", dir.join("bus_socket").display()),
        };
        let text = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{listen}</listen>
  <auth>EXTERNAL</auth>
  {policy}
  {extra}
</busconfig>
"#
        );
        fs::write(&config, text).expect("write config");
        let mut cmd = Command::new(&daemon);
        if let Some(var) = config_env {
            cmd.env(var, &config);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if log_to_file {
            let f = fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
            cmd.stderr(f);
        } else {
            cmd.stderr(Stdio::inherit());
        }
        let cmd = cmd
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--nosyslog")
            .arg("--print-address=1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = spawn_retrying(cmd).unwrap_or_else(|e| {
            let _ = fs::remove_dir_all(&dir);
            panic!("spawn bus daemon {daemon}: {e}")
        });
        let address = read_printed_address(&mut child).unwrap_or_else(|e| {
            let _ = fs::remove_dir_all(&dir);
            panic!("{e}")
        });
        Bus {
            child,
            address,
            dir,
        }
    }

    /// Is the daemon process still running?
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Parses a D-Bus address (the first `;`-separated entry that is a unix
/// transport) and connects to it. Supports `path=` and `abstract=`.
pub fn connect_address(address: &str) -> io::Result<UnixStream> {
    for entry in address.split(';') {
        let Some(rest) = entry.strip_prefix("unix:") else {
            continue;
        };
        for kv in rest.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = unescape(v);
            match k {
                "path" => {
                    use std::os::unix::ffi::OsStrExt;
                    return UnixStream::connect(std::ffi::OsStr::from_bytes(&v));
                }
                "abstract" => {
                    use std::os::linux::net::SocketAddrExt;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&v)?;
                    return UnixStream::connect_addr(&addr);
                }
                _ => {}
            }
        }
    }
    Err(io::Error::new(
        ErrorKind::InvalidInput,
        format!("no usable unix address in {address:?}"),
    ))
}

/// Undoes D-Bus address %-escaping.
fn unescape(v: &str) -> Vec<u8> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Marshalling (alignment from the buffer start; little-endian unless `be`)

#[derive(Default, Clone, Debug)]
pub struct W {
    pub buf: Vec<u8>,
    /// Write big-endian instead.
    pub be: bool,
}

impl W {
    pub fn new() -> W {
        W::default()
    }
    pub fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.align(4);
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(v as u32)
    }
    /// A string (`s` or `o`) from raw bytes, so tests can write invalid UTF-8.
    pub fn str_bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self.buf.push(0);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.str_bytes(v.as_bytes())
    }
    pub fn sig(&mut self, v: &str) -> &mut Self {
        self.buf.push(v.len() as u8);
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
        self
    }
    /// `as`
    pub fn str_array(&mut self, items: &[&str]) -> &mut Self {
        self.u32(0);
        let len_pos = self.buf.len() - 4;
        let start = self.buf.len();
        for s in items {
            self.str(s);
        }
        let len = (self.buf.len() - start) as u32;
        let b = if self.be {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        };
        self.buf[len_pos..len_pos + 4].copy_from_slice(&b);
        self
    }
}

/// A header field value.
#[derive(Clone, Debug)]
pub enum FieldVal {
    /// A string-like value written with the given signature char (s, o, g).
    Str(char, Vec<u8>),
    U32(u32),
}

/// Builds a message; fields are emitted exactly as given, so tests can make
/// invalid ones.
#[derive(Clone, Debug)]
pub struct MsgBuilder {
    pub endian: u8,
    pub msg_type: u8,
    pub flags: u8,
    pub version: u8,
    pub serial: u32,
    pub fields: Vec<(u8, FieldVal)>,
    pub body: Vec<u8>,
    /// Overrides the body length written in the fixed header.
    pub body_len_override: Option<u32>,
}

impl MsgBuilder {
    pub fn new(msg_type: u8, serial: u32) -> MsgBuilder {
        MsgBuilder {
            endian: b'l',
            msg_type,
            flags: 0,
            version: 1,
            serial,
            fields: Vec::new(),
            body: Vec::new(),
            body_len_override: None,
        }
    }

    pub fn method_call(
        serial: u32,
        dest: Option<&str>,
        path: &str,
        iface: Option<&str>,
        member: &str,
    ) -> MsgBuilder {
        let mut m = MsgBuilder::new(METHOD_CALL, serial);
        m = m.field_str(F_PATH, 'o', path);
        if let Some(i) = iface {
            m = m.field_str(F_INTERFACE, 's', i);
        }
        m = m.field_str(F_MEMBER, 's', member);
        if let Some(d) = dest {
            m = m.field_str(F_DESTINATION, 's', d);
        }
        m
    }

    pub fn signal(serial: u32, path: &str, iface: &str, member: &str) -> MsgBuilder {
        MsgBuilder::new(SIGNAL, serial)
            .field_str(F_PATH, 'o', path)
            .field_str(F_INTERFACE, 's', iface)
            .field_str(F_MEMBER, 's', member)
    }

    pub fn field_str(mut self, code: u8, sig: char, v: &str) -> MsgBuilder {
        self.fields
            .push((code, FieldVal::Str(sig, v.as_bytes().to_vec())));
        self
    }
    pub fn field_u32(mut self, code: u8, v: u32) -> MsgBuilder {
        self.fields.push((code, FieldVal::U32(v)));
        self
    }
    /// Sets the body and its SIGNATURE field.
    pub fn body(mut self, sig: &str, body: Vec<u8>) -> MsgBuilder {
        if !sig.is_empty() {
            self = self.field_str(F_SIGNATURE, 'g', sig);
        }
        self.body = body;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut w = W {
            be: self.endian == b'B',
            ..W::new()
        };
        w.u8(self.endian)
            .u8(self.msg_type)
            .u8(self.flags)
            .u8(self.version);
        w.u32(self.body_len_override.unwrap_or(self.body.len() as u32));
        w.u32(self.serial);
        w.u32(0);
        let start = w.buf.len();
        for (code, val) in &self.fields {
            w.align(8);
            w.u8(*code);
            match val {
                FieldVal::Str(c, s) => {
                    w.sig(&c.to_string());
                    if *c == 'g' {
                        w.buf.push(s.len() as u8);
                        w.buf.extend_from_slice(s);
                        w.buf.push(0);
                    } else {
                        w.str_bytes(s);
                    }
                }
                FieldVal::U32(v) => {
                    w.sig("u");
                    w.u32(*v);
                }
            }
        }
        let len = (w.buf.len() - start) as u32;
        let b = if w.be {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        };
        w.buf[12..16].copy_from_slice(&b);
        w.align(8);
        w.buf.extend_from_slice(&self.body);
        w.buf
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// A received message.
#[derive(Debug, Default)]
pub struct Msg {
    pub big_endian: bool,
    pub msg_type: u8,
    pub flags: u8,
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub signature: String,
    pub unix_fds: u32,
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Msg {
    pub fn reader(&self) -> R<'_> {
        R {
            buf: &self.body,
            pos: 0,
            be: self.big_endian,
        }
    }
    /// The first body argument as a string (for `s`, `o`, or errors).
    pub fn arg0_str(&self) -> String {
        self.reader().string()
    }
    pub fn arg0_u32(&self) -> u32 {
        self.reader().u32()
    }
    pub fn is_signal(&self, iface: &str, member: &str) -> bool {
        self.msg_type == SIGNAL
            && self.interface.as_deref() == Some(iface)
            && self.member.as_deref() == Some(member)
    }
}

/// A reader for the body types these tests need.
pub struct R<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub be: bool,
}

impl R<'_> {
    pub fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    pub fn u8(&mut self) -> u8 {
        let v = self.buf[self.pos];
        self.pos += 1;
        v
    }
    pub fn u32(&mut self) -> u32 {
        self.align(4);
        let b: [u8; 4] = self.buf[self.pos..self.pos + 4].try_into().unwrap();
        self.pos += 4;
        if self.be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
    pub fn string(&mut self) -> String {
        let len = self.u32() as usize;
        let s = String::from_utf8_lossy(&self.buf[self.pos..self.pos + len]).into_owned();
        self.pos += len + 1;
        s
    }
    pub fn sig(&mut self) -> String {
        let len = self.u8() as usize;
        let s = String::from_utf8_lossy(&self.buf[self.pos..self.pos + len]).into_owned();
        self.pos += len + 1;
        s
    }
    /// `as`
    pub fn str_array(&mut self) -> Vec<String> {
        let len = self.u32() as usize;
        let end = self.pos + len;
        let mut v = Vec::new();
        while self.pos < end {
            v.push(self.string());
        }
        v
    }
    /// `a{sv}` with values [`R::variant_simple`] can read.
    pub fn dict_sv(&mut self) -> Vec<(String, String, String)> {
        let len = self.u32() as usize;
        self.align(8);
        let end = self.pos + len;
        let mut v = Vec::new();
        while self.pos < end {
            self.align(8);
            let k = self.string();
            let (sig, val) = self.variant_simple();
            v.push((k, sig, val));
        }
        v
    }
    /// A variant holding a basic string-like or u32 value, as text.
    pub fn variant_simple(&mut self) -> (String, String) {
        let sig = self.sig();
        let val = match sig.as_str() {
            "s" | "o" => self.string(),
            "g" => self.sig(),
            "u" | "b" => self.u32().to_string(),
            "as" => self.str_array().join(","),
            "au" => {
                let len = self.u32() as usize;
                let end = self.pos + len;
                let mut v = Vec::new();
                while self.pos < end {
                    v.push(self.u32().to_string());
                }
                v.join(",")
            }
            "ay" => {
                let len = self.u32() as usize;
                let v = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                String::from_utf8_lossy(v).into_owned()
            }
            other => panic!("variant_simple: unsupported {other}"),
        };
        (sig, val)
    }
}

/// Parses one complete message (as framed by [`read_frame`]).
pub fn parse_msg(frame: &[u8]) -> Msg {
    let be = frame[0] == b'B';
    let mut r = R {
        buf: frame,
        pos: 0,
        be,
    };
    let mut m = Msg {
        big_endian: be,
        ..Default::default()
    };
    r.u8();
    m.msg_type = r.u8();
    m.flags = r.u8();
    r.u8();
    let body_len = r.u32() as usize;
    m.serial = r.u32();
    let fields_len = r.u32() as usize;
    let end = 16 + fields_len;
    while r.pos < end {
        r.align(8);
        let code = r.u8();
        let sig = r.sig();
        match sig.as_str() {
            "s" | "o" => {
                let s = r.string();
                match code {
                    F_PATH => m.path = Some(s),
                    F_INTERFACE => m.interface = Some(s),
                    F_MEMBER => m.member = Some(s),
                    F_ERROR_NAME => m.error_name = Some(s),
                    F_DESTINATION => m.destination = Some(s),
                    F_SENDER => m.sender = Some(s),
                    _ => {}
                }
            }
            "g" => {
                let s = r.sig();
                if code == F_SIGNATURE {
                    m.signature = s;
                }
            }
            "u" => {
                let v = r.u32();
                match code {
                    F_REPLY_SERIAL => m.reply_serial = Some(v),
                    F_UNIX_FDS => m.unix_fds = v,
                    _ => {}
                }
            }
            other => panic!("unexpected header field type {other}"),
        }
    }
    r.align(8);
    m.body = frame[r.pos..r.pos + body_len].to_vec();
    m
}

/// Total length of a message from its 16-byte fixed header.
pub fn frame_len(fixed: &[u8; 16]) -> usize {
    let get = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().unwrap();
        if fixed[0] == b'B' {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let body = get(&fixed[4..8]) as usize;
    let fields = get(&fixed[12..16]) as usize;
    16 + fields.div_ceil(8) * 8 + body
}

// ---------------------------------------------------------------------------
// Socket helpers

/// Receives bytes, collecting any SCM_RIGHTS file descriptors.
fn recv_with_fds(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
    loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(r) => {
                for c in r.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        for fd in v {
                            // SAFETY: the kernel just gave us this descriptor; we own it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                return Ok(r.bytes);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Sends bytes with file descriptors attached (SCM_RIGHTS).
pub fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[std::os::fd::RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(data)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    assert_eq!(n, data.len(), "short sendmsg");
    Ok(())
}

/// Reads until EOF or a connection error, discarding whatever arrives,
/// within the timeout. Returns what was read, or panics if the peer stays
/// open.
pub fn expect_disconnect(sock: &mut UnixStream, what: &str) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: the bus did not disconnect the peer within {TIMEOUT:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == ErrorKind::ConnectionReset || e.kind() == ErrorKind::BrokenPipe =>
            {
                return got
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("{what}: the bus did not disconnect the peer within {TIMEOUT:?} (read so far: {got:?})")
            }
            Err(e) => panic!("{what}: unexpected read error {e}"),
        }
    }
}

/// Writes, ignoring EPIPE/ECONNRESET (the bus may already have hung up).
pub fn write_lenient(sock: &mut UnixStream, data: &[u8]) {
    match sock.write_all(data) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe || e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("write: {e}"),
    }
}

pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Our uid, as EXTERNAL sends it.
pub fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

// ---------------------------------------------------------------------------
// The raw client

pub struct Client {
    pub sock: UnixStream,
    pub serial: u32,
    pub unique_name: String,
    pub pending: VecDeque<Msg>,
    inbuf: Vec<u8>,
    infds: Vec<OwnedFd>,
}

impl Client {
    /// Connects without authenticating.
    pub fn connect_raw(bus: &Bus) -> UnixStream {
        let s = connect_address(&bus.address).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    /// Connects to any bus `address`, authenticates and says Hello.
    pub fn connect_to(address: &str) -> Client {
        let s = connect_address(address).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client::auth(s, false);
        c.hello();
        c
    }

    /// Connects and authenticates (EXTERNAL), without Hello.
    pub fn connect_authed(bus: &Bus, unix_fds: bool) -> Client {
        Client::auth(Client::connect_raw(bus), unix_fds)
    }

    fn auth(mut sock: UnixStream, unix_fds: bool) -> Client {
        sock.write_all(format!("\0AUTH EXTERNAL {}\r\n", hex(&uid().to_string())).as_bytes())
            .unwrap();
        let line = read_line(&mut sock);
        assert!(line.starts_with("OK "), "auth: expected OK, got {line:?}");
        if unix_fds {
            sock.write_all(b"NEGOTIATE_UNIX_FD\r\n").unwrap();
            let line = read_line(&mut sock);
            assert_eq!(line, "AGREE_UNIX_FD", "NEGOTIATE_UNIX_FD");
        }
        sock.write_all(b"BEGIN\r\n").unwrap();
        Client::from_stream(sock)
    }

    /// Wraps a stream that is past BEGIN.
    pub fn from_stream(sock: UnixStream) -> Client {
        Client {
            sock,
            serial: 0,
            unique_name: String::new(),
            pending: VecDeque::new(),
            inbuf: Vec::new(),
            infds: Vec::new(),
        }
    }

    /// Connects, authenticates and says Hello.
    pub fn connect(bus: &Bus) -> Client {
        let mut c = Client::connect_authed(bus, false);
        c.hello();
        c
    }

    /// Connects with unix fd passing negotiated, and says Hello.
    pub fn connect_fds(bus: &Bus) -> Client {
        let mut c = Client::connect_authed(bus, true);
        c.hello();
        c
    }

    pub fn hello(&mut self) {
        let r = self.call_driver("Hello", "", vec![]);
        assert_eq!(r.msg_type, METHOD_RETURN, "Hello failed: {r:?}");
        self.unique_name = r.arg0_str();
        assert!(
            self.unique_name.starts_with(':'),
            "unique name {:?}",
            self.unique_name
        );
    }

    pub fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).expect("send");
    }

    /// Sends a message, setting its serial; returns the serial.
    pub fn send(&mut self, mut m: MsgBuilder) -> u32 {
        m.serial = self.next_serial();
        let b = m.build();
        self.send_bytes(&b);
        m.serial
    }

    /// Sends a method call; returns its serial.
    pub fn call(
        &mut self,
        dest: Option<&str>,
        path: &str,
        iface: Option<&str>,
        member: &str,
        sig: &str,
        body: Vec<u8>,
    ) -> u32 {
        let m = MsgBuilder::method_call(0, dest, path, iface, member).body(sig, body);
        self.send(m)
    }

    /// Calls a driver method and waits for its reply (other messages are queued).
    pub fn call_driver(&mut self, member: &str, sig: &str, body: Vec<u8>) -> Msg {
        let s = self.call(Some(DRIVER), DRIVER_PATH, Some(DRIVER), member, sig, body);
        self.wait_reply(s)
    }

    /// Waits for the reply to `serial`, queueing anything else.
    pub fn wait_reply(&mut self, serial: u32) -> Msg {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| m.reply_serial == Some(serial))
        {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let m = self
                .read_msg()
                .unwrap_or_else(|e| panic!("waiting for reply to {serial}: {e}"));
            if m.reply_serial == Some(serial)
                && (m.msg_type == METHOD_RETURN || m.msg_type == ERROR)
            {
                return m;
            }
            self.pending.push_back(m);
        }
    }

    /// The next message: queued first, then from the socket.
    pub fn recv(&mut self) -> Msg {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        self.read_msg().unwrap_or_else(|e| panic!("recv: {e}"))
    }

    /// Reads the next message from the socket (ignoring the queue).
    pub fn read_msg(&mut self) -> io::Result<Msg> {
        self.read_msg_until(Instant::now() + TIMEOUT)
    }

    /// The next message from the socket, or None if none arrives within
    /// `quiet` (or the bus hung up).
    pub fn read_msg_within(&mut self, quiet: Duration) -> Option<Msg> {
        self.read_msg_until(Instant::now() + quiet).ok()
    }

    fn read_msg_until(&mut self, deadline: Instant) -> io::Result<Msg> {
        loop {
            if self.inbuf.len() >= 16 {
                let fixed: [u8; 16] = self.inbuf[..16].try_into().unwrap();
                let len = frame_len(&fixed);
                if self.inbuf.len() >= len {
                    let frame: Vec<u8> = self.inbuf.drain(..len).collect();
                    let mut m = parse_msg(&frame);
                    let n = (m.unix_fds as usize).min(self.infds.len());
                    m.fds = self.infds.drain(..n).collect();
                    return Ok(m);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no message within the timeout",
                ));
            }
            self.sock.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 65536];
            let n = recv_with_fds(&self.sock, &mut buf, &mut self.infds)?;
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "bus closed the connection",
                ));
            }
            self.inbuf.extend_from_slice(&buf[..n]);
        }
    }

    /// A round trip to the driver: everything the bus routed to us before
    /// it handled this call is then in `pending`.
    pub fn barrier(&mut self) {
        let r = self.call_driver("GetId", "", vec![]);
        assert_eq!(r.msg_type, METHOD_RETURN, "GetId failed: {r:?}");
    }

    /// Drains `pending` (after a barrier), returning the messages that match.
    pub fn take_pending(&mut self, f: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let (yes, no): (Vec<Msg>, Vec<Msg>) = self.pending.drain(..).partition(|m| f(m));
        self.pending = no.into();
        yes
    }

    pub fn add_match(&mut self, rule: &str) {
        let mut w = W::new();
        w.str(rule);
        let r = self.call_driver("AddMatch", "s", w.buf);
        assert_eq!(r.msg_type, METHOD_RETURN, "AddMatch {rule}: {r:?}");
    }

    /// Makes this connection a monitor with `rules` (none: it sees
    /// everything), asserting that BecomeMonitor succeeded.
    pub fn become_monitor(&mut self, rules: &[&str]) {
        let mut w = W::new();
        w.str_array(rules).u32(0);
        let s = self.call(
            Some(DRIVER),
            DRIVER_PATH,
            Some("org.freedesktop.DBus.Monitoring"),
            "BecomeMonitor",
            "asu",
            w.buf,
        );
        let r = self.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "BecomeMonitor: {r:?}");
    }

    pub fn remove_match(&mut self, rule: &str) -> Msg {
        let mut w = W::new();
        w.str(rule);
        self.call_driver("RemoveMatch", "s", w.buf)
    }

    /// RequestName; returns the reply code (panics on an error reply).
    pub fn request_name(&mut self, name: &str, flags: u32) -> u32 {
        let mut w = W::new();
        w.str(name).u32(flags);
        let r = self.call_driver("RequestName", "su", w.buf);
        assert_eq!(r.msg_type, METHOD_RETURN, "RequestName {name}: {r:?}");
        r.arg0_u32()
    }

    pub fn release_name(&mut self, name: &str) -> u32 {
        let mut w = W::new();
        w.str(name);
        let r = self.call_driver("ReleaseName", "s", w.buf);
        assert_eq!(r.msg_type, METHOD_RETURN, "ReleaseName {name}: {r:?}");
        r.arg0_u32()
    }

    pub fn list_names(&mut self) -> Vec<String> {
        let r = self.call_driver("ListNames", "", vec![]);
        assert_eq!(r.msg_type, METHOD_RETURN, "ListNames: {r:?}");
        r.reader().str_array()
    }

    pub fn get_id(&mut self) -> String {
        let r = self.call_driver("GetId", "", vec![]);
        assert_eq!(r.msg_type, METHOD_RETURN, "GetId: {r:?}");
        r.arg0_str()
    }
}

/// Reads one `\r\n`-terminated SASL line (without the terminator).
pub fn read_line(sock: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match sock.read(&mut b) {
            Ok(0) => panic!("EOF during auth after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => {
                line.push(b[0]);
                if line.ends_with(b"\r\n") {
                    line.truncate(line.len() - 2);
                    return String::from_utf8_lossy(&line).into_owned();
                }
            }
            Err(e) => panic!("reading auth line: {e}"),
        }
    }
}

/// The well-behaved client still gets answers, and the daemon lives.
pub fn assert_bus_healthy(bus: &mut Bus, good: &mut Client) {
    let id = good.get_id();
    assert_eq!(id.len(), 32, "GetId returned {id:?}");
    assert!(
        id.bytes().all(|b| b.is_ascii_hexdigit()),
        "GetId returned {id:?}"
    );
    let names = good.list_names();
    assert!(
        names.contains(&good.unique_name),
        "ListNames {names:?} lacks {}",
        good.unique_name
    );
    assert!(
        names.iter().any(|n| n == DRIVER),
        "ListNames {names:?} lacks the driver"
    );
    assert!(bus.is_alive(), "the daemon died");
}
