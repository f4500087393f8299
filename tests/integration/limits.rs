//! One test (at least) for every `<limit>` of the busconfig: each sets the
//! limit tiny, drives a connection past it, and checks what dbus-daemon
//! does there (error, disconnection, back-pressure or a paused accept()).
//! Tests are named after the limit. Run against the reference with
//! `BUSBAR_TEST_DAEMON=/usr/bin/dbus-daemon`: tests that need busbar-only
//! introspection (Debug.Stats where the reference lacks it) say so and
//! return early.

use crate::common;

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const STATS_IFACE: &str = "org.freedesktop.DBus.Debug.Stats";
const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";
const FULL_QUEUE: &str = "Rejected: destination has a full message queue";

fn limits(pairs: &[(&str, u64)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!(r#"<limit name="{k}">{v}</limit>"#))
        .collect()
}

/// Debug.Stats.GetConnectionStats of `name` (the u32 entries), or None if
/// the daemon has no Debug.Stats.
fn conn_stats(c: &mut Client, name: &str) -> Option<HashMap<String, u64>> {
    let mut w = W::new();
    w.str(name);
    let s = c.call(
        Some(DRIVER),
        DRIVER_PATH,
        Some(STATS_IFACE),
        "GetConnectionStats",
        "s",
        w.buf,
    );
    let r = c.wait_reply(s);
    if r.msg_type != METHOD_RETURN {
        return None;
    }
    Some(
        r.reader()
            .dict_sv()
            .into_iter()
            .filter(|(_, sig, _)| sig == "u")
            .map(|(k, _, v)| (k, v.parse().unwrap()))
            .collect(),
    )
}

fn stat(c: &mut Client, name: &str, key: &str) -> Option<u64> {
    conn_stats(c, name).map(|m| m[key])
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Asserts that the daemon uses (almost) no CPU for a second.
fn assert_idle(bus: &Bus, what: &str) {
    let before = cpu_ticks(bus.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(bus.pid()) - before;
    // A busy loop would use ~100 ticks; allow generous noise.
    assert!(
        used <= 25,
        "{what}: the daemon used {used} ticks of CPU in an idle second (spinning?)"
    );
}

/// An `ay` body of `n` bytes.
fn bytes_body(n: usize) -> Vec<u8> {
    let mut w = W::new();
    w.u32(n as u32);
    w.buf.extend(std::iter::repeat_n(0x5a, n));
    w.buf
}

/// A method call to `dest` carrying `n` bytes; no reply wanted if `noreply`.
fn payload_call(serial: u32, dest: &str, n: usize, noreply: bool) -> MsgBuilder {
    let mut m = MsgBuilder::method_call(serial, Some(dest), "/t", Some("org.test.Flood"), "Data")
        .body("ay", bytes_body(n));
    if noreply {
        m.flags |= NO_REPLY_EXPECTED;
    }
    m
}

fn payload_signal(serial: u32, n: usize) -> MsgBuilder {
    MsgBuilder::signal(serial, "/t", "org.test.Flood", "Data").body("ay", bytes_body(n))
}

/// Writes `msgs` (each with `fd` attached if given) from a thread, so the
/// caller can read while the bus pushes back.
fn spawn_writer(sock: &UnixStream, msgs: Vec<Vec<u8>>, fd: Option<File>) -> JoinHandle<()> {
    let mut s = sock.try_clone().unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    std::thread::spawn(move || {
        for m in msgs {
            match &fd {
                Some(f) => send_with_fds(&s, &m, &[f.as_raw_fd()]).expect("send with fd"),
                None => s.write_all(&m).expect("flood write"),
            }
        }
    })
}

/// A client that authenticates, says Hello and then never reads again
/// (until the test decides otherwise).
fn stuck_client(bus: &Bus, fds: bool) -> Client {
    if fds {
        Client::connect_fds(bus)
    } else {
        Client::connect(bus)
    }
}

/// The next message that is not a signal (NameAcquired and the like).
fn recv_non_signal(c: &mut Client) -> Msg {
    loop {
        let m = c.recv();
        if m.msg_type != SIGNAL {
            return m;
        }
    }
}

fn is_limits_exceeded(m: &Msg) -> bool {
    m.msg_type == ERROR && m.error_name.as_deref() == Some(LIMITS_EXCEEDED)
}

// ---------------------------------------------------------------------------
// Outgoing queues

/// A receiver that never reads, a sender that floods it with calls and
/// signals: the receiver's queue stays at max_outgoing_bytes plus one
/// message, calls over it get LimitsExceeded ("destination has a full
/// message queue"), signals over it are dropped for that receiver, the
/// daemon's memory stays flat and everyone else is served.
#[test]
fn max_outgoing_bytes() {
    const LIMIT: u64 = 64 * 1024;
    const SIZE: usize = 4096;
    const N: u32 = 1500;
    let mut bus = Bus::start_with(&limits(&[
        ("max_outgoing_bytes", LIMIT),
        ("max_replies_per_connection", 100_000),
    ]));
    let mut good = Client::connect(&bus);
    let mut stuck = stuck_client(&bus, false);
    stuck.add_match("type='signal',interface='org.test.Flood'");
    let stuck_name = stuck.unique_name.clone();
    let mut sender = Client::connect(&bus);
    let rss_before = rss_kib(bus.pid());

    let mut msgs = Vec::new();
    for i in 0..N {
        let s = sender.next_serial();
        let m = if i % 2 == 0 {
            payload_call(s, &stuck_name, SIZE, false)
        } else {
            payload_signal(s, SIZE)
        };
        msgs.push(m.build());
    }
    let barrier = sender.next_serial();
    msgs.push(
        MsgBuilder::method_call(barrier, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId").build(),
    );
    let w = spawn_writer(&sender.sock, msgs, None);
    let mut full = 0;
    loop {
        let m = sender.read_msg().expect("sender reads");
        if m.reply_serial == Some(barrier) {
            break;
        }
        if m.msg_type == SIGNAL {
            continue;
        }
        if is_limits_exceeded(&m) {
            assert!(
                m.arg0_str().starts_with(FULL_QUEUE),
                "unexpected LimitsExceeded text {:?}",
                m.arg0_str()
            );
            full += 1;
        } else {
            panic!("unexpected message to the sender: {m:?}");
        }
    }
    w.join().unwrap();
    assert!(full > 0, "no call was refused with LimitsExceeded");
    let rss_after = rss_kib(bus.pid());
    // N/2 calls and N/2 signals of 4 KiB: ~6 MiB would be queued unbounded.
    assert!(
        rss_after < rss_before + 3 * 1024,
        "daemon RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    if let Some(st) = conn_stats(&mut good, &stuck_name) {
        let peak = st["PeakOutgoingBytes"];
        assert!(
            peak <= LIMIT + SIZE as u64 + 512,
            "stuck peer's queue peaked at {peak} bytes (limit {LIMIT})"
        );
    }
    assert_bus_healthy(&mut bus, &mut good);
    assert_idle(&bus, "stuck reader with a full queue");
    drop(stuck);
}

/// The bus's own messages (here: errors for calls to a name nobody owns)
/// to a peer that never reads them are dropped once its queue is full, as
/// dbus-daemon's bus_transaction_send_from_driver does; the queue does not
/// grow past the limit.
#[test]
fn max_outgoing_bytes_bus_messages_to_full_queue() {
    const LIMIT: u64 = 16 * 1024;
    let mut bus = Bus::start_with(&limits(&[("max_outgoing_bytes", LIMIT)]));
    let mut good = Client::connect(&bus);
    let mut deaf = Client::connect(&bus);
    let deaf_name = deaf.unique_name.clone();
    // ~200 bytes of error per call; 6000 calls: over 1 MiB of replies,
    // more than the socket buffer takes.
    let mut msgs = Vec::new();
    for _ in 0..6000 {
        let s = deaf.next_serial();
        let mut m = MsgBuilder::method_call(s, Some("org.test.Nobody"), "/t", None, "X");
        m.flags |= 0x2; // NO_AUTO_START: NameHasNoOwner at once
        msgs.push(m.build());
    }
    spawn_writer(&deaf.sock, msgs, None).join().unwrap();
    good.barrier();
    // The deaf peer's messages were all handled once the bus answers a
    // later call from someone else... give it a moment to be sure.
    std::thread::sleep(Duration::from_millis(200));
    good.barrier();
    if let Some(peak) = stat(&mut good, &deaf_name, "PeakOutgoingBytes") {
        assert!(
            peak <= LIMIT + 1024,
            "deaf peer's queue peaked at {peak} bytes (limit {LIMIT})"
        );
    } else {
        skip_or_fail("no Debug.Stats: the queue peak is not checked");
    }
    assert_bus_healthy(&mut bus, &mut good);
    drop(deaf);
}

/// Like max_outgoing_bytes, counting fds: calls with an fd to a receiver
/// that never reads are refused once its queue holds the limit.
#[test]
fn max_outgoing_unix_fds() {
    const LIMIT: u64 = 4;
    const N: usize = 300;
    let mut bus = Bus::start_with(&limits(&[
        ("max_outgoing_unix_fds", LIMIT),
        ("max_replies_per_connection", 100_000),
    ]));
    let mut good = Client::connect(&bus);
    let stuck = stuck_client(&bus, true);
    let stuck_name = stuck.unique_name.clone();
    let mut sender = Client::connect_fds(&bus);
    let mut msgs = Vec::new();
    let mut serials = Vec::new();
    for _ in 0..N {
        let s = sender.next_serial();
        serials.push(s);
        msgs.push(
            payload_call(s, &stuck_name, 4096, false)
                .field_u32(F_UNIX_FDS, 1)
                .build(),
        );
    }
    let barrier = sender.next_serial();
    let w = spawn_writer(&sender.sock, msgs, Some(File::open("/dev/null").unwrap()));
    w.join().unwrap();
    sender.send_bytes(
        &MsgBuilder::method_call(barrier, Some(DRIVER), DRIVER_PATH, Some(DRIVER), "GetId").build(),
    );
    let mut full = 0;
    loop {
        let m = sender.read_msg().expect("sender reads");
        if m.reply_serial == Some(barrier) {
            break;
        }
        if m.msg_type == SIGNAL {
            continue;
        }
        assert!(is_limits_exceeded(&m), "unexpected: {m:?}");
        assert!(m.arg0_str().starts_with(FULL_QUEUE), "{:?}", m.arg0_str());
        full += 1;
    }
    assert!(full > 0, "no call was refused for a full fd queue");
    if let Some(peak) = stat(&mut good, &stuck_name, "PeakOutgoingFDs") {
        assert!(
            peak <= LIMIT + 1,
            "fds queued peaked at {peak} (limit {LIMIT})"
        );
    }
    assert_bus_healthy(&mut bus, &mut good);
    drop(stuck);
}

// ---------------------------------------------------------------------------
// Incoming: back-pressure on the sender

/// Drains `n` Data messages from `c` (in order, by body size), returning
/// how many carried an fd.
fn drain_data(c: &mut Client, n: usize) -> usize {
    let mut with_fd = 0;
    let mut i = 0;
    while i < n {
        let m = c
            .read_msg()
            .unwrap_or_else(|e| panic!("message {i} of {n}: {e}"));
        if m.msg_type == SIGNAL {
            continue;
        }
        i += 1;
        assert_eq!(m.member.as_deref(), Some("Data"), "{m:?}");
        with_fd += usize::from(!m.fds.is_empty());
    }
    with_fd
}

/// dbus-daemon stops reading from a connection while the messages it sent
/// that are still alive in the bus (queued for recipients) reach
/// max_incoming_bytes, and reads again when they drain. A receiver that
/// does not read therefore holds up its sender instead of growing the
/// bus; nothing is lost, and the daemon does not spin meanwhile.
#[test]
fn max_incoming_bytes() {
    const LIMIT: u64 = 4096;
    const N: usize = 2000;
    const SIZE: usize = 1024;
    let mut bus = Bus::start_with(&limits(&[("max_incoming_bytes", LIMIT)]));
    let mut good = Client::connect(&bus);
    let mut stuck = stuck_client(&bus, false);
    let stuck_name = stuck.unique_name.clone();
    let mut sender = Client::connect(&bus);
    let sender_name = sender.unique_name.clone();
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let s = sender.next_serial();
            payload_call(s, &stuck_name, SIZE, true).build()
        })
        .collect();
    let w = spawn_writer(&sender.sock, msgs, None);
    std::thread::sleep(Duration::from_millis(500));
    assert_idle(&bus, "sender held back by a stuck receiver");
    if let Some(st) = conn_stats(&mut good, &stuck_name) {
        // The socket buffer takes its share; past that only the sender's
        // allowance (plus one read of 64 KiB) may queue up.
        let peak = st["PeakOutgoingBytes"];
        assert!(
            peak <= LIMIT + 64 * 1024 + 2 * SIZE as u64,
            "stuck receiver's queue peaked at {peak} bytes: the sender was not held back"
        );
        let sender_peak = stat(&mut good, &sender_name, "PeakIncomingBytes").unwrap();
        assert!(sender_peak > 0, "PeakIncomingBytes of the sender is 0");
    }
    assert_bus_healthy(&mut bus, &mut good);
    // Now the receiver reads: everything arrives and the sender finishes.
    assert_eq!(drain_data(&mut stuck, N), 0);
    w.join().unwrap();
    sender.barrier();
}

/// The same back-pressure counted in fds (max_incoming_unix_fds).
#[test]
fn max_incoming_unix_fds() {
    const LIMIT: u64 = 4;
    const N: usize = 300;
    let mut bus = Bus::start_with(&limits(&[
        ("max_incoming_unix_fds", LIMIT),
        ("max_outgoing_unix_fds", 100_000),
    ]));
    let mut good = Client::connect(&bus);
    let mut stuck = stuck_client(&bus, true);
    let stuck_name = stuck.unique_name.clone();
    let mut sender = Client::connect_fds(&bus);
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let s = sender.next_serial();
            payload_call(s, &stuck_name, 4096, true)
                .field_u32(F_UNIX_FDS, 1)
                .build()
        })
        .collect();
    let w = spawn_writer(&sender.sock, msgs, Some(File::open("/dev/null").unwrap()));
    std::thread::sleep(Duration::from_millis(500));
    if let Some(peak) = stat(&mut good, &stuck_name, "PeakOutgoingFDs") {
        assert!(
            peak <= LIMIT + 2,
            "stuck receiver had {peak} fds queued: the sender was not held back"
        );
    }
    assert_bus_healthy(&mut bus, &mut good);
    assert_eq!(drain_data(&mut stuck, N), N, "every message keeps its fd");
    w.join().unwrap();
    sender.barrier();
}

/// /echo/limited of dbus's test suite: max_incoming_bytes=1 still lets a
/// connection make progress (one read at a time).
#[test]
fn max_incoming_bytes_of_one_makes_progress() {
    let mut bus = Bus::start_with(&limits(&[("max_incoming_bytes", 1)]));
    let mut good = Client::connect(&bus);
    let mut echo = Client::connect(&bus);
    let echo_name = echo.unique_name.clone();
    let mut caller = Client::connect(&bus);
    let serials: Vec<u32> = (0..50)
        .map(|_| {
            let s = caller.next_serial();
            caller.send_bytes(&payload_call(s, &echo_name, 100, false).build());
            s
        })
        .collect();
    for _ in 0..50 {
        let m = recv_non_signal(&mut echo);
        let mut r = MsgBuilder::new(METHOD_RETURN, echo.next_serial())
            .field_u32(F_REPLY_SERIAL, m.serial)
            .field_str(F_DESTINATION, 's', m.sender.as_deref().unwrap());
        r.flags |= NO_REPLY_EXPECTED;
        echo.send_bytes(&r.build());
    }
    for s in serials {
        let r = caller.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    }
    assert_bus_healthy(&mut bus, &mut good);
}

// ---------------------------------------------------------------------------
// Connections

/// While max_incomplete_connections connections are still authenticating
/// (or have not said Hello), dbus-daemon stops accept()ing: a further
/// client waits in the listen backlog and is served once one of them goes.
#[test]
fn max_incomplete_connections() {
    let mut bus = Bus::start_with(&limits(&[("max_incomplete_connections", 2)]));
    let mut good = Client::connect(&bus);
    let a = Client::connect_raw(&bus);
    let _b = Client::connect_authed(&bus, false); // authenticated, no Hello
    std::thread::sleep(Duration::from_millis(100));
    let mut c = Client::connect_raw(&bus);
    c.write_all(b"\0AUTH EXTERNAL ").unwrap();
    c.write_all(
        uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .as_bytes(),
    )
    .unwrap();
    c.write_all(b"\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
        Ok(0) => panic!("the third incomplete connection was closed, not held back"),
        other => panic!("the third incomplete connection was served: {other:?}"),
    }
    // Connected clients are not affected.
    assert_bus_healthy(&mut bus, &mut good);
    drop(a);
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let line = read_line(&mut c);
    assert!(line.starts_with("OK "), "after a slot freed up: {line:?}");
    c.write_all(b"BEGIN\r\n").unwrap();
    let mut c = Client::from_stream(c);
    c.hello();
    assert_bus_healthy(&mut bus, &mut good);
}

/// Hello fails with LimitsExceeded once max_completed_connections have.
#[test]
fn max_completed_connections() {
    let mut bus = Bus::start_with(&limits(&[("max_completed_connections", 2)]));
    let mut good = Client::connect(&bus);
    let _second = Client::connect(&bus);
    let mut third = Client::connect_authed(&bus, false);
    let r = third.call_driver("Hello", "", vec![]);
    assert!(is_limits_exceeded(&r), "third Hello: {r:?}");
    assert_eq!(
        r.arg0_str(),
        "The maximum number of active connections has been reached"
    );
    assert_bus_healthy(&mut bus, &mut good);
}

/// Hello fails with LimitsExceeded once the user has
/// max_connections_per_user completed connections (connections still
/// authenticating do not count, as in dbus-daemon).
#[test]
fn max_connections_per_user() {
    let mut bus = Bus::start_with(&limits(&[("max_connections_per_user", 2)]));
    let mut good = Client::connect(&bus);
    let mut pending = Client::connect_authed(&bus, false);
    let _second = Client::connect(&bus);
    let r = pending.call_driver("Hello", "", vec![]);
    assert!(is_limits_exceeded(&r), "third Hello: {r:?}");
    assert_eq!(
        r.arg0_str(),
        format!(
            "The maximum number of active connections for UID {} has been reached",
            uid()
        )
    );
    assert_bus_healthy(&mut bus, &mut good);
}

// ---------------------------------------------------------------------------
// Timeouts

/// A connection that never finishes SASL is closed after auth_timeout.
#[test]
fn auth_timeout() {
    let mut bus = Bus::start_with(&limits(&[("auth_timeout", 500)]));
    let mut good = Client::connect(&bus);
    let mut silent = Client::connect_raw(&bus);
    let t = Instant::now();
    expect_disconnect(&mut silent, "silent peer past auth_timeout");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
    // A connection that said Hello is no longer subject to it.
    std::thread::sleep(Duration::from_millis(300));
    assert_bus_healthy(&mut bus, &mut good);
}

/// auth_timeout runs until Hello: dbus-daemon keeps a connection that
/// authenticated but never said Hello "incomplete" and expires it too.
#[test]
fn auth_timeout_without_hello() {
    let mut bus = Bus::start_with(&limits(&[("auth_timeout", 500)]));
    let mut good = Client::connect(&bus);
    let mut quiet = Client::connect_authed(&bus, false);
    expect_disconnect(&mut quiet.sock, "authenticated peer without Hello");
    assert_bus_healthy(&mut bus, &mut good);
}

/// Fds that arrive with part of a message which is never completed are
/// dropped with their connection after pending_fd_timeout.
#[test]
fn pending_fd_timeout() {
    let mut bus = Bus::start_with(&limits(&[("pending_fd_timeout", 500)]));
    let mut good = Client::connect(&bus);
    let mut bad = Client::connect_fds(&bus);
    let dest = good.unique_name.clone();
    let m = payload_call(bad.next_serial(), &dest, 100, true)
        .field_u32(F_UNIX_FDS, 1)
        .build();
    let devnull = File::open("/dev/null").unwrap();
    let t = Instant::now();
    send_with_fds(&bad.sock, &m[..m.len() - 10], &[devnull.as_raw_fd()]).unwrap();
    expect_disconnect(&mut bad.sock, "fds pending past pending_fd_timeout");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "closed after {:?}, before the timeout",
        t.elapsed()
    );
    assert_bus_healthy(&mut bus, &mut good);
}

/// A method call nobody answers gets NoReply after reply_timeout.
#[test]
fn reply_timeout() {
    let mut bus = Bus::start_with(&limits(&[("reply_timeout", 300)]));
    let mut good = Client::connect(&bus);
    let silent = Client::connect(&bus);
    let s = good.send(payload_call(0, &silent.unique_name, 8, false));
    let t = Instant::now();
    let r = good.wait_reply(s);
    assert_eq!(r.msg_type, ERROR, "{r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.NoReply")
    );
    assert_eq!(
        r.arg0_str(),
        "Message did not receive a reply (timeout by message bus)"
    );
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_bus_healthy(&mut bus, &mut good);
    drop(silent);
}

// ---------------------------------------------------------------------------
// Per message

/// A message over max_message_size disconnects its sender; one under it
/// goes through.
#[test]
fn max_message_size() {
    let mut bus = Bus::start_with(&limits(&[("max_message_size", 4096)]));
    let mut good = Client::connect(&bus);
    let mut rx = Client::connect(&bus);
    let rx_name = rx.unique_name.clone();
    let s = good.send(payload_call(0, &rx_name, 3000, true));
    let m = recv_non_signal(&mut rx);
    assert_eq!(m.serial, s);
    let mut bad = Client::connect(&bus);
    let m = payload_call(bad.next_serial(), &rx_name, 5000, true).build();
    write_lenient(&mut bad.sock, &m);
    expect_disconnect(&mut bad.sock, "message over max_message_size");
    assert_bus_healthy(&mut bus, &mut good);
}

/// A message with more than max_message_unix_fds fds disconnects its sender.
#[test]
fn max_message_unix_fds() {
    let mut bus = Bus::start_with(&limits(&[("max_message_unix_fds", 2)]));
    let mut good = Client::connect_fds(&bus);
    let dest = good.unique_name.clone();
    let mut bad = Client::connect_fds(&bus);
    let f = File::open("/dev/null").unwrap();
    let fd = f.as_raw_fd();
    let ok = payload_call(bad.next_serial(), &dest, 8, true)
        .field_u32(F_UNIX_FDS, 2)
        .build();
    send_with_fds(&bad.sock, &ok, &[fd, fd]).unwrap();
    let got = recv_non_signal(&mut good);
    assert_eq!(got.fds.len(), 2, "{got:?}");
    let m = payload_call(bad.next_serial(), &dest, 8, true)
        .field_u32(F_UNIX_FDS, 3)
        .build();
    send_with_fds(&bad.sock, &m, &[fd, fd, fd]).unwrap();
    expect_disconnect(&mut bad.sock, "message over max_message_unix_fds");
    assert_bus_healthy(&mut bus, &mut good);
}

/// Fds sent ahead of (or with part of) a message may not pile up in the
/// daemon: libdbus reads fds into a buffer of max_message_unix_fds and
/// reads the rest of a message without taking fds (the kernel discards
/// them); busbar disconnects a peer with more fds pending than one message
/// may carry. Either way the daemon's fd table does not grow with them.
#[test]
fn max_message_unix_fds_pending() {
    const MAX: usize = 2;
    let mut bus = Bus::start_with(&limits(&[("max_message_unix_fds", MAX as u64)]));
    let mut good = Client::connect(&bus);
    let mut bad = Client::connect_fds(&bus);
    good.barrier();
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", bus.pid()))
            .unwrap()
            .count()
    };
    let before = open_fds();
    let f = File::open("/dev/null").unwrap();
    let fd = f.as_raw_fd();
    for _ in 0..100 {
        // One byte each, every time with fds; the bus may hang up.
        if send_with_fds(&bad.sock, b"l", &[fd]).is_err() {
            break;
        }
    }
    if !is_reference_daemon() {
        expect_disconnect(&mut bad.sock, "fds piling up without a message");
    }
    good.barrier();
    let after = open_fds();
    assert!(
        after <= before + MAX,
        "the daemon holds {} more fds after 100 were sent ahead of a message",
        after.saturating_sub(before)
    );
    assert_bus_healthy(&mut bus, &mut good);
}

// ---------------------------------------------------------------------------
// Per connection

#[test]
fn max_names_per_connection() {
    let mut bus = Bus::start_with(&limits(&[("max_names_per_connection", 2)]));
    let mut good = Client::connect(&bus);
    let mut c = Client::connect(&bus);
    assert_eq!(c.request_name("org.test.A", 0), 1);
    // dbus-daemon counts the unique name too.
    let mut w = W::new();
    w.str("org.test.B").u32(0);
    let r = c.call_driver("RequestName", "su", w.buf);
    assert!(is_limits_exceeded(&r), "{r:?}");
    assert_bus_healthy(&mut bus, &mut good);
}

#[test]
fn max_match_rules_per_connection() {
    let mut bus = Bus::start_with(&limits(&[("max_match_rules_per_connection", 2)]));
    let mut good = Client::connect(&bus);
    let mut c = Client::connect(&bus);
    c.add_match("type='signal',member='A'");
    c.add_match("type='signal',member='B'");
    let mut w = W::new();
    w.str("type='signal',member='C'");
    let r = c.call_driver("AddMatch", "s", w.buf);
    assert!(is_limits_exceeded(&r), "{r:?}");
    assert_bus_healthy(&mut bus, &mut good);
}

#[test]
fn max_replies_per_connection() {
    let mut bus = Bus::start_with(&limits(&[("max_replies_per_connection", 2)]));
    let mut good = Client::connect(&bus);
    let silent = Client::connect(&bus);
    let mut c = Client::connect(&bus);
    let dest = silent.unique_name.clone();
    c.send(payload_call(0, &dest, 8, false));
    c.send(payload_call(0, &dest, 8, false));
    let s = c.send(payload_call(0, &dest, 8, false));
    let r = c.wait_reply(s);
    assert!(is_limits_exceeded(&r), "{r:?}");
    assert_eq!(
        r.arg0_str(),
        "The maximum number of pending replies per connection has been reached"
    );
    assert_bus_healthy(&mut bus, &mut good);
    drop(silent);
}
