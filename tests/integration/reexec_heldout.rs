//! issue 11, the held-out re-exec test. **busbar only**: dbus-daemon
//! cannot re-execute itself (SIGUSR2 terminates it and it has no
//! org.busbar.Daemon1 interface), so with `BUSBAR_TEST_DAEMON` naming
//! another daemon these tests return at once, saying so.
//!
//! The bus runs from a copy of the busbar binary in a temp dir. It gets:
//! a name owner with a queued second owner; a method call the owner has
//! read and not yet answered; a subscriber that does not read while 3000
//! signals (1 KiB each, so most of them wait in the bus's own queue, one
//! of them written half-way) are sent, half before and half after the
//! trigger; a monitor; a connection half-way through SASL (authenticated,
//! unix fds agreed, "BEG" of "BEGIN" sent); a connection that has sent
//! half of a message. Then the binary file is replaced (a new copy renamed
//! over it: a new inode) and the re-exec is triggered (SIGUSR2, or the
//! `org.busbar.Daemon1.Reexec` method). Checked afterwards: same PID, and
//! /proc/PID/exe is the new file (device and inode); sd-notify RELOADING=1
//! then READY=1; every connection answers with the same GUID; the owner
//! and its queue are kept (and the queue still works); the late reply is
//! delivered (the policy refuses unrequested replies, so only a carried-over
//! pending call lets it through); all 3000 signals arrive exactly once and
//! in order; both half-finished connections complete; the monitor sees
//! traffic sent after the re-exec; a client that connected during the
//! re-exec (it waits in the listen backlog) and a new client afterwards get
//! unique names never handed out before.
//!
//! A third test checks that a caller that is neither root nor the bus's
//! user gets org.freedesktop.DBus.Error.AccessDenied from Reexec and the bus
//! is not re-executed.

use crate::common;

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "org.busbar.Heldout.Name";
const IFACE: &str = "org.busbar.Heldout";
const FLOOD: &str = "org.busbar.Heldout.Flood";
const PROBE: &str = "org.busbar.Heldout.Probe";
const DAEMON_IFACE: &str = "org.busbar.Daemon1";
const SIGNALS: u32 = 3000;
/// How long a re-exec may take before the test gives up (it takes well
/// under a second; the machine may be busy).
const REEXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Everyone may connect (the AccessDenied test connects as nobody), and a
/// method return nobody asked for is refused: the late reply gets through
/// only if the bus still knows the call it answers.
const EXTRA: &str = r#"<policy context="default">
    <allow user="*"/>
    <deny send_type="method_return" send_requested_reply="false"/>
  </policy>"#;

/// Held while this test binary writes an executable or forks: a child
/// forked by another test thread while a copy of busbar is open for writing
/// would hold that descriptor until it execs, and executing the copy
/// meanwhile fails with ETXTBSY (for the bus's own re-exec too).
static EXEC_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exec_lock() -> std::sync::MutexGuard<'static, ()> {
    EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("busbar-reexec-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// (device, inode) of a file, following symlinks (so of /proc/PID/exe, the
/// executable itself).
fn file_id(p: &Path) -> std::io::Result<(u64, u64)> {
    let m = fs::metadata(p)?;
    Ok((m.st_dev(), m.st_ino()))
}

fn exe_id(pid: u32) -> std::io::Result<(u64, u64)> {
    file_id(Path::new(&format!("/proc/{pid}/exe")))
}

/// A bus started from a copy of busbar, with a notify socket of ours.
struct Setup {
    dir: TempDir,
    bin: PathBuf,
    notify: UnixDatagram,
    bus: Bus,
}

impl Setup {
    fn start(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let bin = dir.0.join("busbar");
        let guard = exec_lock();
        fs::copy(env!("CARGO_BIN_EXE_busbar"), &bin).expect("copy busbar");
        let npath = dir.0.join("notify");
        let notify = UnixDatagram::bind(&npath).expect("bind notify socket");
        notify.set_nonblocking(true).unwrap();
        let bus = Bus::start_daemon_logging_env(
            bin.to_str().unwrap(),
            EXTRA,
            &[("NOTIFY_SOCKET", npath.as_os_str())],
        );
        drop(guard);
        let mut s = Setup {
            dir,
            bin,
            notify,
            bus,
        };
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while !seen.iter().any(|n: &String| n.contains("READY=1")) {
            assert!(
                Instant::now() < deadline,
                "no READY=1 from the bus at start-up (got {seen:?})"
            );
            seen.extend(s.notifications());
            thread::sleep(Duration::from_millis(10));
        }
        s
    }

    /// The datagrams that arrived on the notify socket since the last call.
    fn notifications(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return out,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Writes a new copy of the binary and renames it over the old one, so
    /// the path names a different file (inode). Returns the new file's id.
    fn replace_binary(&self) -> (u64, u64) {
        let old = file_id(&self.bin).unwrap();
        let tmp = self.dir.0.join("busbar.new");
        let _guard = exec_lock();
        fs::copy(env!("CARGO_BIN_EXE_busbar"), &tmp).expect("copy busbar");
        fs::rename(&tmp, &self.bin).expect("rename the new binary into place");
        let new = file_id(&self.bin).unwrap();
        assert_ne!(old, new, "the replaced binary has the same inode");
        new
    }

    /// Waits until the bus process (same PID) runs the new file and has
    /// sent RELOADING=1 and then READY=1; panics if the bus died or the
    /// re-exec did not finish in time.
    fn wait_reexec(&mut self, new_exe: (u64, u64)) {
        let pid = self.bus.pid();
        let deadline = Instant::now() + REEXEC_TIMEOUT;
        let mut notes: Vec<String> = Vec::new();
        loop {
            if !self.bus.is_alive() {
                panic!(
                    "the bus (pid {pid}) died instead of re-executing; it logged:\n{}",
                    self.bus.stderr_log()
                );
            }
            notes.extend(self.notifications());
            let reloading = notes.iter().position(|n| n.contains("RELOADING=1"));
            let ready_after =
                reloading.is_some_and(|r| notes[r..].iter().any(|n| n.contains("READY=1")));
            let exe = exe_id(pid).ok();
            if ready_after && exe == Some(new_exe) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "no re-exec within {REEXEC_TIMEOUT:?}: pid {pid} runs {exe:?} (new file {new_exe:?}), \
                     notifications {notes:?}; the bus logged:\n{}",
                    self.bus.stderr_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A 1 KiB flood signal carrying its sequence number.
fn flood(seq: u32) -> MsgBuilder {
    let mut w = W::new();
    w.u32(seq).str(&"x".repeat(1024));
    MsgBuilder::signal(0, "/org/busbar/Heldout", FLOOD, "Tick").body("us", w.buf)
}

/// A probe call (no reply expected) that the monitor watches for.
fn send_probe(c: &mut Client, tag: u32) {
    let mut w = W::new();
    w.u32(tag);
    let mut m = MsgBuilder::method_call(0, Some(NAME), "/", Some(PROBE), "Probe").body("u", w.buf);
    m.flags |= NO_REPLY_EXPECTED;
    c.send(m);
}

/// Reads until a probe call with `tag` arrives.
fn expect_probe(mon: &mut Client, tag: u32, when: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = mon
            .read_msg_within(left)
            .unwrap_or_else(|| panic!("the monitor did not see probe {tag} ({when})"));
        if m.msg_type == METHOD_CALL
            && m.interface.as_deref() == Some(PROBE)
            && m.reader().u32() == tag
        {
            return;
        }
    }
}

fn name_owner(c: &mut Client, name: &str) -> String {
    let mut w = W::new();
    w.str(name);
    let r = c.call_driver("GetNameOwner", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "GetNameOwner {name}: {r:?}");
    r.arg0_str()
}

fn queued_owners(c: &mut Client, name: &str) -> Vec<String> {
    let mut w = W::new();
    w.str(name);
    let r = c.call_driver("ListQueuedOwners", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "ListQueuedOwners {name}: {r:?}");
    r.reader().str_array()
}

/// The serial number of a unique name `:A.N` (N), for comparing how far the
/// bus's counter got.
fn unique_number(name: &str) -> Option<u64> {
    name.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

fn busbar_only(test: &str) -> bool {
    if is_reference_daemon()
        || std::env::var_os("BUSBAR_TEST_DAEMON").is_some_and(|v| !v.is_empty())
    {
        eprintln!(
            "{test}: busbar only (dbus-daemon cannot re-exec); not run against {}",
            daemon_path()
        );
        return false;
    }
    true
}

#[derive(Clone, Copy, PartialEq)]
enum Trigger {
    Sigusr2,
    Method,
}

fn heldout(trigger: Trigger) {
    let mut s = Setup::start(if trigger == Trigger::Sigusr2 {
        "sig"
    } else {
        "method"
    });
    let pid = s.bus.pid();
    assert_eq!(
        exe_id(pid).unwrap(),
        file_id(&s.bin).unwrap(),
        "the bus does not run from the copy"
    );

    // A name owner with a queued second owner.
    let mut owner = Client::connect(&s.bus);
    assert_eq!(owner.request_name(NAME, 0), 1, "primary owner");
    let mut queued = Client::connect(&s.bus);
    assert_eq!(queued.request_name(NAME, 0), 2, "queued owner");

    // A call the owner has read but not answered.
    let mut caller = Client::connect(&s.bus);
    let slow = caller.call(Some(NAME), "/", Some(IFACE), "Slow", "", vec![]);
    let call = loop {
        let m = owner.recv();
        if m.member.as_deref() == Some("Slow") {
            break m;
        }
    };

    // A subscriber that does not read.
    let mut sub = Client::connect(&s.bus);
    sub.add_match(&format!("type='signal',interface='{FLOOD}'"));

    // A monitor.
    let mut mon = Client::connect(&s.bus);
    mon.become_monitor(&[&format!("type='method_call',interface='{PROBE}'")]);
    send_probe(&mut caller, 1);
    expect_probe(&mut mon, 1, "before the re-exec");

    // Half-way through SASL: authenticated, fds agreed, "BEG" of BEGIN.
    let mut half_sasl = Client::connect_raw(&s.bus);
    half_sasl
        .write_all(format!("\0AUTH EXTERNAL {}\r\n", hex(&uid().to_string())).as_bytes())
        .unwrap();
    let ok = read_line(&mut half_sasl);
    assert!(ok.starts_with("OK "), "AUTH: {ok:?}");
    half_sasl.write_all(b"NEGOTIATE_UNIX_FD\r\n").unwrap();
    assert_eq!(read_line(&mut half_sasl), "AGREE_UNIX_FD");
    half_sasl.write_all(b"BEG").unwrap();

    // Half a message (a GetId call).
    let mut half_msg = Client::connect(&s.bus);
    let half_serial = half_msg.next_serial();
    let getid = MsgBuilder::method_call(
        half_serial,
        Some(DRIVER),
        DRIVER_PATH,
        Some(DRIVER),
        "GetId",
    )
    .build();
    let (first, rest) = getid.split_at(getid.len() / 2);
    half_msg.send_bytes(first);

    // A client to call Reexec, and the first half of the flood.
    let mut ctl = Client::connect(&s.bus);
    let mut emitter = Client::connect(&s.bus);
    for i in 0..SIGNALS / 2 {
        emitter.send(flood(i));
    }
    emitter.barrier(); // every signal so far is queued for the subscriber
    let guid = emitter.get_id();
    // The server GUID of the SASL OK (not GetId's bus id) must survive too.
    let server_guid = ok.trim_start_matches("OK ").to_string();

    let before: Vec<String> = [&owner, &queued, &caller, &sub, &half_msg, &ctl, &emitter]
        .iter()
        .map(|c| c.unique_name.clone())
        .collect();
    let max_before = before
        .iter()
        .chain([&mon.unique_name])
        .filter_map(|n| unique_number(n))
        .max();
    let names_before = emitter.list_names();
    // Not a wait for completion: gives the bus time to read the half line
    // and the half message into its own buffers (it reads as soon as they
    // arrive), so that the re-exec has to carry them over.
    thread::sleep(Duration::from_millis(200));

    // Replace the binary, trigger, and send the second half at once.
    let new_exe = s.replace_binary();
    let reexec_serial = match trigger {
        Trigger::Sigusr2 => {
            // SAFETY: kill(2) on our own child, which has not been reaped
            // (Bus reaps it only on drop).
            let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) };
            assert_eq!(r, 0, "kill SIGUSR2");
            None
        }
        Trigger::Method => Some(ctl.call(
            Some(DRIVER),
            DRIVER_PATH,
            Some(DAEMON_IFACE),
            "Reexec",
            "",
            vec![],
        )),
    };
    // A client that connects during the re-exec waits in the listen
    // backlog (it authenticates once the re-exec is done, below).
    let during = connect_address(&s.bus.address).expect("connect during the re-exec");
    let sender = thread::spawn(move || {
        for i in SIGNALS / 2..SIGNALS {
            let mut m = flood(i);
            m.serial = emitter.next_serial();
            emitter
                .sock
                .write_all(&m.build())
                .map_err(|e| format!("signal {i}: {e}"))?;
        }
        Ok::<Client, String>(emitter)
    });
    if let Some(serial) = reexec_serial {
        let r = ctl.wait_reply(serial);
        assert_eq!(
            r.msg_type,
            METHOD_RETURN,
            "Reexec: {:?} {:?}",
            r.error_name,
            (r.msg_type == ERROR).then(|| r.arg0_str())
        );
        assert_eq!(r.signature, "", "Reexec's reply has a body");
    }
    s.wait_reexec(new_exe);
    let mut emitter = sender
        .join()
        .expect("sender thread")
        .unwrap_or_else(|e| panic!("sending the second half of the flood: {e}"));
    let log = s.bus.stderr_log();
    assert!(
        log.contains(&format!("Re-executing {}", s.bin.display())),
        "no 'Re-executing {}' in the log:\n{log}",
        s.bin.display()
    );
    assert!(!log.contains("Re-exec refused: "), "{log}");

    // Same process: the driver reports the pid it runs as.
    let mut w = W::new();
    w.str(DRIVER);
    let r = ctl.call_driver("GetConnectionUnixProcessID", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    assert_eq!(r.arg0_u32(), pid, "the bus driver's pid after the re-exec");

    // Every connection answers, with the same GUID.
    for c in [
        &mut owner,
        &mut queued,
        &mut caller,
        &mut sub,
        &mut ctl,
        &mut emitter,
    ] {
        assert_eq!(
            c.get_id(),
            guid,
            "GUID after the re-exec ({})",
            c.unique_name
        );
    }

    // The half message completes.
    half_msg.send_bytes(rest);
    let r = half_msg.wait_reply(half_serial);
    assert_eq!(r.msg_type, METHOD_RETURN, "the half-sent GetId: {r:?}");
    assert_eq!(r.arg0_str(), guid);

    // The half-authenticated connection completes.
    half_sasl.write_all(b"IN\r\n").unwrap();
    let mut late = Client::from_stream(half_sasl);
    late.hello();
    let mut raw = Client::connect_raw(&s.bus);
    raw.write_all(format!("\0AUTH EXTERNAL {}\r\n", hex(&uid().to_string())).as_bytes())
        .unwrap();
    assert_eq!(
        read_line(&mut raw),
        format!("OK {server_guid}"),
        "the server GUID after the re-exec"
    );

    // The client that connected during the re-exec.
    during.set_read_timeout(Some(TIMEOUT)).unwrap();
    during.set_write_timeout(Some(TIMEOUT)).unwrap();
    let mut during = {
        let mut sock = during;
        sock.write_all(format!("\0AUTH EXTERNAL {}\r\n", hex(&uid().to_string())).as_bytes())
            .unwrap();
        let line = read_line(&mut sock);
        assert!(
            line.starts_with("OK "),
            "AUTH of the client that connected during the re-exec: {line:?}"
        );
        sock.write_all(b"BEGIN\r\n").unwrap();
        Client::from_stream(sock)
    };
    during.hello();

    // The late reply arrives.
    let mut w = W::new();
    w.str("late");
    let reply = MsgBuilder::new(METHOD_RETURN, 0)
        .field_u32(F_REPLY_SERIAL, call.serial)
        .field_str(F_DESTINATION, 's', call.sender.as_deref().unwrap())
        .body("s", w.buf);
    owner.send(reply);
    let r = caller.wait_reply(slow);
    assert_eq!(r.msg_type, METHOD_RETURN, "the late reply: {r:?}");
    assert_eq!(r.arg0_str(), "late");

    // Every signal exactly once, in order.
    let mut got = Vec::with_capacity(SIGNALS as usize);
    let mut other = Vec::new();
    while got.len() < SIGNALS as usize {
        // Earlier round trips may have queued some in `pending`.
        let m = match sub.pending.pop_front() {
            Some(m) => m,
            None => sub.read_msg().unwrap_or_else(|e| {
                panic!(
                    "the subscriber got {} of {SIGNALS} signals, then: {e}",
                    got.len()
                )
            }),
        };
        if m.is_signal(FLOOD, "Tick") {
            got.push(m.reader().u32());
        } else {
            other.push(m);
        }
    }
    sub.pending.extend(other);
    sub.barrier();
    let extra = sub.take_pending(|m| m.is_signal(FLOOD, "Tick")).len();
    let want: Vec<u32> = (0..SIGNALS).collect();
    if got != want {
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!("signals out of order or duplicated, first difference at index {first_bad:?}");
    }
    assert_eq!(extra, 0, "{extra} signals arrived twice");

    // The monitor keeps seeing traffic.
    send_probe(&mut caller, 2);
    expect_probe(&mut mon, 2, "after the re-exec");

    // Names, owners and queues kept; a new client gets a fresh name.
    let mut fresh = Client::connect(&s.bus);
    let names_after = fresh.list_names();
    for n in &names_before {
        assert!(
            names_after.contains(n),
            "{n} is gone after the re-exec: {names_after:?}"
        );
    }
    assert!(
        !names_before.contains(&fresh.unique_name),
        "{} was handed out before",
        fresh.unique_name
    );
    assert!(
        !names_before.contains(&late.unique_name),
        "{} was handed out before",
        late.unique_name
    );
    for n in [&fresh.unique_name, &late.unique_name, &during.unique_name] {
        assert!(
            unique_number(n) > max_before,
            "{n} is not newer than every name before the re-exec ({max_before:?})"
        );
    }
    assert_ne!(fresh.unique_name, late.unique_name);
    assert_eq!(name_owner(&mut fresh, NAME), owner.unique_name);
    assert_eq!(
        queued_owners(&mut fresh, NAME),
        vec![owner.unique_name.clone(), queued.unique_name.clone()]
    );
    assert_eq!(owner.release_name(NAME), 1, "ReleaseName");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let m = queued
            .read_msg_within(deadline.saturating_duration_since(Instant::now()))
            .expect("the queued owner got no NameAcquired after the owner released the name");
        if m.is_signal(DRIVER, "NameAcquired") && m.arg0_str() == NAME {
            break;
        }
    }
    assert_eq!(name_owner(&mut fresh, NAME), queued.unique_name);
    assert_bus_healthy(&mut s.bus, &mut fresh);
    assert_eq!(s.bus.pid(), pid);
    assert_eq!(exe_id(pid).unwrap(), new_exe);
}

#[test]
fn reexec_on_sigusr2_keeps_everything() {
    if busbar_only("reexec_on_sigusr2_keeps_everything") {
        heldout(Trigger::Sigusr2);
    }
}

#[test]
fn reexec_method_keeps_everything() {
    if busbar_only("reexec_method_keeps_everything") {
        heldout(Trigger::Method);
    }
}

/// Connects to `path` from a thread whose credentials are `uid`/`gid`
/// (no supplementary groups), so that the bus sees that uid in
/// SO_PEERCRED. The raw syscalls change only the calling thread: glibc's
/// setuid() wrappers would change every thread of the test process.
fn connect_as(path: &Path, uid: u32, gid: u32) -> UnixStream {
    let path = path.to_path_buf();
    thread::spawn(move || {
        // SAFETY: setgroups(0, NULL), setresgid and setresuid take no
        // pointers we own (NULL with a count of 0 is valid for setgroups);
        // as raw syscalls they change only this thread's credentials, and
        // this thread ends after the connect below.
        let rc = unsafe {
            let a = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>());
            let b = libc::syscall(libc::SYS_setresgid, gid, gid, gid);
            let c = libc::syscall(libc::SYS_setresuid, uid, uid, uid);
            (a, b, c)
        };
        assert_eq!(rc, (0, 0, 0), "dropping to uid {uid}");
        UnixStream::connect(&path).expect("connect as the unprivileged user")
    })
    .join()
    .expect("connect thread")
}

#[test]
fn reexec_method_refused_to_other_users() {
    if !busbar_only("reexec_method_refused_to_other_users") {
        return;
    }
    if uid() != 0 {
        skip_or_fail("reexec_method_refused_to_other_users needs root (it connects as nobody)");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        skip_or_fail("no user 'nobody'");
        return;
    };
    let mut s = Setup::start("denied");
    let pid = s.bus.pid();
    let exe = exe_id(pid).unwrap();
    let sock_path = s.bus.dir.join("bus_socket");
    // The socket must be writable for nobody (the directories are 0755).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&sock_path, fs::Permissions::from_mode(0o777)).unwrap();
    let mut root = Client::connect(&s.bus);
    let guid = root.get_id();

    let nuid = nobody.uid.as_raw();
    let mut sock = connect_as(&sock_path, nuid, nobody.gid.as_raw());
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.write_all(format!("\0AUTH EXTERNAL {}\r\n", hex(&nuid.to_string())).as_bytes())
        .unwrap();
    let ok = read_line(&mut sock);
    assert!(ok.starts_with("OK "), "AUTH as nobody: {ok:?}");
    sock.write_all(b"BEGIN\r\n").unwrap();
    let mut c = Client::from_stream(sock);
    c.hello();
    let mut w = W::new();
    w.str(&c.unique_name);
    let r = root.call_driver("GetConnectionUnixUser", "s", w.buf);
    assert_eq!(
        r.arg0_u32(),
        nuid,
        "the unprivileged client's uid as the bus sees it"
    );

    // A new binary is in place, so a wrongly allowed call would re-exec.
    let _new = s.replace_binary();
    let serial = c.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(DAEMON_IFACE),
        "Reexec",
        "",
        vec![],
    );
    let r = c.wait_reply(serial);
    assert_eq!(r.msg_type, ERROR, "Reexec as nobody was not refused: {r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.AccessDenied"),
        "Reexec as nobody: {:?}",
        r.arg0_str()
    );

    // The bus is unchanged: same process, old image, no re-exec logged.
    assert_eq!(root.get_id(), guid);
    assert_eq!(c.get_id(), guid);
    assert!(s.bus.is_alive());
    assert_eq!(exe_id(pid).unwrap(), exe, "the bus re-executed for nobody");
    let notes = s.notifications();
    assert!(
        !notes.iter().any(|n| n.contains("RELOADING=1")),
        "{notes:?}"
    );
    let log = s.bus.stderr_log();
    assert!(!log.contains("Re-executing"), "{log}");
}
