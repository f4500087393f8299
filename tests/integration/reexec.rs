//! issue 11: re-executing the bus in place. **busbar only**: dbus-daemon
//! cannot re-execute itself (SIGUSR2 terminates it, and it has no
//! org.busbar.Daemon1 interface), so with `BUSBAR_TEST_DAEMON` naming
//! another daemon these tests return at once, saying so.
//!
//! Each test runs the bus from its own copy of the binary (so replacing or
//! breaking the file touches no other test). Covered: a stream of signals
//! and method calls across the re-exec, checked for loss, duplicates and
//! order; the carried items (names and queues, match rules, monitors,
//! pending calls, Debug.Stats counters, GetId, the SASL GUID, unique-name
//! counter, a connection half-way through SASL and one half-way through a
//! message, queued fds, a half-read message's fd, an activation in
//! progress with its held call and child PID); every refusal (missing binary, not executable,
//! another major, invalid configuration, a failing execve), each leaving
//! the bus running and answering; and a re-exec into a build of the same
//! tree with a bumped state minor version (and the refusal to go back).

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const IFACE: &str = "org.busbar.ReexecTest";
const DAEMON_IFACE: &str = "org.busbar.Daemon1";

static EXEC_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exec_lock() -> std::sync::MutexGuard<'static, ()> {
    EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn busbar_only(test: &str) -> bool {
    if is_reference_daemon() || !daemon_path().contains("busbar") {
        eprintln!("{test}: busbar only (dbus-daemon cannot re-execute itself); skipped");
        return false;
    }
    true
}

/// A bus running from its own copy of `src` in its own directory.
struct Rx {
    dir: PathBuf,
    bin: PathBuf,
    bus: Bus,
}

impl Rx {
    fn start(tag: &str, src: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Rx {
        Rx::start_with(tag, src, env, |_| String::new())
    }

    /// Like [`Rx::start`], with configuration made from the test's dir.
    fn start_with(
        tag: &str,
        src: &Path,
        env: &[(&str, &std::ffi::OsStr)],
        extra: impl Fn(&Path) -> String,
    ) -> Rx {
        let dir = std::env::temp_dir().join(format!("busbar-rx-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("busbar");
        let guard = exec_lock();
        fs::copy(src, &bin).unwrap();
        let bus = Bus::start_daemon_logging_env(bin.to_str().unwrap(), &extra(&dir), env);
        drop(guard);
        Rx { dir, bin, bus }
    }

    fn put_binary(&self, src: &Path) {
        let tmp = self.dir.join("busbar.new");
        let _g = exec_lock();
        fs::copy(src, &tmp).unwrap();
        fs::rename(&tmp, &self.bin).unwrap();
    }

    fn log(&self) -> String {
        self.bus.stderr_log()
    }

    /// Waits until the log has `n` lines containing `what`.
    fn wait_log(&mut self, what: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(what).count() < n {
            assert!(self.bus.is_alive(), "bus died; log:\n{}", self.log());
            assert!(
                Instant::now() < deadline,
                "no {what:?} (x{n}) in the log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigusr2(&self) {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe {
            libc::kill(self.bus.pid() as libc::pid_t, libc::SIGUSR2);
        }
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn reexec_call(c: &mut Client) -> Msg {
    let s = c.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DAEMON_IFACE),
        "Reexec",
        "",
        vec![],
    );
    c.wait_reply(s)
}

/// The next message `f` accepts (others are dropped).
fn recv_until(c: &mut Client, f: impl Fn(&Msg) -> bool) -> Msg {
    loop {
        let m = c.recv();
        if f(&m) {
            return m;
        }
    }
}

fn error_name(m: &Msg) -> String {
    m.error_name.clone().unwrap_or_default()
}

fn signal(seq: u32) -> MsgBuilder {
    let mut w = W::new();
    w.u32(seq);
    MsgBuilder::signal(0, "/t", IFACE, "Seq").body("u", w.buf)
}

/// A stream of signals and method calls crossing the re-exec: nothing lost,
/// nothing twice, in order; and the connections, names, queues, rules,
/// stats and ids survive.
#[test]
fn stream_across_reexec_is_exact() {
    if !busbar_only("stream_across_reexec_is_exact") {
        return;
    }
    let mut rx = Rx::start("stream", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let mut sender = Client::connect(&rx.bus);
    let mut rcv = Client::connect(&rx.bus);
    rcv.add_match(&format!("type='signal',interface='{IFACE}'"));
    let mut owner = Client::connect(&rx.bus);
    assert_eq!(owner.request_name("org.busbar.Rx.Owner", 0), 1);
    let mut second = Client::connect(&rx.bus);
    assert_eq!(second.request_name("org.busbar.Rx.Owner", 0), 2);
    let mut mon = Client::connect(&rx.bus);
    mon.become_monitor(&[&format!("interface='{IFACE}',member='Probe'")]);
    let id_before = sender.get_id();
    let names_before = sender.list_names();

    // A pending call: the owner reads it and answers only after the re-exec.
    let call = sender.call(
        Some("org.busbar.Rx.Owner"),
        "/o",
        Some(IFACE),
        "Late",
        "",
        vec![],
    );
    let late = recv_until(&mut owner, |m| m.member.as_deref() == Some("Late"));
    assert_eq!(late.member.as_deref(), Some("Late"));

    // A connection half-way through SASL and one half-way through a message.
    let mut half_sasl = Client::connect_raw(&rx.bus);
    half_sasl.write_all(b"\0AUTH EXTERNAL ").unwrap();
    let mut half_msg = Client::connect(&rx.bus);
    let ping = MsgBuilder::method_call(
        99,
        Some(DRIVER),
        DRIVER_PATH,
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
    )
    .build();
    half_msg.send_bytes(&ping[..ping.len() / 2]);

    const N: u32 = 4000;
    let reexec_at = N / 2;
    let mut calls = Vec::new();
    for i in 0..N {
        sender.send(signal(i));
        if i % 50 == 0 {
            calls.push(sender.call(
                Some(DRIVER),
                DRIVER_PATH,
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                "",
                vec![],
            ));
        }
        if i == reexec_at {
            rx.sigusr2();
        }
    }
    rx.wait_log("Re-executed", 1);
    assert!(!rx.log().contains("Re-exec refused"), "{}", rx.log());

    // Finish the half-done connections.
    half_sasl
        .write_all(format!("{}\r\n", hex(&uid().to_string())).as_bytes())
        .unwrap();
    let line = read_line(&mut half_sasl);
    assert!(line.starts_with("OK "), "SASL after re-exec: {line}");
    half_sasl.write_all(b"BEGIN\r\n").unwrap();
    let mut half_sasl = Client::from_stream(half_sasl);
    half_sasl.hello();
    half_msg.send_bytes(&ping[ping.len() / 2..]);
    assert_eq!(half_msg.wait_reply(99).msg_type, METHOD_RETURN);

    // The late reply reaches the caller.
    let reply = MsgBuilder::new(METHOD_RETURN, 0)
        .field_u32(F_REPLY_SERIAL, late.serial)
        .field_str(F_DESTINATION, 's', late.sender.as_deref().unwrap());
    owner.send(reply);
    assert_eq!(sender.wait_reply(call).msg_type, METHOD_RETURN);

    // Every signal exactly once, in order; every call answered.
    let mut next = 0;
    while next < N {
        let m = rcv.recv();
        if m.is_signal(IFACE, "Seq") {
            assert_eq!(m.arg0_u32(), next, "signal out of order or duplicated");
            next += 1;
        }
    }
    for s in calls {
        assert_eq!(sender.wait_reply(s).msg_type, METHOD_RETURN);
    }
    assert!(rcv.read_msg_within(Duration::from_millis(200)).is_none());

    // The monitor still sees traffic; names, queue and id are kept.
    sender.send(MsgBuilder::signal(0, "/t", IFACE, "Probe"));
    let seen = recv_until(&mut mon, |m| m.is_signal(IFACE, "Probe"));
    assert_eq!(seen.member.as_deref(), Some("Probe"));
    assert_eq!(sender.get_id(), id_before);
    let mut names_after = sender.list_names();
    let mut nb = names_before.clone();
    names_after.retain(|n| !n.starts_with(':') || nb.contains(n));
    nb.sort();
    names_after.sort();
    assert_eq!(names_after, nb);
    let mut w = W::new();
    w.str("org.busbar.Rx.Owner");
    let q = sender.call_driver("ListQueuedOwners", "s", w.buf);
    assert_eq!(q.reader().str_array().len(), 2);
    drop(owner);
    let acquired = recv_until(&mut second, |m| {
        m.is_signal("org.freedesktop.DBus", "NameAcquired") && m.arg0_str() == "org.busbar.Rx.Owner"
    });
    assert_eq!(acquired.arg0_str(), "org.busbar.Rx.Owner");

    // A new client gets a fresh name.
    let fresh = Client::connect(&rx.bus);
    let name = fresh.unique_name.clone();
    assert!(!names_before.contains(&name));
}

/// Reexec by method: the caller gets its reply once, after the re-exec;
/// Debug.Stats counters and the match rules are carried.
#[test]
fn method_replies_once_and_stats_carry() {
    if !busbar_only("method_replies_once_and_stats_carry") {
        return;
    }
    let mut rx = Rx::start("method", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let mut c = Client::connect(&rx.bus);
    c.add_match("type='signal',interface='a.b'");
    c.add_match("type='signal',interface='c.d'");
    let stats = |c: &mut Client| {
        let s = c.call(
            Some(DRIVER),
            DRIVER_PATH,
            Some("org.freedesktop.DBus.Debug.Stats"),
            "GetStats",
            "",
            vec![],
        );
        c.wait_reply(s).reader().dict_sv()
    };
    let before = stats(&mut c);
    let r = reexec_call(&mut c);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}\n{}", rx.log());
    rx.wait_log("Re-executed", 1);
    assert!(
        c.read_msg_within(Duration::from_millis(300)).is_none(),
        "a second reply"
    );
    let after = stats(&mut c);
    let get =
        |v: &[(String, String, String)], k: &str| v.iter().find(|e| e.0 == k).map(|e| e.2.clone());
    for k in ["MatchRules", "PeakMatchRules", "PeakBusNames", "BusNames"] {
        assert_eq!(get(&before, k), get(&after, k), "{k}");
    }
    let m = c.remove_match("type='signal',interface='a.b'");
    assert_eq!(m.msg_type, METHOD_RETURN);
}

/// Each refusal leaves the bus running and answering, with one log line.
#[test]
fn refusals_leave_the_bus_running() {
    if !busbar_only("refusals_leave_the_bus_running") {
        return;
    }
    let src = Path::new(env!("CARGO_BIN_EXE_busbar"));
    let mut rx = Rx::start("refuse", src, &[]);
    let mut c = Client::connect(&rx.bus);
    assert_eq!(c.request_name("org.busbar.Rx.Keep", 0), 1);
    let me = c.unique_name.clone();
    let mut n = 0;
    let mut expect_refusal = |rx: &mut Rx, c: &mut Client, what: &str, by_method: bool| {
        n += 1;
        if by_method {
            let r = reexec_call(c);
            assert_eq!(
                error_name(&r),
                "org.freedesktop.DBus.Error.Failed",
                "{what}: {r:?}"
            );
            assert!(
                r.arg0_str().contains("Re-exec refused"),
                "{what}: {}",
                r.arg0_str()
            );
        } else {
            rx.sigusr2();
        }
        rx.wait_log("Re-exec refused: ", n);
        assert!(rx.bus.is_alive(), "{what}");
        let mut w = W::new();
        w.str("org.busbar.Rx.Keep");
        let o = c.call_driver("GetNameOwner", "s", w.buf);
        assert_eq!(o.arg0_str(), me, "{what}");
        assert!(!rx.log().contains("Re-executed"), "{what}: {}", rx.log());
    };
    // Missing binary.
    fs::remove_file(&rx.bin).unwrap();
    expect_refusal(&mut rx, &mut c, "missing", true);
    // Not executable.
    {
        let _g = exec_lock();
        fs::copy(src, &rx.bin).unwrap();
    }
    fs::set_permissions(&rx.bin, fs::Permissions::from_mode(0o644)).unwrap();
    expect_refusal(&mut rx, &mut c, "not executable", false);
    // Another major (a stand-in that reports 99.0).
    {
        let _g = exec_lock();
        let tmp = rx.dir.join("fake");
        fs::write(&tmp, "#!/bin/sh\necho 99.0\n").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&tmp, &rx.bin).unwrap();
    }
    expect_refusal(&mut rx, &mut c, "major", true);
    assert!(rx.log().contains("reads state format 99.x"), "{}", rx.log());
    // Invalid configuration.
    rx.put_binary(src);
    let conf = rx.bus.dir.join("bus.conf");
    let good = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, "<busconfig><nonsense").unwrap();
    expect_refusal(&mut rx, &mut c, "config", true);
    assert!(
        rx.log().contains("configuration does not load"),
        "{}",
        rx.log()
    );
    fs::write(&conf, good).unwrap();
}

/// execve itself failing (test hook BUSBAR_TEST_FAIL_EXEC: every check has
/// passed, then execve gets a path that does not exist): the bus goes on
/// with every fd intact.
#[test]
fn failed_execve_leaves_the_bus_running() {
    if !busbar_only("failed_execve_leaves_the_bus_running") {
        return;
    }
    let src = Path::new(env!("CARGO_BIN_EXE_busbar"));
    let mut rx = Rx::start("execfail", src, &[("BUSBAR_TEST_FAIL_EXEC", "1".as_ref())]);
    let mut c = Client::connect(&rx.bus);
    let r = reexec_call(&mut c);
    assert_eq!(error_name(&r), "org.freedesktop.DBus.Error.Failed", "{r:?}");
    assert!(r.arg0_str().contains("execve"), "{}", r.arg0_str());
    rx.wait_log("Re-exec refused: execve", 1);
    // The old connection and the listener still work.
    assert!(!c.list_names().is_empty());
    let d = Client::connect(&rx.bus);
    assert!(!d.unique_name.is_empty());
}

fn minor_build() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/reexec-minor");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "busbar", "--target-dir"])
        .arg(&target)
        .env("BUSBAR_STATE_MINOR", "2")
        .current_dir(&root)
        .status()
        .ok()?;
    status.success().then(|| target.join("release/busbar"))
}

/// Into a build of the same tree with state minor 2: accepted, the
/// connection is kept; back from it to this build's minor 1: refused.
#[test]
fn reexec_into_a_bumped_minor_build() {
    if !busbar_only("reexec_into_a_bumped_minor_build") {
        return;
    }
    let Some(newer) = minor_build() else {
        skip_or_fail("cannot build the tree with BUSBAR_STATE_MINOR=2");
        return;
    };
    let out = Command::new(&newer)
        .arg("--print-state-version")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.2");
    let src = Path::new(env!("CARGO_BIN_EXE_busbar"));
    let mut rx = Rx::start("minor", src, &[]);
    let mut c = Client::connect(&rx.bus);
    let me = c.unique_name.clone();
    rx.put_binary(&newer);
    assert_eq!(reexec_call(&mut c).msg_type, METHOD_RETURN, "{}", rx.log());
    rx.wait_log("Re-executed", 1);
    let mut w = W::new();
    w.str(&me);
    assert_eq!(c.call_driver("GetNameOwner", "s", w.buf).arg0_str(), me);
    rx.put_binary(src);
    let r = reexec_call(&mut c);
    assert_eq!(error_name(&r), "org.freedesktop.DBus.Error.Failed", "{r:?}");
    assert!(r.arg0_str().contains("up to 1.1"), "{}", r.arg0_str());
}

/// An activation in progress crosses the re-exec: the held call, the
/// pending name and the child's PID (its exit, reaped by the new image,
/// fails the activation, and the caller hears of it once).
#[test]
fn activation_in_progress_carries() {
    if !busbar_only("activation_in_progress_carries") {
        return;
    }
    let mut rx = Rx::start_with(
        "activation",
        Path::new(env!("CARGO_BIN_EXE_busbar")),
        &[],
        |dir| {
            let sd = dir.join("services");
            fs::create_dir_all(&sd).unwrap();
            fs::write(
                sd.join("org.busbar.Rx.Slow.service"),
                "[D-BUS Service]\nName=org.busbar.Rx.Slow\nExec=/bin/sh -c 'sleep 1; exit 3'\n",
            )
            .unwrap();
            format!("<servicedir>{}</servicedir>", sd.display())
        },
    );
    let mut c = Client::connect(&rx.bus);
    let s = c.call(
        Some("org.busbar.Rx.Slow"),
        "/s",
        Some(IFACE),
        "Wake",
        "",
        vec![],
    );
    thread::sleep(Duration::from_millis(200));
    rx.sigusr2();
    rx.wait_log("Re-executed", 1);
    let r = c.wait_reply(s);
    assert_eq!(
        error_name(&r),
        "org.freedesktop.DBus.Error.Spawn.ChildExited",
        "{r:?}\n{}",
        rx.log()
    );
    assert!(
        r.arg0_str().contains("exited with status 3"),
        "{}",
        r.arg0_str()
    );
    assert!(
        c.read_msg_within(Duration::from_millis(300)).is_none(),
        "a second answer"
    );
}

/// Fds queued for a client that has not read them travel with the message.
#[test]
fn queued_fds_travel() {
    if !busbar_only("queued_fds_travel") {
        return;
    }
    let mut rx = Rx::start("fds", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let mut a = Client::connect_fds(&rx.bus);
    let mut b = Client::connect_fds(&rx.bus);
    let dest = b.unique_name.clone();
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let m = MsgBuilder::signal(0, "/f", IFACE, "Fd")
        .field_str(F_DESTINATION, 's', &dest)
        .field_u32(F_UNIX_FDS, 1)
        .body("h", {
            let mut w = W::new();
            w.u32(0);
            w.buf
        });
    let mut m = m;
    m.serial = a.next_serial();
    use std::os::fd::AsRawFd;
    send_with_fds(&a.sock, &m.build(), &[theirs.as_raw_fd()]).unwrap();
    drop(theirs);
    a.barrier();
    rx.sigusr2();
    rx.wait_log("Re-executed", 1);
    let got = recv_until(&mut b, |m| m.is_signal(IFACE, "Fd"));
    assert_eq!(got.fds.len(), 1);
    let mut f = std::fs::File::from(got.fds.into_iter().next().unwrap());
    mine.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"x");
}

/// Writes tests/fixtures/state-1.1.bin (run by hand when the format's
/// MINOR is bumped, for the new minor's fixture: `cargo test --release
/// --test integration -- --ignored reexec::write_fixture`): a state with an owner and a
/// queued owner, a match rule, a monitor, a pending call, queued output, a
/// connection authenticating, one half-way through a message and (since
/// 1.1) a body being spliced.
#[test]
#[ignore]
fn write_fixture() {
    let out = std::env::var_os("BUSBAR_FIXTURE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-1.1.bin")
        });
    let tmpdir = std::env::temp_dir().join(format!("busbar-fixture-{}", std::process::id()));
    fs::create_dir_all(&tmpdir).unwrap();
    let dump = tmpdir.join("state.bin");
    let mut rx = Rx::start(
        "fixture",
        Path::new(env!("CARGO_BIN_EXE_busbar")),
        &[("BUSBAR_STATE_DUMP", dump.as_os_str())],
    );
    let mut a = Client::connect(&rx.bus);
    let mut b = Client::connect(&rx.bus);
    assert_eq!(a.request_name("org.busbar.Fixture", 0), 1);
    assert_eq!(b.request_name("org.busbar.Fixture", 0), 2);
    b.add_match("type='signal',interface='org.busbar.Fixture'");
    // Before the monitor: with a monitor nothing is spliced.
    let _spliced = stall_a_spliced_body(&rx);
    let mut mon = Client::connect(&rx.bus);
    mon.become_monitor(&["type='signal'"]);
    let _call = b.call(
        Some("org.busbar.Fixture"),
        "/f",
        Some(IFACE),
        "Wait",
        "",
        vec![],
    );
    let _ = recv_until(&mut a, |m| m.member.as_deref() == Some("Wait"));
    // More than the socket takes: the rest waits in the bus's queue.
    let pad = "x".repeat(1000);
    for _ in 0..600 {
        a.send(
            MsgBuilder::signal(0, "/f", "org.busbar.Fixture", "Queued").body("s", {
                let mut w = W::new();
                w.str(&pad);
                w.buf
            }),
        );
    }
    a.barrier();
    let mut half = Client::connect_raw(&rx.bus);
    half.write_all(b"\0AUTH EXTERNAL ").unwrap();
    let mut halfmsg = Client::connect(&rx.bus);
    halfmsg.send_bytes(&[b'l', 1, 0, 1]);
    thread::sleep(Duration::from_millis(100));
    rx.sigusr2();
    rx.wait_log("Re-executed", 1);
    fs::copy(&dump, &out).unwrap();
    let _ = fs::remove_dir_all(&tmpdir);
}

/// A message read half-way whose fd arrived with its first half: the fd
/// waits across the re-exec and goes out with the message once complete.
#[test]
fn half_read_message_keeps_its_fd() {
    if !busbar_only("half_read_message_keeps_its_fd") {
        return;
    }
    let mut rx = Rx::start("halffd", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let mut a = Client::connect_fds(&rx.bus);
    let mut b = Client::connect_fds(&rx.bus);
    let dest = b.unique_name.clone();
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let mut m = MsgBuilder::signal(0, "/f", IFACE, "HalfFd")
        .field_str(F_DESTINATION, 's', &dest)
        .field_u32(F_UNIX_FDS, 1)
        .body("h", {
            let mut w = W::new();
            w.u32(0);
            w.buf
        });
    m.serial = a.next_serial();
    let bytes = m.build();
    use std::os::fd::AsRawFd;
    send_with_fds(&a.sock, &bytes[..20], &[theirs.as_raw_fd()]).unwrap();
    drop(theirs);
    thread::sleep(Duration::from_millis(100));
    rx.sigusr2();
    rx.wait_log("Re-executed", 1);
    a.send_bytes(&bytes[20..]);
    let got = recv_until(&mut b, |m| m.is_signal(IFACE, "HalfFd"));
    assert_eq!(got.fds.len(), 1);
    let mut f = std::fs::File::from(got.fds.into_iter().next().unwrap());
    mine.write_all(b"y").unwrap();
    let mut buf = [0u8; 1];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"y");
}

/// A message larger than a receive chunk (64 KiB), of which more than a
/// chunk arrived before the re-exec: the new image goes on filling the
/// same message, and the recipient gets it whole.
#[test]
fn half_read_large_message_completes() {
    if !busbar_only("half_read_large_message_completes") {
        return;
    }
    // The copying path: a spliced body refuses the re-exec instead (see
    // refused_while_a_body_is_spliced).
    let mut rx = Rx::start(
        "halflarge",
        Path::new(env!("CARGO_BIN_EXE_busbar")),
        &[("BUSBAR_SPLICE_MIN", std::ffi::OsStr::new("off"))],
    );
    let mut a = Client::connect(&rx.bus);
    let mut b = Client::connect(&rx.bus);
    let dest = b.unique_name.clone();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut m = MsgBuilder::signal(0, "/l", IFACE, "Large")
        .field_str(F_DESTINATION, 's', &dest)
        .body("ay", {
            let mut w = W::new();
            w.u32(payload.len() as u32);
            w.buf.extend_from_slice(&payload);
            w.buf
        });
    m.serial = a.next_serial();
    let bytes = m.build();
    let cut = 200_000;
    a.send_bytes(&bytes[..cut]);
    thread::sleep(Duration::from_millis(200));
    rx.sigusr2();
    rx.wait_log("Re-executed", 1);
    a.send_bytes(&bytes[cut..]);
    let got = recv_until(&mut b, |m| m.is_signal(IFACE, "Large"));
    let body = &got.body;
    assert_eq!(body.len(), 4 + payload.len());
    assert_eq!(&body[4..], &payload[..], "the body arrived changed");
    assert!(rx.bus.is_alive());
}

/// The sender of [`stall_a_spliced_body`]'s message writes the rest of
/// it; the recipient gets it whole, and the sender is still served.
fn finish_the_stalled_body(s: &mut Client, r: &mut Client, bytes: &[u8], body: &[u8]) {
    s.sock.write_all(&bytes[200 * 1024..]).unwrap();
    let got = recv_until(r, |m| m.member.as_deref() == Some("Put"));
    assert!(got.body == body, "the message arrived whole");
    assert!(!s.get_id().is_empty());
}

/// Connects a recipient, a sender and a third client, and has the sender
/// write the header and the first 200 KiB of a 1 MiB `ay` call to the
/// recipient: its body is then being spliced and stays in flight until the
/// test writes the rest (`bytes[200 * 1024..]`). Returns the three clients,
/// the body and the whole message.
fn stall_a_spliced_body(rx: &Rx) -> (Client, Client, Client, Vec<u8>, Vec<u8>) {
    let mut r = Client::connect(&rx.bus);
    // Everything the bus sent it so far (NameAcquired) is read: what
    // comes next on its socket is the call.
    assert!(!r.get_id().is_empty());
    let mut s = Client::connect(&rx.bus);
    let c = Client::connect(&rx.bus);
    let n = 1024 * 1024;
    let mut body = (n as u32).to_le_bytes().to_vec();
    body.extend((0..n).map(|i| (i * 7 % 251) as u8));
    let mut m = MsgBuilder::method_call(
        0,
        Some(&r.unique_name),
        "/a",
        Some("org.example.Big"),
        "Put",
    )
    .body("ay", body.clone());
    m.flags |= NO_REPLY_EXPECTED;
    m.serial = s.next_serial();
    let bytes = m.build();
    s.sock.write_all(&bytes[..200 * 1024]).unwrap();
    thread::sleep(Duration::from_millis(200));
    (r, s, c, body, bytes)
}

/// While the body of a large `ay` message is being spliced and its sender
/// has stopped half way through (its header and 200 KiB are through; the
/// recipient has read nothing), a re-exec goes ahead at once: the pipe and
/// the body's counts are carried over. Once the sender writes the rest,
/// the recipient gets the message whole, and the sender's next call is
/// answered.
#[test]
fn a_stalled_spliced_body_carries_over() {
    if !busbar_only("a_stalled_spliced_body_carries_over") {
        return;
    }
    let mut rx = Rx::start("splice", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let (mut r, mut s, mut c, body, bytes) = stall_a_spliced_body(&rx);
    let start = Instant::now();
    let ok = reexec_call(&mut c);
    assert_eq!(ok.msg_type, METHOD_RETURN, "{ok:?}\n{}", rx.log());
    rx.wait_log("and 1 body being spliced", 1);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "the re-exec waited {:?}",
        start.elapsed()
    );
    finish_the_stalled_body(&mut s, &mut r, &bytes, &body);
    assert!(!r.get_id().is_empty());
}

/// The same with the recipient half way through reading the body: it has
/// read the header and part of the body before the re-exec, and reads the
/// rest after it, from the same stream, whole and in order; a message
/// queued behind it follows it.
#[test]
fn a_half_written_spliced_body_carries_over() {
    if !busbar_only("a_half_written_spliced_body_carries_over") {
        return;
    }
    let mut rx = Rx::start("splicehalf", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let (mut r, mut s, mut c, body, bytes) = stall_a_spliced_body(&rx);
    // The recipient reads 100 KiB of the message: the header and the
    // start of the body, from its pipe.
    let mut first = vec![0u8; 100 * 1024];
    r.sock.read_exact(&mut first).unwrap();
    // Something for the recipient behind the body.
    let mut w = W::new();
    w.str("after");
    let after = MsgBuilder::signal(0, "/a", IFACE, "After")
        .field_str(F_DESTINATION, 's', &r.unique_name)
        .body("s", w.buf);
    let ok = reexec_call(&mut c);
    assert_eq!(ok.msg_type, METHOD_RETURN, "{ok:?}\n{}", rx.log());
    rx.wait_log("and 1 body being spliced", 1);
    s.sock.write_all(&bytes[200 * 1024..]).unwrap();
    s.send(after);
    // The rest of the stream, from where the recipient stopped (the bus
    // added a sender field to the header).
    let total = frame_len(&first[..16].try_into().unwrap());
    let mut rest = vec![0u8; total - first.len()];
    r.sock.read_exact(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    let got = parse_msg(&first);
    assert_eq!(got.member.as_deref(), Some("Put"));
    assert!(got.body == body, "the message arrived whole");
    let next = recv_until(&mut r, |m| m.is_signal(IFACE, "After"));
    assert_eq!(next.arg0_str(), "after");
    assert!(!s.get_id().is_empty());
}

/// A re-exec that its checks refuse anyway (here: the binary is gone) is
/// refused at once, and a body being spliced meanwhile goes on: the
/// refusal leaves its pipe in use, and the recipient gets it whole.
#[test]
fn a_refused_reexec_leaves_a_spliced_body_going() {
    if !busbar_only("a_refused_reexec_leaves_a_spliced_body_going") {
        return;
    }
    let rx = Rx::start("splicehope", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let (mut r, mut s, mut c, body, bytes) = stall_a_spliced_body(&rx);
    fs::remove_file(&rx.bin).unwrap();
    let refused = reexec_call(&mut c);
    assert_eq!(
        error_name(&refused),
        "org.freedesktop.DBus.Error.Failed",
        "{refused:?}\n{}",
        rx.log()
    );
    finish_the_stalled_body(&mut s, &mut r, &bytes, &body);
}

/// A re-exec asked for while large bodies stream through pipes goes ahead
/// with the bodies in flight: every one of a stream of 60 bodies of 1 MiB
/// arrives whole and in order across it (a refusal, or a wait for a gap
/// in the stream, would make a package upgrade unable to re-execute a
/// busy bus).
#[test]
fn bodies_being_spliced_carry_over() {
    if !busbar_only("bodies_being_spliced_carry_over") {
        return;
    }
    let mut rx = Rx::start("splicewait", Path::new(env!("CARGO_BIN_EXE_busbar")), &[]);
    let mut r = Client::connect(&rx.bus);
    let mut s = Client::connect(&rx.bus);
    let mut c = Client::connect(&rx.bus);
    const N: u32 = 60;
    const LEN: u32 = 1024 * 1024;
    let body = |seq: u32| -> Vec<u8> {
        let mut b = LEN.to_le_bytes().to_vec();
        b.extend((0..LEN).map(|i| i.wrapping_mul(7).wrapping_add(seq) as u8));
        b
    };
    let dest = r.unique_name.clone();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let got = received.clone();
    let reader = thread::spawn(move || {
        for seq in 0..N {
            let m = recv_until(&mut r, |m| m.member.as_deref() == Some("Put"));
            assert!(m.body == body(seq), "body {seq} arrived whole and in order");
            got.store(seq + 1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let sender = thread::spawn(move || {
        for seq in 0..N {
            let mut m =
                MsgBuilder::method_call(0, Some(&dest), "/a", Some("org.example.Big"), "Put")
                    .body("ay", body(seq));
            m.flags |= NO_REPLY_EXPECTED;
            m.serial = s.next_serial();
            s.sock.write_all(&m.build()).unwrap();
        }
        s
    });
    let start = Instant::now();
    while received.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stream did not start"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let ok = reexec_call(&mut c);
    assert_eq!(ok.msg_type, METHOD_RETURN, "{ok:?}\n{}", rx.log());
    reader.join().unwrap();
    let mut s = sender.join().unwrap();
    rx.wait_log("Re-executed", 1);
    assert!(!s.get_id().is_empty());
}

/// A sender held back by a receiver that does not read has bytes the bus
/// took from its socket and has not framed yet (with io_uring's multishot
/// receives, more than a receive chunk holds: the spill). A re-exec then
/// carries them over: once the receiver reads, every message arrives,
/// once and in order. Both loop backends.
#[test]
fn unread_input_of_a_throttled_sender_carries_over() {
    if !busbar_only("unread_input_of_a_throttled_sender_carries_over") {
        return;
    }
    const N: u32 = 600;
    for backend in ["uring", "epoll"] {
        let env = [("BUSBAR_IO_BACKEND", std::ffi::OsStr::new(backend))];
        let mut rx = Rx::start_with(
            &format!("throttled-{backend}"),
            Path::new(env!("CARGO_BIN_EXE_busbar")),
            &env,
            |_| r#"<limit name="max_incoming_bytes">100000</limit>"#.to_string(),
        );
        let mut a = Client::connect(&rx.bus);
        let mut b = Client::connect(&rx.bus);
        let dest = b.unique_name.clone();
        let mut burst = Vec::new();
        for seq in 0..N {
            let mut w = W::new();
            w.u32(seq);
            w.u32(1000);
            w.buf.extend((0..1000u32).map(|k| (k + seq) as u8));
            let mut m = MsgBuilder::signal(0, "/t", IFACE, "Seq")
                .field_str(F_DESTINATION, 's', &dest)
                .body("uay", w.buf);
            m.serial = a.next_serial();
            burst.extend(m.build());
        }
        let sock = a.sock.try_clone().unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let writer = thread::spawn(move || (&sock).write_all(&burst).expect("write the burst"));
        // The receiver does not read yet: the sender is held back with
        // bytes read but not framed.
        thread::sleep(Duration::from_millis(300));
        rx.sigusr2();
        rx.wait_log("Re-executed", 1);
        for seq in 0..N {
            let m = recv_until(&mut b, |m| m.is_signal(IFACE, "Seq"));
            let mut r = m.reader();
            assert_eq!(
                r.u32(),
                seq,
                "{backend}: a signal lost, repeated or out of order"
            );
            assert_eq!(r.u32(), 1000, "{backend}");
            let want: Vec<u8> = (0..1000u32).map(|k| (k + seq) as u8).collect();
            assert!(m.body[8..] == want[..], "{backend}: signal {seq} changed");
        }
        writer.join().unwrap();
        a.barrier();
        assert!(rx.bus.is_alive(), "{backend}: {}", rx.log());
    }
}
