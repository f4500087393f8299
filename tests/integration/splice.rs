//! Large `ay` bodies, which busbar moves socket -> pipe -> socket with
//! splice(2) (src/broker/splice.rs): they arrive byte-exact, in order, with
//! their fds, past monitors; a recipient that does not read stalls only its
//! sender; either side breaking off mid-body leaves the bus and everyone
//! else working. Every test also runs against dbus-daemon
//! (`BUSBAR_TEST_DAEMON=/usr/bin/dbus-daemon`), which copies the same
//! bodies, so the tests pin down behaviour, not the mechanism.

use crate::common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// An `ay` body of `n` bytes whose contents depend on `seed`.
fn ay(n: usize, seed: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(n + 4);
    b.extend_from_slice(&(n as u32).to_le_bytes());
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.push(x as u8);
    }
    b
}

fn put(dest: &str, body: Vec<u8>) -> MsgBuilder {
    MsgBuilder::method_call(
        0,
        Some(dest),
        "/org/example/Big",
        Some("org.example.Big"),
        "Put",
    )
    .body("ay", body)
}

/// A small `u` message (no reply expected) to `dest`.
fn small(dest: &str, v: u32) -> MsgBuilder {
    let mut w = W::new();
    w.u32(v);
    MsgBuilder::method_call(
        0,
        Some(dest),
        "/org/example/Big",
        Some("org.example.Big"),
        "Small",
    )
    .body("u", w.buf)
    .flags_or(NO_REPLY_EXPECTED)
}

fn reply(to: &Msg, body: Vec<u8>) -> MsgBuilder {
    MsgBuilder::new(METHOD_RETURN, 0)
        .field_str(F_DESTINATION, 's', to.sender.as_deref().unwrap())
        .field_u32(F_REPLY_SERIAL, to.serial)
        .body("ay", body)
}

/// The next message that is not from the driver.
fn next_from_peer(c: &mut Client) -> Msg {
    loop {
        let m = c.recv();
        if m.sender.as_deref() != Some(DRIVER) {
            return m;
        }
    }
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: body length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: bodies differ first at byte {i}");
    }
}

/// Two clients with [`long_timeouts`], and the second's unique name.
fn pair(bus: &Bus) -> (Client, Client, String) {
    let a = Client::connect(bus);
    let b = Client::connect(bus);
    long_timeouts(&a);
    long_timeouts(&b);
    let name = b.unique_name.clone();
    (a, b, name)
}

fn long_timeouts(c: &Client) {
    c.sock
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c.sock
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
}

#[test]
fn large_calls_and_replies_arrive_byte_exact() {
    let bus = Bus::start();
    let (mut a, mut b, b_name) = pair(&bus);
    let sizes = [MIB, 8 * MIB, MIB + 7, 64 * 1024];
    let server = thread::spawn(move || {
        for (i, &n) in sizes.iter().enumerate() {
            let m = next_from_peer(&mut b);
            assert_eq!(m.member.as_deref(), Some("Put"));
            assert_eq!(m.signature, "ay");
            assert_same(&format!("call {n}"), &m.body, &ay(n, i as u32));
            b.send(reply(&m, ay(n, 1000 + i as u32)));
        }
    });
    for (i, &n) in sizes.iter().enumerate() {
        let s = a.send(put(&b_name, ay(n, i as u32)));
        let r = a.wait_reply(s);
        assert_eq!(r.msg_type, METHOD_RETURN, "reply to {n}: {r:?}");
        assert_same(&format!("reply {n}"), &r.body, &ay(n, 1000 + i as u32));
    }
    server.join().unwrap();
}

/// Several senders each send large and small messages alternately to one
/// recipient, all at once: each sender's messages arrive complete and in
/// the order it sent them.
#[test]
fn large_and_small_from_several_senders_keep_per_sender_order() {
    const SENDERS: u32 = 3;
    const EACH: u32 = 12;
    let bus = Bus::start();
    let mut r = Client::connect(&bus);
    long_timeouts(&r);
    let r_name = r.unique_name.clone();
    let mut threads = Vec::new();
    for s in 0..SENDERS {
        let mut c = Client::connect(&bus);
        long_timeouts(&c);
        let dest = r_name.clone();
        threads.push(thread::spawn(move || {
            let name = c.unique_name.clone();
            for k in 0..EACH {
                let seed = s * 1000 + k;
                let m = if k.is_multiple_of(2) {
                    // 70 KiB .. 1.5 MiB
                    let n = 70 * 1024 + (k as usize * 131_071) % (3 * MIB / 2);
                    put(&dest, ay(n, seed))
                } else {
                    small(&dest, seed)
                };
                let mut m = m;
                m.flags |= NO_REPLY_EXPECTED;
                c.send(m);
            }
            // Keeps the connection until the recipient has everything.
            let _ = c.get_id();
            name
        }));
    }
    let mut next = std::collections::HashMap::<String, u32>::new();
    for _ in 0..SENDERS * EACH {
        let m = next_from_peer(&mut r);
        let from = m.sender.clone().unwrap();
        let k = next.entry(from.clone()).or_insert(0);
        let seed_of = |k: u32, m: &Msg| -> u32 {
            if m.signature == "u" {
                u32::from_le_bytes(m.body[..4].try_into().unwrap())
            } else {
                // Which sender it is comes from the seed; check the bytes.
                let n = m.body.len() - 4;
                (0..SENDERS)
                    .map(|s| s * 1000 + k)
                    .find(|&seed| m.body == ay(n, seed))
                    .unwrap_or(u32::MAX)
            }
        };
        let seed = seed_of(*k, &m);
        assert_ne!(seed, u32::MAX, "message {k} from {from}: body not as sent");
        assert_eq!(seed % 1000, *k, "message from {from} out of order");
        assert_eq!(
            m.signature == "ay",
            (*k).is_multiple_of(2),
            "message {k} from {from}"
        );
        *k += 1;
    }
    for t in threads {
        let name = t.join().unwrap();
        assert_eq!(next.get(&name), Some(&EACH), "everything from {name}");
    }
}

/// A recipient that does not read while a large message is sent to it:
/// everyone else goes on talking through the bus; once it reads, the
/// message arrives whole.
#[test]
fn recipient_that_does_not_read_stalls_nobody_else() {
    let bus = Bus::start();
    let (mut big_sender, mut stalled, dest) = pair(&bus);
    let sender = thread::spawn(move || {
        // Blocks in write once the bus stops taking it (busbar: once the
        // pipe and the sockets are full).
        big_sender.send(put(&dest, ay(8 * MIB, 7)).flags_or(NO_REPLY_EXPECTED));
        big_sender
    });
    thread::sleep(Duration::from_millis(300));
    // Others are unaffected: round trips to the driver and between peers.
    let mut x = Client::connect(&bus);
    let mut y = Client::connect(&bus);
    let y_name = y.unique_name.clone();
    let t0 = Instant::now();
    for i in 0..50u32 {
        assert!(!x.get_id().is_empty());
        x.send(small(&y_name, i));
        let m = next_from_peer(&mut y);
        assert_eq!(m.body[..4], i.to_le_bytes());
        // Large messages between others too.
        x.send(put(&y_name, ay(200 * 1024, i)).flags_or(NO_REPLY_EXPECTED));
        let m = next_from_peer(&mut y);
        assert_same("other large", &m.body, &ay(200 * 1024, i));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "others were slowed down: {:?}",
        t0.elapsed()
    );
    let m = next_from_peer(&mut stalled);
    assert_same("stalled recipient", &m.body, &ay(8 * MIB, 7));
    let mut big_sender = sender.join().unwrap();
    assert!(!big_sender.get_id().is_empty());
}

/// A sender whose large messages pile up at a recipient that does not
/// read is not held back: dbus-daemon reads every message it is sent (up
/// to the recipient's max_outgoing_bytes), so the sender's writes finish
/// and its own next call is answered. Two shapes: more bodies than busbar
/// keeps in pipes for one sender, and bodies larger than their pipes.
fn sender_goes_on_past_a_recipient_that_does_not_read(count: usize, size: usize) {
    let bus = Bus::start();
    let (mut big_sender, mut stalled, dest) = pair(&bus);
    let sender = thread::spawn(move || {
        for i in 0..count {
            big_sender.send(put(&dest, ay(size, i as u32)).flags_or(NO_REPLY_EXPECTED));
        }
        // Answered only once the bus has read every body before it.
        let t0 = Instant::now();
        assert!(!big_sender.get_id().is_empty());
        t0.elapsed()
    });
    let waited = sender.join().expect("the sender's writes and GetId");
    assert!(
        waited < Duration::from_secs(10),
        "the sender's GetId took {waited:?}"
    );
    for i in 0..count {
        let m = next_from_peer(&mut stalled);
        assert_same(&format!("body {i}"), &m.body, &ay(size, i as u32));
    }
}

#[test]
fn many_large_bodies_to_a_recipient_that_does_not_read() {
    sender_goes_on_past_a_recipient_that_does_not_read(24, 300 * 1024);
}

#[test]
fn bodies_larger_than_their_pipes_to_a_recipient_that_does_not_read() {
    sender_goes_on_past_a_recipient_that_does_not_read(3, 12 * MIB);
}

/// A body whose last value is a large byte array after other values
/// (`suay`, `asay`): busbar validates the values before the array and
/// splices the array's contents. It arrives byte-exact, values included.
#[test]
fn large_byte_array_after_other_values_arrives_byte_exact() {
    let bus = Bus::start();
    let (mut a, mut b, b_name) = pair(&bus);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("suay", {
            let mut w = W::new();
            w.str("a name before the bytes").u32(7);
            w.align(4);
            w.buf
        }),
        ("asay", {
            let mut w = W::new();
            w.str_array(&["one", "two", "three"]);
            w.align(4);
            w.buf
        }),
    ];
    for (i, (sig, head)) in cases.iter().enumerate() {
        let mut body = head.clone();
        body.extend_from_slice(&ay(2 * MIB + 3, i as u32));
        a.send(
            MsgBuilder::method_call(0, Some(&b_name), "/org/example/Big", None, "Put")
                .body(sig, body.clone())
                .flags_or(NO_REPLY_EXPECTED),
        );
        let m = next_from_peer(&mut b);
        assert_eq!(m.signature, *sig);
        assert_same(&format!("body {sig}"), &m.body, &body);
    }
    assert!(!a.get_id().is_empty());
}

/// An invalid value before a large byte array (a string that is not
/// UTF-8) is a malformed message: the sender is disconnected, as dbus-daemon
/// does, and the recipient never sees it.
#[test]
fn invalid_value_before_a_large_byte_array_disconnects_the_sender() {
    let bus = Bus::start();
    let mut a = Client::connect(&bus);
    let mut b = Client::connect(&bus);
    long_timeouts(&b);
    let b_name = b.unique_name.clone();
    let mut w = W::new();
    w.str_bytes(b"not \xff utf-8");
    w.align(4);
    let mut body = w.buf;
    body.extend_from_slice(&ay(2 * MIB, 1));
    let m = MsgBuilder::method_call(1, Some(&b_name), "/org/example/Big", None, "Put")
        .body("say", body)
        .flags_or(NO_REPLY_EXPECTED)
        .build();
    write_lenient(&mut a.sock, &m);
    expect_disconnect(&mut a.sock, "invalid string before a large ay");
    // The recipient is still connected and gets the next message, not that one.
    let mut c = Client::connect(&bus);
    c.send(small(&b_name, 5));
    let got = next_from_peer(&mut b);
    assert_eq!(got.member.as_deref(), Some("Small"));
}

/// The sender of a large message hangs up half way through its body. The
/// bus stays up; the recipient never sees a truncated message followed by
/// anything else: either it never sees that message and stays connected
/// (dbus-daemon), or, if part of the body already reached it, it is
/// disconnected (busbar, which cannot take back what it already wrote;
/// see src/broker/splice.rs).
#[test]
fn sender_disconnecting_mid_body() {
    let bus = Bus::start();
    let mut r = Client::connect(&bus);
    let r_name = r.unique_name.clone();
    let mut s = Client::connect(&bus);
    let msg = put(&r_name, ay(4 * MIB, 3)).flags_or(NO_REPLY_EXPECTED);
    let mut msg = msg;
    msg.serial = s.next_serial();
    let bytes = msg.build();
    s.sock.write_all(&bytes[..bytes.len() / 2]).unwrap();
    thread::sleep(Duration::from_millis(200));
    drop(s);
    thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect(&bus);
    c.send(small(&r_name, 42));
    // What the recipient gets: the small message, whole, or a hang-up.
    loop {
        match r.read_msg() {
            Ok(m) if m.sender.as_deref() == Some(DRIVER) => continue,
            Ok(m) => {
                assert_eq!(m.signature, "u", "got {m:?}");
                assert_eq!(m.body, 42u32.to_le_bytes());
                break;
            }
            Err(e) => {
                // A hang-up, not a truncated message waiting for more.
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ),
                    "the recipient waits for the rest of a truncated message: {e}"
                );
                assert!(
                    !is_reference_daemon(),
                    "dbus-daemon disconnected the recipient: {e}"
                );
                break;
            }
        }
    }
    // The bus goes on.
    assert!(!c.get_id().is_empty());
    let mut d = Client::connect(&bus);
    assert!(!d.get_id().is_empty());
}

/// The recipient hangs up while a large message to it is on its way: the
/// message is lost, the sender goes on (its next call is answered).
#[test]
fn recipient_disconnecting_mid_body() {
    let bus = Bus::start();
    let mut r = Client::connect(&bus);
    let r_name = r.unique_name.clone();
    let mut s = Client::connect(&bus);
    long_timeouts(&s);
    let sender = thread::spawn(move || {
        let serial = s.send(put(&r_name, ay(8 * MIB, 5)));
        (s, serial)
    });
    // Take a little of it, then hang up.
    let mut buf = vec![0u8; 100 * 1024];
    let mut got = 0;
    let deadline = Instant::now() + TIMEOUT;
    while got < buf.len() && Instant::now() < deadline {
        match r.sock.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("{e}"),
        }
    }
    drop(r);
    let (mut s, serial) = sender.join().unwrap();
    // The call gets an error (the recipient went away without replying).
    let e = s.wait_reply(serial);
    assert_eq!(e.msg_type, ERROR, "{e:?}");
    assert!(!s.get_id().is_empty());
    // And a fresh large exchange works.
    let mut r2 = Client::connect(&bus);
    long_timeouts(&r2);
    let n2 = r2.unique_name.clone();
    let serial = s.send(put(&n2, ay(2 * MIB, 6)).flags_or(NO_REPLY_EXPECTED));
    let _ = serial;
    let m = next_from_peer(&mut r2);
    assert_same("after", &m.body, &ay(2 * MIB, 6));
}

/// A large `ay` message carrying an fd: the fd arrives with it and works.
#[test]
fn large_message_with_an_fd() {
    let bus = Bus::start();
    let mut r = Client::connect_fds(&bus);
    long_timeouts(&r);
    let r_name = r.unique_name.clone();
    let s = Client::connect_fds(&bus);
    long_timeouts(&s);
    let (pr, pw) = nix::unistd::pipe().unwrap();
    let mut m = put(&r_name, ay(2 * MIB, 9)).field_u32(F_UNIX_FDS, 1);
    m.serial = 77;
    m.flags |= NO_REPLY_EXPECTED;
    let bytes = m.build();
    let sock = s.sock.try_clone().unwrap();
    let raw = pw.as_raw_fd();
    let writer = thread::spawn(move || {
        // The fd goes with the first bytes; the rest is written plainly.
        send_with_fds(&sock, &bytes[..4096], &[raw]).unwrap();
        (&sock).write_all(&bytes[4096..]).unwrap();
        pw
    });
    let got = next_from_peer(&mut r);
    let _pw = writer.join().unwrap();
    assert_eq!(got.serial, 77);
    assert_same("with fd", &got.body, &ay(2 * MIB, 9));
    assert_eq!(got.fds.len(), 1, "fd count");
    let mut f = std::fs::File::from(got.fds.into_iter().next().unwrap());
    f.write_all(b"ok").unwrap();
    drop(f);
    drop(_pw);
    let mut back = [0u8; 2];
    std::fs::File::from(pr).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ok");
    drop(s);
}

/// A large unicast signal while a monitor is attached: the monitor sees it
/// byte-exact, as does its recipient.
#[test]
fn large_signal_seen_by_a_monitor() {
    let bus = Bus::start();
    let mut mon = Client::connect(&bus);
    long_timeouts(&mon);
    mon.become_monitor(&[]);
    let mut r = Client::connect(&bus);
    long_timeouts(&r);
    let r_name = r.unique_name.clone();
    let mut s = Client::connect(&bus);
    long_timeouts(&s);
    let sig = MsgBuilder::signal(0, "/org/example/Big", "org.example.Big", "Blob")
        .field_str(F_DESTINATION, 's', &r_name)
        .body("ay", ay(3 * MIB, 11));
    let sender = thread::spawn(move || {
        s.send(sig);
        s
    });
    let got = next_from_peer(&mut r);
    assert_same("recipient", &got.body, &ay(3 * MIB, 11));
    let s = sender.join().unwrap();
    loop {
        let m = mon.recv();
        if m.member.as_deref() == Some("Blob") {
            assert_eq!(m.sender.as_deref(), Some(s.unique_name.as_str()));
            assert_eq!(m.destination.as_deref(), Some(r_name.as_str()));
            assert_same("monitor", &m.body, &ay(3 * MIB, 11));
            break;
        }
    }
}

/// max_message_size still refuses a large `ay` message (the sender is
/// disconnected), and one under it passes.
#[test]
fn max_message_size_still_refused() {
    let bus = Bus::start_with(r#"<limit name="max_message_size">2000000</limit>"#);
    let mut r = Client::connect(&bus);
    long_timeouts(&r);
    let r_name = r.unique_name.clone();
    let mut ok = Client::connect(&bus);
    long_timeouts(&ok);
    let dest = r_name.clone();
    let t = thread::spawn(move || {
        ok.send(put(&dest, ay(1_900_000, 1)).flags_or(NO_REPLY_EXPECTED));
        ok
    });
    let m = next_from_peer(&mut r);
    assert_same("under the limit", &m.body, &ay(1_900_000, 1));
    t.join().unwrap();
    let mut big = Client::connect(&bus);
    let mut m = put(&r_name, ay(3 * MIB, 2)).flags_or(NO_REPLY_EXPECTED);
    m.serial = big.next_serial();
    write_lenient(&mut big.sock, &m.build());
    expect_disconnect(&mut big.sock, "message over max_message_size");
    // The recipient got nothing from it.
    assert!(r
        .read_msg_within(Duration::from_millis(300))
        .is_none_or(|m| m.sender.as_deref() == Some(DRIVER)));
}

trait FlagsOr {
    fn flags_or(self, f: u8) -> Self;
}

impl FlagsOr for MsgBuilder {
    fn flags_or(mut self, f: u8) -> Self {
        self.flags |= f;
        self
    }
}
