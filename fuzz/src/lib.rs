//! The bodies of busbar's fuzz targets.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line libFuzzer wrapper around the
//! function of the same name here, so that the deterministic driver
//! (`src/bin/replay.rs`) runs exactly the same code without libFuzzer.
//!
//! Every function must return normally for any input; a panic (including a
//! failed invariant `assert!`) is a finding.

use std::path::Path;
use std::rc::Rc;

use busbar::broker::matchrule::{Arg, ArgMatch, MatchRule, MatchSubject, MAX_RULE_LENGTH};
use busbar::transport::sasl::{Mechanism, SaslConfig, SaslServer, SaslStatus};
use busbar::wire::body::validate_body;
use busbar::wire::header::{forward_header, frame_len, Header};
use busbar::wire::marshal::Reader;
use busbar::wire::signature::{single_type_len, validate_signature};
use busbar::wire::Endian;

/// Every target, by name (the names of the cargo-fuzz targets and of the
/// corpus directories).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("header_parse", header_parse),
    ("body_validate", body_validate),
    ("marshal_reader", marshal_reader),
    ("match_rule", match_rule),
    ("sasl", sasl),
    ("config", config),
    ("service_file", service_file),
    ("exec_split", exec_split),
];

// ---------------------------------------------------------------------------
// header_parse

/// Input: `[n_fds selector] ++ message`. Parses the message as the broker does
/// for every frame a peer sends; on success checks every accessor and that
/// the header the bus forwards (SENDER replaced) parses again with the same
/// fields.
pub fn header_parse(data: &[u8]) {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let n_fds = usize::from(sel % 5);
    let framed = frame_len(&msg[..16.min(msg.len())], usize::MAX);
    let Ok(h) = Header::parse(msg, n_fds) else {
        return;
    };
    // A message that parses is exactly one frame.
    assert_eq!(framed, Ok(msg.len()), "frame_len disagrees with parse");
    assert!(h.body_start <= msg.len() && h.body_start % 8 == 0);
    assert!(h.serial != 0);
    assert!((1..=4).contains(&h.msg_type));
    assert!(h.unix_fds as usize <= n_fds);
    let _ = (h.endian(), h.no_reply_expected(), h.no_auto_start());
    let fields = Fields::of(&h, msg);

    let mut fwd = forward_header(&h, msg, ":1.1");
    assert_eq!(fwd.len() % 8, 0, "forwarded header not padded to 8");
    fwd.extend_from_slice(&msg[h.body_start..]);
    let h2 = match Header::parse(&fwd, n_fds) {
        Ok(h2) => h2,
        Err(e) => panic!("forwarded message does not parse: {e} ({fwd:?})"),
    };
    let f2 = Fields::of(&h2, &fwd);
    assert_eq!(f2.sender.as_deref(), Some(":1.1"), "SENDER not replaced");
    assert_eq!(
        Fields { sender: None, ..f2 },
        Fields {
            sender: None,
            ..fields
        },
        "forwarding changed the header"
    );
    assert_eq!(&fwd[h2.body_start..], &msg[h.body_start..], "body changed");
}

/// Everything a parsed header exposes, for comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Fields {
    endian: Endian,
    msg_type: u8,
    flags: u8,
    serial: u32,
    reply_serial: Option<u32>,
    unix_fds: u32,
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    error_name: Option<String>,
    destination: Option<String>,
    sender: Option<String>,
    signature: Option<String>,
}

impl Fields {
    fn of(h: &Header, msg: &[u8]) -> Fields {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Fields {
            endian: h.endian(),
            msg_type: h.msg_type,
            flags: h.flags,
            serial: h.serial,
            reply_serial: h.reply_serial,
            unix_fds: h.unix_fds,
            path: s(h.path(msg)),
            interface: s(h.interface(msg)),
            member: s(h.member(msg)),
            error_name: s(h.error_name(msg)),
            destination: s(h.destination(msg)),
            sender: s(h.sender(msg)),
            signature: s(h.signature(msg)),
        }
    }
}

// ---------------------------------------------------------------------------
// body_validate

/// Input: `[flags] [sig_len] ++ sig[sig_len] ++ body`. flags bit 0: big
/// endian; bits 1..4 are unused (they once gave the fd count, which body
/// validation no longer checks, as in dbus-daemon). Validates the body; a valid body must also be
/// skippable value by value with the `Reader` and consumed exactly.
pub fn body_validate(data: &[u8]) {
    let _ = validate_signature(data);
    if data.len() < 2 {
        return;
    }
    let endian = if data[0] & 1 == 1 {
        Endian::Big
    } else {
        Endian::Little
    };
    let rest = &data[2..];
    let sig_len = usize::from(data[1]).min(rest.len());
    let (sig, body) = rest.split_at(sig_len);
    let sig_ok = validate_signature(sig).is_ok();
    if validate_body(sig, body, endian).is_err() {
        return;
    }
    assert!(sig_ok, "validate_body accepted an invalid signature");
    // Differential check: Reader::skip is looser (no checks inside arrays,
    // no fd range checks) so it must accept everything validate_body does.
    let mut r = Reader::new(body, endian);
    let mut s = sig;
    while !s.is_empty() {
        let n = single_type_len(s).expect("single_type_len failed on a valid signature");
        assert!(n >= 1 && n <= s.len());
        if let Err(e) = r.skip(s) {
            panic!("Reader::skip rejected a valid body at {}: {e}", r.pos());
        }
        s = &s[n..];
    }
    assert!(r.at_end(), "Reader::skip did not consume a valid body");
    assert_eq!(r.pos(), body.len());
}

// ---------------------------------------------------------------------------
// marshal_reader

/// Input: `[flags] [n_ops] ++ ops[n_ops] ++ buffer`. Runs a sequence of
/// Reader operations chosen by the op bytes over `buffer`. Errors are fine;
/// panics and inconsistent positions are not.
pub fn marshal_reader(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let endian = if data[0] & 1 == 1 {
        Endian::Big
    } else {
        Endian::Little
    };
    let stop_on_error = data[0] & 2 != 0;
    let rest = &data[2..];
    let n_ops = usize::from(data[1]).min(rest.len());
    let (mut ops, buf) = rest.split_at(n_ops);
    let mut r = Reader::new(buf, endian);
    let arg = |ops: &mut &[u8]| -> u8 {
        let (b, tail) = ops.split_first().map_or((0, &[][..]), |(b, t)| (*b, t));
        *ops = tail;
        b
    };
    while let Some((&op, tail)) = ops.split_first() {
        ops = tail;
        let before = r.pos();
        let res: Result<(), busbar::wire::WireError> = match op % 22 {
            0 => r.u8().map(drop),
            1 => r.bool().map(drop),
            2 => r.i16().map(drop),
            3 => r.u16().map(drop),
            4 => r.u32().map(drop),
            5 => r.i32().map(drop),
            6 => r.unix_fd().map(drop),
            7 => r.u64().map(drop),
            8 => r.i64().map(drop),
            9 => r.f64().map(drop),
            10 => r.string().map(|s| assert!(!s.contains('\0'))),
            11 => r.object_path().map(drop),
            12 => r
                .signature()
                .map(|s| assert!(validate_signature(s.as_bytes()).is_ok())),
            13 => r.variant().and_then(|sig| {
                assert_eq!(single_type_len(sig.as_bytes()), Ok(sig.len()));
                r.skip(sig.as_bytes())
            }),
            14 => {
                let a = arg(&mut ops);
                let align = match a % 8 {
                    0 => 1,
                    1 => 2,
                    2 => 4,
                    3 => 8,
                    4 => 0,
                    5 => 3,
                    6 => 16,
                    _ => usize::from(a),
                };
                r.begin_array(align).map(|end| {
                    assert!(end >= r.pos() && end <= buf.len(), "array end out of range");
                })
            }
            15 => {
                // Skip with a validated signature taken from the op stream.
                let len = usize::from(arg(&mut ops) % 16).min(ops.len());
                let (sig, t) = ops.split_at(len);
                ops = t;
                match validate_signature(sig) {
                    Ok(()) if !sig.is_empty() => r.skip(sig),
                    _ => Ok(()),
                }
            }
            16 => {
                // Skip with arbitrary (unvalidated) signature bytes: the
                // function is public, so it must not panic on them either.
                let len = usize::from(arg(&mut ops) % 16).min(ops.len());
                let (sig, t) = ops.split_at(len);
                ops = t;
                r.skip(sig)
            }
            17 => {
                let a = arg(&mut ops);
                r.align(usize::from(a % 17))
            }
            18 => r.align(usize::MAX),
            19 => {
                // A well-typed read: a whole a{sv}.
                r.begin_array(8).and_then(|end| {
                    while r.pos() < end {
                        r.align(8)?;
                        r.string()?;
                        let s = r.variant()?;
                        r.skip(s.as_bytes())?;
                    }
                    Ok(())
                })
            }
            20 => r.skip(b"a{sv}"),
            _ => r.skip(b"(yba(ii)v)"),
        };
        assert!(r.pos() <= buf.len(), "reader past end");
        assert_eq!(r.remaining(), buf.len() - r.pos());
        assert_eq!(r.at_end(), r.pos() == buf.len());
        assert_eq!(r.endian(), endian);
        if res.is_ok() {
            assert!(r.pos() >= before, "reader went backwards");
        } else if stop_on_error {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// match_rule

/// A message that has exactly the values a rule asks for.
struct Echo<'a>(&'a MatchRule);

impl MatchSubject for Echo<'_> {
    fn msg_type(&self) -> u8 {
        self.0.msg_type.map_or(4, |t| t.code())
    }
    fn sender_is(&self, name: &str) -> bool {
        self.0.sender.as_deref() == Some(name)
    }
    fn destination(&self) -> Option<&str> {
        self.0.destination.as_deref()
    }
    fn path(&self) -> Option<&str> {
        self.0.path.as_deref().or(self.0.path_namespace.as_deref())
    }
    fn interface(&self) -> Option<&str> {
        self.0.interface.as_deref()
    }
    fn member(&self) -> Option<&str> {
        self.0.member.as_deref()
    }
    fn arg(&self, n: u8) -> Option<Arg<'_>> {
        self.0.arg(n).map(|a| match a {
            ArgMatch::Path(p) if p.starts_with('/') => Arg::Path(p),
            other => Arg::Str(other.value()),
        })
    }
}

/// Input: the rule text (lossy UTF-8). Parses it; a rule that parses must
/// print to a text that parses back to the same rule (unless that text is
/// over the 1024-byte limit: escaping `'` as `'\''` can make it longer than
/// the input), and must match a message made of its own values.
pub fn match_rule(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let rule = match MatchRule::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.error_name();
            return;
        }
    };
    assert!(
        rule.args.windows(2).all(|w| w[0].0 < w[1].0),
        "args not sorted/unique"
    );
    for n in 0..=64u8 {
        let _ = rule.arg(n);
    }
    let printed = rule.to_string();
    match MatchRule::parse(&printed) {
        Ok(back) => assert_eq!(
            back, rule,
            "round trip through {printed:?} changed the rule"
        ),
        Err(e) => assert!(
            printed.len() > MAX_RULE_LENGTH,
            "canonical text {printed:?} does not parse: {e}"
        ),
    }
    assert!(
        rule.matches(&Echo(&rule)),
        "rule does not match its own values: {printed:?}"
    );
}

// ---------------------------------------------------------------------------
// sasl

fn keyring_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("busbar-fuzz-keyrings-{}", std::process::id()))
}

/// Input: `[config] [split seed] ++ bytes from the client`. The config byte
/// picks the allowed mechanisms, allow_anonymous, unix_fd_possible and the
/// peer uid; the bytes are fed in chunks whose sizes come from the seed,
/// re-feeding what was not consumed as a connection does.
pub fn sasl(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let c = data[0];
    let mut mechanisms = Vec::new();
    if c & 1 != 0 {
        mechanisms.push(Mechanism::External);
    }
    if c & 2 != 0 {
        mechanisms.push(Mechanism::Anonymous);
    }
    if c & 4 != 0 {
        mechanisms.push(Mechanism::CookieSha1);
    }
    let me = busbar_euid();
    let uid = match (c >> 5) & 3 {
        0 | 1 => Some(me),
        2 => Some(me.wrapping_add(1)),
        _ => None,
    };
    let config = Rc::new(SaslConfig {
        mechanisms,
        allow_anonymous: c & 8 != 0,
        guid: "0123456789abcdef0123456789abcdef".to_string(),
        unix_fd_possible: c & 16 != 0,
    });
    // DBUS_COOKIE_SHA1 would otherwise create ~/.dbus-keyrings.
    let mut s = SaslServer::with_keyring_dir(config, uid, keyring_dir());
    let mut seed = u32::from(data[1]) | 0x100;
    let input = &data[2..];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut done: Option<SaslStatus> = None;
    let mut i = 0;
    loop {
        // Next chunk: 1..=16 bytes, or everything left when the seed's low
        // bits say so.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = if data[1] == 0 {
            input.len()
        } else {
            (seed % 16 + 1) as usize
        };
        let end = (i + n).min(input.len());
        pending.extend_from_slice(&input[i..end]);
        i = end;
        let (mut used, mut st) = s.feed(&pending, &mut out);
        // The DBUS_COOKIE_SHA1 key lookup runs on a worker thread: wait for
        // it, as the daemon does when the worker wakes it.
        while s.waiting_for_keyring() {
            s.wait_for_keyring();
            let (more, again) = s.feed(&pending[used..], &mut out);
            used += more;
            st = again;
        }
        assert!(used <= pending.len(), "consumed more than given");
        if let Some(prev) = &done {
            assert_eq!(&st, prev, "final status changed");
            assert_eq!(used, 0, "consumed input after a final status");
        }
        pending.drain(..used);
        match st {
            SaslStatus::Continue => {}
            final_status => {
                if let SaslStatus::Authenticated { uid: Some(u), .. } = final_status {
                    assert!(
                        uid.is_none() || uid == Some(u),
                        "authenticated as another uid"
                    );
                }
                done = Some(final_status);
            }
        }
        if out.len() > 1 << 20 {
            panic!("unbounded output");
        }
        if i == input.len() {
            break;
        }
    }
    let _ = s.authorized_uid();
    // One more feed after the end must agree with the final status.
    if let Some(prev) = done {
        let (used, st) = s.feed(b"BEGIN\r\n", &mut out);
        assert_eq!(used, 0);
        assert_eq!(st, prev);
    }
}

fn busbar_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

// ---------------------------------------------------------------------------
// config

fn load_options() -> policy::LoadOptions {
    let id = |name: &str| -> Option<u32> {
        match name {
            "root" => Some(0),
            "messagebus" => Some(100),
            "nobody" => Some(65534),
            _ => None,
        }
    };
    policy::LoadOptions {
        xdg_runtime_dir: Some("/nonexistent/run".into()),
        xdg_data_home: Some("/nonexistent/home/.local/share".into()),
        xdg_data_dirs: Some("/nonexistent/usr/share".into()),
        home: Some("/nonexistent/home".into()),
        selinux_enabled: false,
        selinux_policy_root: None,
        user_id: Box::new(id),
        group_id: Box::new(id),
    }
}

/// Input: busconfig XML (lossy UTF-8), loaded as /nonexistent/fuzz.conf. On
/// success, compiles a few connection policies and asks them questions.
///
/// Inputs that name /dev, /proc or /sys are skipped: an `<include>` of
/// /dev/zero or /dev/stdin would hang the fuzzer, not find a bug.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    thread_local! {
        static OPTS: policy::LoadOptions = load_options();
    }
    let cfg = OPTS.with(|o| policy::load_str_with(&text, Path::new("/nonexistent/fuzz.conf"), o));
    let Ok(cfg) = cfg else {
        return;
    };
    let pol = &cfg.policy;
    let _ = pol.allows_user_owned_by(0, &[0], Some(0));
    let _ = pol.allows_user_owned_by(1000, &[100, 1000], Some(0));
    let facts = [
        policy::MessageFacts {
            msg_type: policy::msg_type::METHOD_CALL,
            path: Some("/org/freedesktop/DBus"),
            interface: Some("org.freedesktop.DBus"),
            member: Some("Hello"),
            destination: Some("org.freedesktop.DBus"),
            ..Default::default()
        },
        policy::MessageFacts {
            msg_type: policy::msg_type::SIGNAL,
            path: Some("/a/b"),
            interface: Some("com.example.I"),
            member: Some("Changed"),
            unix_fds: 1,
            ..Default::default()
        },
        policy::MessageFacts {
            msg_type: policy::msg_type::ERROR,
            error_name: Some("com.example.Error.Failed"),
            destination: Some(":1.5"),
            reply_serial: Some(7),
            ..Default::default()
        },
    ];
    for (uid, gids, console) in [
        (Some(0), &[0u32][..], false),
        (Some(1000), &[100, 1000][..], true),
        (None, &[][..], false),
    ] {
        let cp = pol.for_connection(uid, gids, console);
        for name in ["org.freedesktop.DBus", "com.example.Foo", ":1.1", "a.b.c.d"] {
            let _ = cp.can_own(name);
        }
        for f in &facts {
            for (names, req) in [
                (&["org.freedesktop.DBus"][..], false),
                (&[":1.5", "com.example.Foo"][..], true),
            ] {
                let v = cp.can_send(f, names, req, false);
                let _ = (v.allowed, v.log, v.matched_rules);
                let _ = cp.can_receive(f, names, req, !req);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// service_file / exec_split

/// Input: a .service file (lossy UTF-8). On success also checks it for the
/// system bus and splits its Exec= line.
pub fn service_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/nonexistent/services/org.example.Fuzz.service");
    let Ok(sf) = policy::parse_service_file(&text, path) else {
        return;
    };
    let _ = sf.check_system();
    let _ = sf.named_correctly();
    if let Ok(words) = policy::split_exec(&sf.exec) {
        assert!(!words.is_empty());
    }
}

/// Input: an Exec= command line (lossy UTF-8).
pub fn exec_split(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(words) = policy::split_exec(&text) {
        assert!(
            !words.is_empty(),
            "split_exec returned no words without an error"
        );
    }
}

#[cfg(test)]
mod tests {
    //! The hand-made seeds must exercise the success paths of their targets.
    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                (n, std::fs::read(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn message_seeds_parse() {
        for (name, data) in seeds("header_parse") {
            let ok = Header::parse(&data[1..], usize::from(data[0] % 5));
            if name.starts_with("invalid-") {
                assert!(ok.is_err(), "{name} parsed");
            } else if name.starts_with("valid-") {
                // libdbus's "valid" messages are only valid for its
                // demarshaller (byteswap-fd-index has message type 0x2d).
            } else {
                assert!(ok.is_ok(), "{name}: {ok:?}");
            }
        }
    }

    #[test]
    fn body_seeds_validate() {
        for (name, data) in seeds("body_validate") {
            let endian = if data[0] & 1 == 1 {
                Endian::Big
            } else {
                Endian::Little
            };
            let n = usize::from(data[1]);
            let r = validate_body(&data[2..2 + n], &data[2 + n..], endian);
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }

    #[test]
    fn rule_seeds_parse() {
        for (name, data) in seeds("match_rule") {
            let r = MatchRule::parse(std::str::from_utf8(&data).unwrap());
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }
}
