//! The io_uring backend is detected at run time: where io_uring_setup is
//! refused (seccomp, or the kernel.io_uring_disabled sysctl), a bus asked to
//! use it says so and runs on epoll, and behaves the same.
//!
//! busbar only, but for the burst test, which runs against any daemon:
//! dbus-daemon has no io_uring backend and ignores BUSBAR_IO_BACKEND.

use crate::common;

use common::*;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

/// The kinds of event fd the daemon holds (`[io_uring]`, `[eventpoll]`).
fn poll_fds(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the daemon's fds") {
        if let Ok(t) = std::fs::read_link(e.expect("fd entry").path()) {
            let t = t.to_string_lossy().into_owned();
            if t == "anon_inode:[io_uring]" || t == "anon_inode:[eventpoll]" {
                out.push(t);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The next message that is not from the bus driver (NameAcquired).
fn next_from_peer(c: &mut Client) -> Msg {
    loop {
        let m = c.recv();
        if m.sender.as_deref() != Some(DRIVER) {
            return m;
        }
    }
}

/// Two clients: a call and its reply, a signal to a subscriber.
fn exercise(bus: &Bus) {
    let mut a = Client::connect_fds(bus);
    let mut b = Client::connect_fds(bus);
    let mut w = W::new();
    w.str("type='signal',interface='org.example.Io'");
    let r = b.call_driver("AddMatch", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "AddMatch: {r:?}");
    let b_name = b.unique_name.clone();
    let serial = a.call(
        Some(&b_name),
        "/x",
        Some("org.example.Io"),
        "Ping",
        "",
        vec![],
    );
    let call = next_from_peer(&mut b);
    assert_eq!(call.member.as_deref(), Some("Ping"), "{call:?}");
    b.send(
        MsgBuilder::new(METHOD_RETURN, 0)
            .field_u32(F_REPLY_SERIAL, call.serial)
            .field_str(F_DESTINATION, 's', &a.unique_name),
    );
    let reply = a.wait_reply(serial);
    assert_eq!(reply.msg_type, METHOD_RETURN, "{reply:?}");
    a.send(MsgBuilder::signal(0, "/x", "org.example.Io", "Tick"));
    let sig = next_from_peer(&mut b);
    assert_eq!(sig.member.as_deref(), Some("Tick"), "{sig:?}");
    assert_eq!(sig.sender.as_deref(), Some(a.unique_name.as_str()));
    let id = a.call_driver("GetId", "", vec![]);
    assert_eq!(id.msg_type, METHOD_RETURN, "{id:?}");
}

/// Writes a wrapper that makes io_uring_setup fail with `errno` (as a
/// container's seccomp profile, or io_uring_disabled=2, does) and execs
/// busbar.
fn refusing_wrapper(dir: &Path, errno: &str) -> String {
    let path = dir.join(format!("no-io-uring-{errno}"));
    let script = format!(
        "#!{PYTHON}\nimport errno, os, sys, seccomp\n\
         f = seccomp.SyscallFilter(seccomp.ALLOW)\n\
         f.add_rule(seccomp.ERRNO(errno.{errno}), 'io_uring_setup')\n\
         f.load()\n\
         os.execv({busbar:?}, [{busbar:?}] + sys.argv[1:])\n",
        busbar = env!("CARGO_BIN_EXE_busbar"),
    );
    std::fs::write(&path, script).expect("write wrapper");
    let _ = Command::new("chmod").arg("755").arg(&path).status();
    path.to_string_lossy().into_owned()
}

#[test]
fn uring_backend_runs_where_io_uring_works() {
    if is_reference_daemon() {
        eprintln!("skipped: busbar only, dbus-daemon has no io_uring backend");
        return;
    }
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if disabled {
        return skip_or_fail("io_uring is disabled on this machine (kernel.io_uring_disabled)");
    }
    let env = [("BUSBAR_IO_BACKEND", OsStr::new("uring"))];
    let bus = Bus::start_daemon_logging_env(env!("CARGO_BIN_EXE_busbar"), "", &env);
    // The address is printed before the loop starts: look once it runs.
    exercise(&bus);
    assert_eq!(
        poll_fds(bus.pid()),
        vec!["anon_inode:[io_uring]".to_string()]
    );
    assert!(
        !bus.stderr_log().contains("io_uring is not available"),
        "{}",
        bus.stderr_log()
    );
    let env = [("BUSBAR_IO_BACKEND", OsStr::new("epoll"))];
    let bus = Bus::start_daemon_logging_env(env!("CARGO_BIN_EXE_busbar"), "", &env);
    exercise(&bus);
    assert_eq!(
        poll_fds(bus.pid()),
        vec!["anon_inode:[eventpoll]".to_string()]
    );
}

#[test]
fn refused_io_uring_falls_back_to_epoll() {
    if is_reference_daemon() {
        eprintln!("skipped: busbar only, dbus-daemon has no io_uring backend");
        return;
    }
    let has_seccomp = Command::new(PYTHON)
        .args(["-c", "import seccomp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_seccomp {
        return skip_or_fail("needs python3-seccomp (apt-get install python3-seccomp)");
    }
    let dir = std::env::temp_dir().join(format!("busbar-itest-iobackend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // ENOSYS: a seccomp profile that does not know the call; EPERM:
    // kernel.io_uring_disabled=2.
    for errno in ["ENOSYS", "EPERM"] {
        let wrapper = refusing_wrapper(&dir, errno);
        let env = [("BUSBAR_IO_BACKEND", OsStr::new("uring"))];
        let bus = Bus::start_daemon_logging_env(&wrapper, "", &env);
        exercise(&bus);
        assert_eq!(
            poll_fds(bus.pid()),
            vec!["anon_inode:[eventpoll]".to_string()],
            "{errno}"
        );
        let log = bus.stderr_log();
        assert!(
            log.contains("io_uring is not available") && log.contains("using epoll"),
            "{errno}: {log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// recvmsg calls the daemon `pid` makes while `work` runs, counted by
/// strace; None where strace is missing or may not attach.
fn recvmsg_calls(pid: u32, work: impl FnOnce()) -> Option<u64> {
    let out =
        std::env::temp_dir().join(format!("busbar-itest-strace-{}-{pid}", std::process::id()));
    let mut st = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=recvmsg", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(pid.to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    // strace says "Process N attached" on stderr once it is.
    let mut err = st.stderr.take()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("attached") {
        match std::io::Read::read(&mut err, &mut buf) {
            Ok(0) | Err(_) => {
                let _ = st.wait();
                return None;
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    work();
    // strace prints its summary when interrupted.
    let _ = Command::new("kill")
        .args(["-INT", &st.id().to_string()])
        .status();
    let _ = st.wait();
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let calls = text
        .lines()
        .find(|l| l.trim_end().ends_with("recvmsg"))
        .map(|l| {
            // % time, seconds, usecs/call, calls, [errors,] syscall
            l.split_whitespace().nth(3).and_then(|c| c.parse().ok())
        });
    match calls {
        Some(c) => c,
        // No line: not one recvmsg.
        None if text.contains("total") || text.trim().is_empty() => Some(0),
        None => None,
    }
}

/// `n` calls from one client to another and their replies.
fn ping_pong(a: &mut Client, b: &mut Client, n: usize) {
    let b_name = b.unique_name.clone();
    for _ in 0..n {
        let serial = a.call(
            Some(&b_name),
            "/x",
            Some("org.example.Io"),
            "Ping",
            "",
            vec![],
        );
        let call = next_from_peer(b);
        b.send(
            MsgBuilder::new(METHOD_RETURN, 0)
                .field_u32(F_REPLY_SERIAL, call.serial)
                .field_str(F_DESTINATION, 's', &a.unique_name),
        );
        let reply = a.wait_reply(serial);
        assert_eq!(reply.msg_type, METHOD_RETURN, "{reply:?}");
    }
}

/// With io_uring the receives come from the ring: a call and its reply
/// cost the daemon no recvmsg (with epoll, one per message). Counted with
/// strace; skipped (failed when `CI` is set) where it cannot attach, or
/// where the kernel offers no ring receives (the daemon says so, and
/// receives as with epoll).
#[test]
fn uring_receives_need_no_recvmsg_per_message() {
    if is_reference_daemon() {
        eprintln!("skipped: busbar only, dbus-daemon has no io_uring backend");
        return;
    }
    if std::env::var("BUSBAR_URING_RECV").as_deref() == Ok("off") {
        eprintln!("skipped: BUSBAR_URING_RECV=off");
        return;
    }
    const CALLS: usize = 200;
    let mut counts = Vec::new();
    for backend in ["uring", "epoll"] {
        let env = [("BUSBAR_IO_BACKEND", OsStr::new(backend))];
        let bus = Bus::start_daemon_logging_env(env!("CARGO_BIN_EXE_busbar"), "", &env);
        let mut a = Client::connect_fds(&bus);
        let mut b = Client::connect_fds(&bus);
        ping_pong(&mut a, &mut b, 5);
        let log = bus.stderr_log();
        if backend == "uring"
            && (log.contains("not available")
                || !poll_fds(bus.pid()).contains(&"anon_inode:[io_uring]".to_string()))
        {
            skip_or_fail(&format!("no io_uring receives here: {log}"));
            return;
        }
        let Some(n) = recvmsg_calls(bus.pid(), || ping_pong(&mut a, &mut b, CALLS)) else {
            skip_or_fail("strace is missing or cannot attach to the daemon");
            return;
        };
        eprintln!("{backend}: {n} recvmsg for {CALLS} calls and replies");
        counts.push(n);
    }
    // 2 * CALLS messages: epoll reads each with one recvmsg.
    assert!(
        counts[1] >= CALLS as u64,
        "strace counted too few: {counts:?}"
    );
    assert!(counts[0] < CALLS as u64 / 10, "uring: {counts:?}");
}

/// The bytes of burst message `i`'s array.
fn burst_bytes(i: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u32).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// Signal `i` of the burst: its number and a KiB of bytes.
fn burst_signal(i: u32) -> Vec<u8> {
    let mut w = W::new();
    w.u32(i);
    let b = burst_bytes(i, 1000);
    w.u32(b.len() as u32);
    w.buf.extend_from_slice(&b);
    let mut m = MsgBuilder::signal(i + 10, "/x", "org.example.Burst", "Tick").body("uay", w.buf);
    m.serial = i + 10;
    m.build()
}

/// A one-way call to `dest` with body `sig`/`body`.
fn burst_call(dest: &str, member: &str, serial: u32, sig: &str, body: Vec<u8>) -> MsgBuilder {
    let mut m =
        MsgBuilder::method_call(serial, Some(dest), "/x", Some("org.example.Burst"), member)
            .body(sig, body);
    m.flags = 1; // NO_REPLY_EXPECTED
    m
}

/// A client writes 300 signals (1 KiB each), a call carrying an fd and a
/// 1 MiB call as fast as the socket takes them, in three writes (the fd
/// with the first byte of its message); a subscriber gets every one,
/// whole and in order. With io_uring's multishot receives the daemon
/// takes such a burst faster than it routes it, so this runs through the
/// bytes and fds kept for later (transport::spill), and the large body is
/// spliced after the ring's receive is taken back, or copied. Both ring
/// receive kinds, epoll, and the reference daemon.
#[test]
fn a_burst_with_an_fd_and_a_large_body_arrives_whole_and_in_order() {
    let runs: &[(&str, &str)] = if is_reference_daemon() {
        &[("epoll", "on")]
    } else {
        &[("uring", "on"), ("uring", "off"), ("epoll", "on")]
    };
    const BIG: usize = 1 << 20;
    for &(backend, multishot) in runs {
        let env = [
            ("BUSBAR_IO_BACKEND", OsStr::new(backend)),
            ("BUSBAR_URING_MULTISHOT", OsStr::new(multishot)),
        ];
        let bus = Bus::start_daemon_logging_env(&daemon_path(), "", &env);
        let mut a = Client::connect_fds(&bus);
        let mut b = Client::connect_fds(&bus);
        b.add_match("type='signal',interface='org.example.Burst'");
        // The sender's turns have ended with its socket dry: a ring
        // receive is armed on it.
        ping_pong(&mut a, &mut b, 3);
        let b_name = b.unique_name.clone();
        let mut part1 = Vec::new();
        for i in 0..150 {
            part1.extend(burst_signal(i));
        }
        let mut with_fd = burst_call(&b_name, "WithFd", 1000, "h", vec![0, 0, 0, 0]);
        with_fd = with_fd.field_u32(F_UNIX_FDS, 1);
        let part2 = with_fd.build();
        let mut part3 = Vec::new();
        for i in 150..200 {
            part3.extend(burst_signal(i));
        }
        let mut big = Vec::with_capacity(BIG + 4);
        big.extend_from_slice(&(BIG as u32).to_le_bytes());
        big.extend(burst_bytes(7, BIG));
        part3.extend(burst_call(&b_name, "Big", 1001, "ay", big).build());
        for i in 200..300 {
            part3.extend(burst_signal(i));
        }
        let sock = a.sock.try_clone().expect("clone the sender's socket");
        let writer = std::thread::spawn(move || {
            let file = std::fs::File::open("/dev/null").expect("open /dev/null");
            (&sock).write_all(&part1).expect("write the first part");
            send_with_fds(&sock, &part2, &[file.as_raw_fd()]).expect("write the fd's message");
            (&sock).write_all(&part3).expect("write the rest");
        });
        let mut next = 0u32;
        let mut seen_fd = false;
        let mut seen_big = false;
        while next < 300 {
            let m = next_from_peer(&mut b);
            match m.member.as_deref() {
                Some("Tick") => {
                    let mut r = m.reader();
                    let i = r.u32();
                    assert_eq!(i, next, "{backend}/{multishot}: signal out of order");
                    assert_eq!(r.u32(), 1000, "{backend}/{multishot}: signal {i}'s array");
                    assert!(
                        m.body[8..] == burst_bytes(i, 1000)[..],
                        "{backend}/{multishot}: signal {i}'s bytes"
                    );
                    next += 1;
                }
                Some("WithFd") => {
                    assert_eq!(
                        next, 150,
                        "{backend}/{multishot}: the fd's call out of order"
                    );
                    assert_eq!(m.fds.len(), 1, "{backend}/{multishot}: {m:?}");
                    seen_fd = true;
                }
                Some("Big") => {
                    assert_eq!(
                        next, 200,
                        "{backend}/{multishot}: the large call out of order"
                    );
                    assert_eq!(m.body.len(), BIG + 4, "{backend}/{multishot}");
                    assert!(
                        m.body[4..] == burst_bytes(7, BIG)[..],
                        "{backend}/{multishot}: the large body's bytes"
                    );
                    seen_big = true;
                }
                other => panic!("{backend}/{multishot}: unexpected {other:?}: {m:?}"),
            }
        }
        writer.join().expect("writer");
        assert!(seen_fd && seen_big, "{backend}/{multishot}");
        ping_pong(&mut a, &mut b, 2);
        // A large call alone, to a connection whose ring receive is armed:
        // the receive is taken back before the body is spliced.
        let mut big = Vec::with_capacity(BIG + 4);
        big.extend_from_slice(&(BIG as u32).to_le_bytes());
        big.extend(burst_bytes(9, BIG));
        let alone = burst_call(&b_name, "Alone", 1002, "ay", big).build();
        let sock = a.sock.try_clone().expect("clone the sender's socket");
        let writer = std::thread::spawn(move || (&sock).write_all(&alone).expect("write"));
        let m = next_from_peer(&mut b);
        assert_eq!(
            m.member.as_deref(),
            Some("Alone"),
            "{backend}/{multishot}: {m:?}"
        );
        assert!(
            m.body.len() == BIG + 4 && m.body[4..] == burst_bytes(9, BIG)[..],
            "{backend}/{multishot}: the lone large body's bytes"
        );
        writer.join().expect("writer");
        ping_pong(&mut a, &mut b, 2);
        let log = bus.stderr_log();
        assert!(!log.contains("panicked"), "{backend}/{multishot}: {log}");
    }
}
