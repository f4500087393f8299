//! Messages built to make the bus work or allocate for a long time, from
//! issue 9: a huge body nested deeply (validation must be linear in the
//! body's size) and fixed headers that announce huge messages and send
//! nothing more (memory must not be reserved before the bytes arrive).

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// Signature `a((((…(y)…))))` with `depth` structs, and a body of about
/// `size` bytes: an array of one-byte structs, 8 bytes apart.
fn nested_array(depth: usize, size: usize) -> (String, Vec<u8>) {
    let sig = format!("a{}y{}", "(".repeat(depth), ")".repeat(depth));
    let n = (size - 8) / 8;
    let len = (n - 1) * 8 + 1;
    let mut body = Vec::with_capacity(8 + len);
    body.extend_from_slice(&(len as u32).to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    body.resize(8 + len, 0);
    for i in 0..n {
        body[8 + i * 8] = 1;
    }
    (sig, body)
}

/// The longest call another client makes while `f` runs.
fn worst_call_while(bus: &Bus, f: impl FnOnce()) -> Duration {
    let mut quiet = Client::connect(bus);
    quiet.get_id();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !s.load(Ordering::SeqCst) {
            let t0 = Instant::now();
            quiet.get_id();
            worst = worst.max(t0.elapsed());
        }
        worst
    });
    std::thread::sleep(Duration::from_millis(50));
    f();
    stop.store(true, Ordering::SeqCst);
    t.join().expect("quiet client")
}

/// Issue 9: a 32 MiB body of type `a((((…(y)…))))` nested 32 deep took
/// busbar 4.4 s of CPU to validate (the signature was re-split for every
/// element), and every other client waited that long.
///
/// dbus-daemon has the same defect (more than 30 s for this message), so
/// against it the test sends a smaller body and checks only that the
/// message is taken and the bus answers; the bound applies to busbar. The
/// bound is generous (a test guards, bench/nesting measures): the issue's
/// target is 250 ms.
#[test]
fn deeply_nested_body_does_not_stall_other_clients() {
    let bus = Bus::start_with(r#"<limit name="max_message_size">67108864</limit>"#);
    let size = if is_reference_daemon() {
        256 * 1024
    } else {
        32 * MIB
    };
    let (sig, body) = nested_array(32, size);
    let mut sender = Client::connect(&bus);
    let mut took = Duration::ZERO;
    let worst = worst_call_while(&bus, || {
        let t0 = Instant::now();
        sender.send(
            MsgBuilder::signal(0, "/org/example", "org.example.Deep", "Nested").body(&sig, body),
        );
        // The bus handles a connection's messages in order: the reply to
        // this call means the big one was validated.
        sender.get_id();
        took = t0.elapsed();
    });
    eprintln!(
        "nested 32 deep, {size} bytes: sent and handled in {took:?}; worst other call {worst:?}"
    );
    assert!(bus_alive(&bus));
    if !is_reference_daemon() {
        assert!(
            worst < Duration::from_millis(1000),
            "another client waited {worst:?} while a deeply nested body was validated"
        );
    }
}

fn bus_alive(bus: &Bus) -> bool {
    let mut c = Client::connect(bus);
    !c.get_id().is_empty()
}

/// Virtual size of a process in bytes, from /proc/PID/status.
fn vm_size(pid: u32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize value");
    kib * 1024
}

/// Issue 9: a 16-byte fixed header announcing 32 MiB made busbar allocate
/// the whole buffer at once; 100 such connections took its virtual size
/// from 5 MB to 3.3 GB (dbus-daemon: +2 MiB). The buffer must grow as the
/// bytes arrive.
#[test]
fn announced_size_is_not_reserved_before_the_bytes_arrive() {
    let bus = Bus::start();
    let mut probe = Client::connect(&bus);
    probe.get_id();
    let before = vm_size(bus.pid());
    let mut conns = Vec::new();
    for serial in 1..=100u32 {
        let mut c = Client::connect(&bus);
        // Little endian method call, version 1, a body just under the
        // default 32 MiB maximum, 64 bytes of header fields, none sent.
        let mut fixed = vec![b'l', METHOD_CALL, 0, 1];
        fixed.extend_from_slice(&((32 * MIB - 4096) as u32).to_le_bytes());
        fixed.extend_from_slice(&(serial + 100).to_le_bytes());
        fixed.extend_from_slice(&64u32.to_le_bytes());
        c.send_bytes(&fixed);
        conns.push(c);
    }
    // Every connection has been read once these round trips are done.
    probe.get_id();
    std::thread::sleep(Duration::from_millis(300));
    probe.get_id();
    let after = vm_size(bus.pid());
    let grown = after.saturating_sub(before);
    eprintln!("virtual size {} MiB -> {} MiB", before / MIB, after / MIB);
    assert!(
        grown <= 64 * MIB,
        "100 announced 32 MiB messages grew the daemon by {} MiB",
        grown / MIB
    );
    assert!(bus_alive(&bus));
    drop(conns);
}
