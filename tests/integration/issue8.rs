//! Regression tests for issue 8: places where busbar behaved differently
//! from dbus-daemon 1.14 that other projects' test suites and real clients
//! notice. Each test asserts dbus-daemon's behaviour, so each also passes
//! with `BUSBAR_TEST_DAEMON=/usr/bin/dbus-daemon`.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A fresh directory for .service files (created before the daemon reads
/// its config, which names it).
fn service_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "busbar-issue8-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("create service dir");
    d
}

fn start_service(c: &mut Client, name: &str) -> Msg {
    let mut w = W::new();
    w.str(name).u32(0);
    c.call_driver("StartServiceByName", "su", w.buf)
}

fn activatable(c: &mut Client) -> Vec<String> {
    let r = c.call_driver("ListActivatableNames", "", vec![]);
    assert_eq!(r.msg_type, METHOD_RETURN, "ListActivatableNames: {r:?}");
    r.reader().str_array()
}

// 1 ------------------------------------------------------------------------

/// The first connection is `:1.0`, and names count up from there.
#[test]
fn unique_names_start_at_zero() {
    let bus = Bus::start();
    let names: Vec<String> = (0..3).map(|_| Client::connect(&bus).unique_name).collect();
    assert_eq!(names, [":1.0", ":1.1", ":1.2"]);
}

// 2 ------------------------------------------------------------------------

/// StartServiceByName looks for a .service file first: a name without one
/// is ServiceUnknown even while someone owns it; ALREADY_RUNNING (2) is
/// only for activatable names.
#[test]
fn start_service_by_name_needs_a_service_file_even_when_owned() {
    let dir = service_dir("ssbn");
    fs::write(
        dir.join("com.example.Issue8.Act.service"),
        "[D-BUS Service]\nName=com.example.Issue8.Act\nExec=/bin/false\n",
    )
    .unwrap();
    let bus = Bus::start_with(&format!("<servicedir>{}</servicedir>", dir.display()));
    let mut owner = Client::connect(&bus);
    assert_eq!(owner.request_name("com.example.Issue8.Running", 0), 1);
    assert_eq!(owner.request_name("com.example.Issue8.Act", 0), 1);
    let mut c = Client::connect(&bus);
    let me = c.unique_name.clone();
    for name in [
        "com.example.Issue8.Running",
        me.as_str(),
        owner.unique_name.as_str(),
        DRIVER,
        "com.example.Issue8.Nobody",
    ] {
        let r = start_service(&mut c, name);
        assert_eq!(r.msg_type, ERROR, "StartServiceByName({name}): {r:?}");
        assert_eq!(
            r.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.ServiceUnknown"),
            "StartServiceByName({name})"
        );
        assert_eq!(
            r.arg0_str(),
            format!("The name {name} was not provided by any .service files")
        );
    }
    let r = start_service(&mut c, "com.example.Issue8.Act");
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_u32(), 2, "DBUS_START_REPLY_ALREADY_RUNNING");
    drop(bus);
    let _ = fs::remove_dir_all(&dir);
}

// 3 ------------------------------------------------------------------------

/// A `h` value beyond the message's UNIX_FDS is forwarded, not punished:
/// dbus-daemon leaves that check to the recipient's library.
#[test]
fn unix_fd_index_out_of_range_is_forwarded() {
    let bus = Bus::start();
    let mut a = Client::connect_fds(&bus);
    let mut b = Client::connect_fds(&bus);
    let dest = b.unique_name.clone();
    // One fd attached, index 3 in the body.
    let mut w = W::new();
    w.u32(3);
    let mut m = MsgBuilder::method_call(0, Some(&dest), "/x", Some("com.example.Fd"), "Take")
        .body("h", w.buf)
        .field_u32(F_UNIX_FDS, 1);
    m.flags = NO_REPLY_EXPECTED;
    m.serial = a.next_serial();
    let (reader, _writer) = std::io::pipe().expect("pipe");
    send_with_fds(&a.sock, &m.build(), &[reader.as_raw_fd()]).unwrap();
    // No UNIX_FDS at all, index 0.
    let mut w = W::new();
    w.u32(0);
    let mut m = MsgBuilder::method_call(0, Some(&dest), "/x", Some("com.example.Fd"), "None")
        .body("h", w.buf);
    m.flags = NO_REPLY_EXPECTED;
    a.send(m);
    let mut from_a = || loop {
        let m = b.recv();
        if m.sender.as_deref() != Some(DRIVER) {
            return m;
        }
    };
    let got = from_a();
    assert_eq!(got.member.as_deref(), Some("Take"), "{got:?}");
    assert_eq!(got.signature, "h");
    assert_eq!(got.reader().u32(), 3, "the body arrives unchanged");
    assert_eq!(got.fds.len(), 1, "the fd arrives");
    let got = from_a();
    assert_eq!(got.member.as_deref(), Some("None"), "{got:?}");
    assert_eq!(got.reader().u32(), 0);
    // The sender is still connected, and other body checks still apply.
    a.barrier();
    let mut m = MsgBuilder::method_call(0, Some(&dest), "/x", Some("com.example.Fd"), "Bad")
        .body("(hb)", vec![0, 0, 0, 0, 2, 0, 0, 0]);
    m.serial = a.next_serial();
    a.send_bytes(&m.build());
    expect_disconnect(&mut a.sock, "a boolean that is 2 next to an fd index");
}

// 4 ------------------------------------------------------------------------

/// The driver's signals a monitor saw, as "Member(dest; args)" with unique
/// names replaced by A/B.
fn driver_signals(msgs: &[Msg], names: &[(&str, &str)]) -> Vec<String> {
    let norm = |s: &str| {
        names
            .iter()
            .find(|(u, _)| *u == s)
            .map_or_else(|| s.to_string(), |(_, n)| n.to_string())
    };
    msgs.iter()
        .filter(|m| m.msg_type == SIGNAL && m.sender.as_deref() == Some(DRIVER))
        .map(|m| {
            let mut r = m.reader();
            let args: Vec<String> = m.signature.chars().map(|_| norm(&r.string())).collect();
            format!(
                "{}({}; {})",
                m.member.as_deref().unwrap_or("?"),
                norm(m.destination.as_deref().unwrap_or("*")),
                args.join(",")
            )
        })
        .collect()
}

/// Reads what the monitor gets until `done` says it saw enough.
fn monitor_until(mon: &mut Client, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !done(&got) {
        assert!(Instant::now() < deadline, "monitor saw only {got:?}");
        got.push(mon.recv());
    }
    got
}

/// A connection that goes away while owning names: for each name it was
/// primary owner of (most recently requested first, its unique name last),
/// NameLost addressed to it, then NameOwnerChanged, then NameAcquired for
/// the next owner in the queue. Only a monitor sees the NameLost.
#[test]
fn disconnect_emits_name_lost_before_name_owner_changed() {
    let bus = Bus::start();
    let mut mon = Client::connect(&bus);
    mon.become_monitor(&[]);
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    assert_eq!(a.request_name("com.example.Issue8.One", 0), 1);
    assert_eq!(a.request_name("com.example.Issue8.Two", 0), 1);
    assert_eq!(b.request_name("com.example.Issue8.Two", 0), 2, "queued");
    assert_eq!(a.request_name("com.example.Issue8.Three", 0), 1);
    let (ua, ub) = (a.unique_name.clone(), b.unique_name.clone());
    let names = [(ua.as_str(), "A"), (ub.as_str(), "B")];
    // Everything up to here, then the disconnect.
    monitor_until(&mut mon, |m| {
        driver_signals(m, &names)
            .iter()
            .any(|s| s == "NameAcquired(A; com.example.Issue8.Three)")
    });
    b.barrier();
    b.take_pending(|_| true);
    drop(a);
    let seen = monitor_until(&mut mon, |m| {
        driver_signals(m, &names)
            .iter()
            .any(|s| s.starts_with("NameOwnerChanged(*; A,A,"))
    });
    // B's barrier (a GetId call and its reply) is not a signal.
    assert_eq!(
        driver_signals(&seen, &names),
        [
            "NameLost(A; com.example.Issue8.Three)",
            "NameOwnerChanged(*; com.example.Issue8.Three,A,)",
            "NameLost(A; com.example.Issue8.Two)",
            "NameOwnerChanged(*; com.example.Issue8.Two,A,B)",
            "NameAcquired(B; com.example.Issue8.Two)",
            "NameLost(A; com.example.Issue8.One)",
            "NameOwnerChanged(*; com.example.Issue8.One,A,)",
            "NameLost(A; A)",
            "NameOwnerChanged(*; A,A,)",
        ]
    );
    // B got its NameAcquired; nobody else saw A's NameLost.
    b.barrier();
    let got = b.take_pending(|m| m.msg_type == SIGNAL);
    assert_eq!(
        driver_signals(&got, &names),
        ["NameAcquired(B; com.example.Issue8.Two)"]
    );
}

// 5 ------------------------------------------------------------------------

/// Polls until `f` holds or the timeout passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `path` in pieces, pausing between them, with the file
/// open for writing the whole time.
fn write_slowly(path: &Path, text: &str) {
    let mut f = fs::File::create(path).expect("create service file");
    for piece in text.split_inclusive('\n') {
        for half in [&piece[..piece.len() / 2], &piece[piece.len() / 2..]] {
            f.write_all(half.as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
    }
}

/// A .service file being written is not read half-done: no warning while
/// it is incomplete, and it is activatable once it is closed.
#[test]
fn service_file_written_slowly_gives_no_warning() {
    let dir = service_dir("watch");
    let mut bus = Bus::start_logging(&format!("<servicedir>{}</servicedir>", dir.display()));
    let mut c = Client::connect(&bus);
    assert!(!activatable(&mut c).contains(&"com.example.Issue8.Slow".to_string()));
    let path = dir.join("com.example.Issue8.Slow.service");
    write_slowly(
        &path,
        "[D-BUS Service]\n# written slowly\nName=com.example.Issue8.Slow\nExec=/bin/false\n",
    );
    eventually("the slowly written service to be activatable", || {
        activatable(&mut c).contains(&"com.example.Issue8.Slow".to_string())
    });
    let log = bus.stderr_log();
    assert!(
        !log.contains("Name") && !log.contains("Exec") && !log.contains(".service"),
        "the daemon complained about a file that is fine once written:\n{log}"
    );
    // The check above could see a message: the daemon's stderr does reach
    // us, as its log line for the activation shows. (dbus-daemon says
    // nothing about a file that lacks a key, so that cannot be the probe.)
    let r = start_service(&mut c, "com.example.Issue8.Slow");
    assert_eq!(r.msg_type, ERROR, "/bin/false cannot own the name: {r:?}");
    eventually("the activation to be logged", || {
        bus.stderr_log()
            .contains("Activating service name='com.example.Issue8.Slow'")
    });
    assert_bus_healthy(&mut bus, &mut c);
    drop(bus);
    let _ = fs::remove_dir_all(&dir);
}
