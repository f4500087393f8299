//! Differential policy test: the same configuration and the same clients
//! against busbar and /usr/bin/dbus-daemon; every outcome must agree except
//! for the differences listed in tests/policy_data/allowlist.txt.
//!
//! The clients are compat-tests/policy-diff/harness.py (raw D-Bus over
//! sockets, one forked worker per uid: 0, 100 and 65534). Needs root (to
//! switch uids) and /usr/bin/dbus-daemon; skips with a message otherwise.
//!
//! A second test starts busbar with a copy of this machine's system.conf.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";
const PYTHON: &str = "/usr/bin/python3";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says why a test does not run (and fails under CI).
fn skip(why: &str) {
    common::skip_or_fail(why)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("busbar-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn harness(args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg(root().join("compat-tests/policy-diff/harness.py"))
        .args(args)
        .output()
        .expect("run harness.py");
    assert!(
        out.status.success(),
        "harness.py {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

struct Allowed {
    case: String,
    kind: String,
    why: String,
}

fn allowlist() -> Vec<Allowed> {
    let text = std::fs::read_to_string(root().join("tests/policy_data/allowlist.txt"))
        .expect("read allowlist.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, " | ").collect();
            assert_eq!(parts.len(), 3, "bad allowlist line: {l}");
            assert!(
                parts[0] == "deliberate" || parts[0] == "known-bug",
                "bad allowlist kind: {l}"
            );
            Allowed {
                kind: parts[0].to_owned(),
                case: parts[1].to_owned(),
                why: parts[2].to_owned(),
            }
        })
        .collect()
}

#[test]
fn policy_matches_dbus_daemon() {
    if !is_root() {
        return skip(
            "policy_matches_dbus_daemon needs root (clients switch to uids 100 and 65534)",
        );
    }
    if !Path::new(DBUS_DAEMON).exists() {
        return skip("policy_matches_dbus_daemon needs /usr/bin/dbus-daemon");
    }
    let has_python = Command::new(PYTHON)
        .args(["-c", "import socket; socket.send_fds"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        return skip("policy_matches_dbus_daemon needs /usr/bin/python3 (3.9 or later)");
    }
    let started = Instant::now();
    let dir = tempdir("policydiff");
    let conf = root().join("tests/policy_data/differential.conf");
    let conf = conf.to_str().expect("utf-8 path");
    let ours = dir.join("busbar.json");
    let theirs = dir.join("dbus-daemon.json");
    let ours_s = ours.to_str().expect("utf-8 path");
    let theirs_s = theirs.to_str().expect("utf-8 path");
    harness(&["run", env!("CARGO_BIN_EXE_busbar"), conf, ours_s]);
    harness(&["run", DBUS_DAEMON, conf, theirs_s]);
    let diff = harness(&["diff", ours_s, theirs_s]);

    let allowed = allowlist();
    let mut cases = 0;
    let mut unexpected = Vec::new();
    let mut tolerated = Vec::new();
    for line in diff.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[..] {
            ["CASES", a, b] => {
                assert_eq!(a, b, "the two runs produced different case sets");
                cases = a.parse().expect("case count");
            }
            ["MISMATCH", case, ours, theirs] => match allowed.iter().find(|a| a.case == case) {
                Some(a) => tolerated.push((case, ours, theirs, a)),
                None => unexpected.push((case, ours, theirs)),
            },
            _ => panic!("unexpected harness output: {line}"),
        }
    }
    println!(
        "{cases} cases against busbar and dbus-daemon in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(cases >= 500, "only {cases} cases ran");
    if !tolerated.is_empty() {
        println!("\nallow-listed differences:");
        for (case, ours, theirs, a) in &tolerated {
            println!(
                "  [{}] {case}\n      busbar:      {ours}\n      dbus-daemon: {theirs}\n      why: {}",
                a.kind, a.why
            );
        }
    }
    for a in &allowed {
        if !tolerated.iter().any(|t| t.0 == a.case) {
            println!("note: allow-list entry no longer needed: {}", a.case);
        }
    }
    if !unexpected.is_empty() {
        println!("\nMISMATCHES ({}):", unexpected.len());
        println!("  {:<90} {:<60} dbus-daemon", "case", "busbar");
        for (case, ours, theirs) in &unexpected {
            println!("  {case:<90} {ours:<60} {theirs}");
        }
        panic!(
            "{} of {cases} cases differ from dbus-daemon (outcomes kept in {})",
            unexpected.len(),
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills and reaps a child when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of this machine's system.conf listening in `dir` (and with its
/// pidfile there); None (after printing why) when this cannot run here.
fn system_conf_copy(dir: &Path, test: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    const SYSTEM_CONF: &str = "/usr/share/dbus-1/system.conf";
    // The copy listens in a temporary directory, so a live system bus on
    // the real socket does not matter.
    const SYSTEM_SOCKET: &str = "/run/dbus/system_bus_socket";
    if !is_root() {
        skip(&format!(
            "{test} needs root (system.conf switches to <user>messagebus</user>)"
        ));
        return None;
    }
    let Ok(text) = std::fs::read_to_string(SYSTEM_CONF) else {
        skip(&format!("{test}: no {SYSTEM_CONF}"));
        return None;
    };
    if !Path::new("/usr/bin/busctl").exists() {
        skip(&format!("{test} needs /usr/bin/busctl"));
        return None;
    }
    // messagebus must reach the socket
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod temp dir");
    let socket = dir.join("system_bus_socket");
    let pidfile = dir.join("pid");
    let listen = format!("<listen>unix:path={SYSTEM_SOCKET}</listen>");
    assert!(
        text.contains(&listen),
        "system.conf does not listen on {SYSTEM_SOCKET}"
    );
    let text = text
        .replace(
            &listen,
            &format!("<listen>unix:path={}</listen>", socket.display()),
        )
        .replace(
            "<pidfile>/run/dbus/pid</pidfile>",
            &format!("<pidfile>{}</pidfile>", pidfile.display()),
        )
        // relative includes resolve against the original's directory
        .replace(
            "<includedir>system.d</includedir>",
            "<includedir>/usr/share/dbus-1/system.d</includedir>",
        );
    let conf = dir.join("system.conf");
    std::fs::write(&conf, text).expect("write config copy");
    Some((conf, socket, pidfile))
}

/// Starts busbar on `conf`; panics with its stderr if it does not print an
/// address.
fn start_busbar(conf: &Path, extra: &[&str]) -> (Reap, String) {
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_busbar"))
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1", "--nosyslog"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn busbar"),
    );
    let mut address = String::new();
    let stdout = child.0.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut address)
        .expect("read address");
    if address.trim().is_empty() {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("busbar did not start with {}: {err}", conf.display());
    }
    (child, address)
}

/// `busbar --system --nofork --nopidfile`, with a copy of system.conf whose
/// socket is in a temporary directory: it starts, drops to messagebus, and
/// busctl can list names.
#[test]
fn starts_with_system_conf() {
    let dir = tempdir("systemconf");
    let Some((conf, socket, _)) = system_conf_copy(&dir, "starts_with_system_conf") else {
        return;
    };
    let (child, address) = start_busbar(&conf, &["--nopidfile"]);
    assert!(
        address.contains(&*socket.to_string_lossy()),
        "unexpected address {address}"
    );
    let out = Command::new("/usr/bin/busctl")
        .arg(format!("--address=unix:path={}", socket.display()))
        .arg("list")
        .output()
        .expect("run busctl");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains("org.freedesktop.DBus"),
        "busctl list failed: {listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // it switched to <user>messagebus</user>
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap_or_default();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    if let Ok(Some(u)) = nix::unistd::User::from_name("messagebus") {
        assert_eq!(
            uid_line.split_whitespace().nth(1),
            Some(u.uid.to_string().as_str()),
            "busbar runs as {uid_line}"
        );
    }
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// dbus-daemon writes the pidfile before switching to <user>, so a root-owned
/// pidfile directory (/run/dbus) works; busbar must do the same.
#[test]
fn system_conf_pidfile_written_before_dropping_privileges() {
    let dir = tempdir("systempid");
    let Some((conf, _, pidfile)) = system_conf_copy(&dir, "system_conf_pidfile") else {
        return;
    };
    let (child, _) = start_busbar(&conf, &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    // The file is created (O_EXCL) before its line is written, as with
    // dbus-daemon, so wait for a whole line, not just for the file.
    let mut pid = String::new();
    while !pid.ends_with('\n') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    }
    assert_eq!(pid.trim(), child.0.id().to_string(), "pidfile content");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Minimal policies: a default that allows what no rule mentions cannot hide
// behind the permissive rules of the matrix above.

/// Policies with few or no rules. With no receive rule that matches, even
/// the bus's reply to Hello is denied, so clients here never learn their
/// unique names from the bus: the probe uses the names both daemons hand
/// out (:1.0, :1.1).
const MINIMAL_POLICIES: &[(&str, &str)] = &[
    ("no policy", ""),
    ("empty default", r#"<policy context="default"/>"#),
    (
        "send only",
        r#"<policy context="default"><allow send_destination="*"/></policy>"#,
    ),
    (
        "send and own",
        r#"<policy context="default"><allow send_destination="*"/><allow own="*"/></policy>"#,
    ),
    (
        "own only",
        r#"<policy context="default"><allow own="*"/></policy>"#,
    ),
    (
        "receive method_return only",
        r#"<policy context="default"><allow receive_type="method_return"/></policy>"#,
    ),
    (
        "receive signal only",
        r#"<policy context="default"><allow receive_type="signal"/></policy>"#,
    ),
    (
        "receive error only",
        r#"<policy context="default"><allow receive_type="error"/></policy>"#,
    ),
    (
        "receive method_call only",
        r#"<policy context="default"><allow receive_type="method_call"/></policy>"#,
    ),
    (
        "send, receive method_return",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_type="method_return"/></policy>"#,
    ),
    (
        "send, receive signal, own",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_type="signal"/><allow own="*"/></policy>"#,
    ),
    (
        "send and receive, no own",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/></policy>"#,
    ),
    (
        "all but method returns sent",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/><deny send_type="method_return"/></policy>"#,
    ),
    (
        "all but unrequested method returns sent",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/><deny send_type="method_return" send_requested_reply="false"/></policy>"#,
    ),
    (
        "all but errors received",
        r#"<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/><deny receive_type="error"/></policy>"#,
    ),
    (
        "requested replies only",
        r#"<policy context="default"><allow send_requested_reply="true"/><allow receive_requested_reply="true"/></policy>"#,
    ),
    (
        "send to the bus only, receive all",
        r#"<policy context="default"><allow send_destination="org.freedesktop.DBus"/><allow receive_sender="*"/></policy>"#,
    ),
];

/// One message as the probe records it: what, from whom, about what.
fn describe(m: &common::Msg, names: &[(&str, &str)]) -> String {
    let norm = |s: &str| {
        names
            .iter()
            .find(|(u, _)| *u == s)
            .map_or_else(|| s.to_string(), |(_, n)| n.to_string())
    };
    let from = norm(m.sender.as_deref().unwrap_or("-"));
    let what = match m.msg_type {
        common::METHOD_CALL => format!("call {}", m.member.as_deref().unwrap_or("")),
        common::METHOD_RETURN if m.signature == "u" => format!("return u={}", m.arg0_u32()),
        common::METHOD_RETURN if m.signature == "s" && from == "bus" => {
            // Hello's reply is the unique name; GetId's a random id.
            let s = m.arg0_str();
            format!(
                "return s={}",
                if s.starts_with(':') {
                    norm(&s)
                } else {
                    "id".into()
                }
            )
        }
        common::METHOD_RETURN => format!("return {}", m.signature),
        common::ERROR => {
            let text = if m.signature.starts_with('s') {
                m.arg0_str()
            } else {
                String::new()
            };
            // The matched-rule count is policy; the rest of the text names
            // pids and the like.
            let denied = text
                .find("matched rules")
                .map(|i| text[..i].trim().to_string())
                .unwrap_or_default();
            format!("error {} {denied}", m.error_name.as_deref().unwrap_or(""))
        }
        _ => {
            let arg = if m.signature.starts_with('s') {
                norm(&m.arg0_str())
            } else {
                String::new()
            };
            format!("signal {} {arg}", m.member.as_deref().unwrap_or(""))
        }
    };
    format!(
        "{what} reply_serial={} from={from}",
        m.reply_serial.unwrap_or(0)
    )
}

/// Runs the probe against `daemon` with `policy`: two clients A (:1.0) and
/// B (:1.1); returns what each received, sorted, one line per message.
fn minimal_probe(daemon: &str, policy: &str) -> Vec<String> {
    use common::{Bus, Client, MsgBuilder, DRIVER, DRIVER_PATH, W};
    let bus = Bus::start_daemon_with_policy(daemon, policy);
    let pause = || std::thread::sleep(Duration::from_millis(40));
    let mut a = Client::connect_authed(&bus, false);
    let s = a.call(Some(DRIVER), DRIVER_PATH, Some(DRIVER), "Hello", "", vec![]);
    assert_eq!(s, 1);
    pause();
    let mut b = Client::connect_authed(&bus, false);
    b.call(Some(DRIVER), DRIVER_PATH, Some(DRIVER), "Hello", "", vec![]);
    pause();
    let (ua, ub) = (":1.0", ":1.1");
    a.call(Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId", "", vec![]);
    let mut w = W::new();
    w.str("com.example.Min.A").u32(0);
    a.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "RequestName",
        "su",
        w.buf,
    );
    let mut w = W::new();
    w.str("type='signal'");
    b.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "AddMatch",
        "s",
        w.buf,
    );
    pause();
    // B calls A by unique and by well-known name.
    let by_unique = b.call(Some(ua), "/x", Some("com.example.Min"), "Ping", "", vec![]);
    let by_name = b.call(
        Some("com.example.Min.A"),
        "/x",
        Some("com.example.Min"),
        "Ping",
        "",
        vec![],
    );
    pause();
    // A answers: a return and an error (requested if the calls arrived),
    // an unrequested return, a unicast and a broadcast signal.
    a.send(
        MsgBuilder::new(common::METHOD_RETURN, 0)
            .field_u32(common::F_REPLY_SERIAL, by_unique)
            .field_str(common::F_DESTINATION, 's', ub),
    );
    a.send(
        MsgBuilder::new(common::ERROR, 0)
            .field_u32(common::F_REPLY_SERIAL, by_name)
            .field_str(common::F_ERROR_NAME, 's', "com.example.Min.Error")
            .field_str(common::F_DESTINATION, 's', ub),
    );
    a.send(
        MsgBuilder::new(common::METHOD_RETURN, 0)
            .field_u32(common::F_REPLY_SERIAL, 999)
            .field_str(common::F_DESTINATION, 's', ub),
    );
    a.send(
        MsgBuilder::signal(0, "/x", "com.example.Min", "Unicast").field_str(
            common::F_DESTINATION,
            's',
            ub,
        ),
    );
    a.send(MsgBuilder::signal(0, "/x", "com.example.Min", "Broadcast"));
    let names = [(ua, "A"), (ub, "B"), (DRIVER, "bus")];
    let mut out = Vec::new();
    for (label, c) in [("A", &mut a), ("B", &mut b)] {
        while let Some(m) = c.read_msg_within(Duration::from_millis(400)) {
            out.push(format!("{label} got {}", describe(&m, &names)));
        }
    }
    out.sort();
    out
}

/// Each minimal policy gives the same deliveries and errors with busbar as
/// with dbus-daemon, started one after the other in this test.
#[test]
fn minimal_policies_match_dbus_daemon() {
    if !Path::new(DBUS_DAEMON).exists() {
        return common::skip_or_fail(
            "minimal_policies_match_dbus_daemon needs /usr/bin/dbus-daemon",
        );
    }
    let mut differ = Vec::new();
    for (what, policy) in MINIMAL_POLICIES {
        let ours = minimal_probe(env!("CARGO_BIN_EXE_busbar"), policy);
        let theirs = minimal_probe(DBUS_DAEMON, policy);
        if ours != theirs {
            differ.push(format!(
                "{what}:\n  busbar:\n    {}\n  dbus-daemon:\n    {}",
                ours.join("\n    "),
                theirs.join("\n    ")
            ));
        }
        if *what == "send and own" {
            // The case that hid a permissive default: no receive rule
            // matches the reply to Hello.
            assert!(
                !theirs.iter().any(|l| l.contains("return s=A")),
                "dbus-daemon delivered Hello's reply: {theirs:?}"
            );
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} minimal policies differ:\n{}",
        differ.len(),
        MINIMAL_POLICIES.len(),
        differ.join("\n")
    );
}
