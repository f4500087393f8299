//! Scenarios about fairness and idle cost rather than throughput.
//!
//! * `hostile`: 4 clients broadcast 4 KiB signals as fast as they can, 20 peers send garbage
//!   and reconnect, one subscriber (match rule on those signals) never reads, 500 connections
//!   sit idle; meanwhile a quiet client makes sequential `GetId` calls. It reports the quiet
//!   client's round-trip p50/p99, how many calls were answered, and (in `run`) the daemon's
//!   peak RSS and whether it is still alive.
//! * `getid` / `getid-idle`: one client makes sequential `GetId` calls with no other
//!   connection, or with `--idle` (4000) idle connections; the daemon CPU per call of the two
//!   compared says whether a quiet bus costs anything per connection.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::wire::{
    body_ay, body_s, header, patch_u32, Conn, BUS_NAME, BUS_PATH, F, T_CALL, T_ERROR, T_RETURN,
    T_SIGNAL,
};
use super::{connect, daemon_cpu, Opts, Outcome, Shared};

const FLOOD_IFACE: &str = "org.example.Hostile";
const FLOOD_MATCH: &str = "type='signal',interface='org.example.Hostile'";

/// Raises this process's fd limit to its hard limit (idle connections need one fd each).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: r holds a limit no higher than the hard limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

/// Opens `n` connections that say Hello and then never send or read anything.
fn open_idle(o: &Opts, sh: &Shared, n: usize) -> io::Result<Vec<UnixStream>> {
    raise_nofile();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let c = connect(o, sh)
            .map_err(|e| io::Error::new(e.kind(), format!("idle connection {i}: {e}")))?;
        v.push(c.into_stream());
    }
    Ok(v)
}

/// Sequential GetId calls: returns each round trip in ns. Stops early (with the error) when a
/// call is not answered before the scenario deadline.
fn getid_calls(c: &mut Conn, n: u64, lat: &mut Vec<u64>) -> io::Result<()> {
    let tmpl = header(
        T_CALL,
        0,
        0,
        &[
            F::Path(BUS_PATH),
            F::Interface(BUS_NAME),
            F::Member("GetId"),
            F::Destination(BUS_NAME),
        ],
        0,
    );
    for _ in 0..n {
        let serial = c.next_serial();
        c.wbuf.extend_from_slice(&tmpl);
        patch_u32(&mut c.wbuf, 8, serial);
        let t = Instant::now();
        c.flush()?;
        let mut done = false;
        while !done {
            c.poll(|m, _| {
                if (m.typ == T_RETURN || m.typ == T_ERROR) && m.reply_serial == serial {
                    if m.typ == T_ERROR {
                        return Err(io::Error::other(format!(
                            "GetId failed: {}: {}",
                            m.error_name,
                            m.body_str()
                        )));
                    }
                    done = true;
                }
                Ok(())
            })?;
        }
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(())
}

fn setup_failed(expected: u64, e: io::Error) -> Outcome {
    Outcome {
        routed: 0,
        expected,
        wall: Duration::ZERO,
        error: Some(format!("setup: {e}")),
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    }
}

/// `getid` / `getid-idle`: daemon CPU per sequential GetId call, with `o.idle` idle
/// connections open. Routed messages = calls answered (so cpu ns/msg is per call).
pub fn getid(o: &Opts) -> Outcome {
    let abort = Arc::new(AtomicBool::new(false));
    let sh: Shared = (Instant::now() + o.timeout, abort);
    let idle = match open_idle(o, &sh, o.idle) {
        Ok(v) => v,
        Err(e) => return setup_failed(o.count, e),
    };
    let mut c = match connect(o, &sh) {
        Ok(c) => c,
        Err(e) => return setup_failed(o.count, e),
    };
    // Warm up (page in the daemon's paths, settle the idle connections' setup).
    let mut lat = Vec::with_capacity(o.count as usize);
    if let Err(e) = getid_calls(&mut c, 200, &mut lat) {
        return setup_failed(o.count, e);
    }
    lat.clear();
    let cpu0 = daemon_cpu(o.pid);
    let t0 = Instant::now();
    let r = getid_calls(&mut c, o.count, &mut lat);
    let wall = t0.elapsed();
    let cpu1 = daemon_cpu(o.pid);
    drop(idle);
    Outcome {
        routed: lat.len() as u64,
        expected: o.count,
        wall,
        error: r.err().map(|e| format!("quiet client: {e}")),
        lat_ns: lat,
        extra: vec![("idle", o.idle.to_string())],
        cpu: cpu0.zip(cpu1),
    }
}

/// One flooder: signals of `size` body bytes, as fast as the daemon takes them, until `stop`.
/// A daemon may disconnect a flooder (dbus-broker does when its quota is exceeded); it then
/// reconnects and goes on. Returns the number of reconnections.
fn flood(o: Opts, sh: Shared, size: usize, sent: Arc<AtomicU64>) -> io::Result<u64> {
    let body = body_ay(size.saturating_sub(4));
    let tmpl = header(
        T_SIGNAL,
        0,
        0,
        &[
            F::Path("/org/example/Hostile"),
            F::Interface(FLOOD_IFACE),
            F::Member("Flood"),
            F::Signature("ay"),
        ],
        body.len(),
    );
    let mut reconnects = 0;
    let mut c = connect(&o, &sh)?;
    loop {
        for _ in 0..8 {
            let serial = c.next_serial();
            let off = c.wbuf.len();
            c.wbuf.extend_from_slice(&tmpl);
            patch_u32(&mut c.wbuf, off + 8, serial);
            c.wbuf.extend_from_slice(&body);
        }
        match c.check().and_then(|()| c.flush()) {
            Ok(()) => {
                sent.fetch_add(8, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(reconnects),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                reconnects += 1;
                c = connect(&o, &sh)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads until the daemon closes `s` (or 2 s pass, or `stop`); true if it closed.
fn wait_closed(s: &mut UnixStream, stop: &AtomicBool) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let until = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 4096];
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// One garbage peer: alternately sends bytes that are not SASL at all, and a message with a
/// broken header after a proper SASL + Hello; waits for the daemon to hang up; reconnects.
/// Counts (cycles, connections the daemon did not close within 2 s).
fn garbage(
    o: Opts,
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    lingering: Arc<AtomicU64>,
) -> io::Result<()> {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stream = if i.is_multiple_of(2) {
            let mut s = match UnixStream::connect(&o.path) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Backlog full: the daemon is behind on accepting.
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Not the nul credentials byte, not a SASL command.
            let _ = s.write_all(b"\xffGARBAGE \x01\x02\x03 not sasl at all\r\n\r\n");
            Some(s)
        } else {
            let sh: Shared = (Instant::now() + Duration::from_secs(5), stop.clone());
            match connect(&o, &sh) {
                Ok(c) => {
                    let mut s = c.into_stream();
                    // Endianness byte 'X': no daemon accepts this header.
                    let _ = s.write_all(
                        b"X\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00garbage!",
                    );
                    Some(s)
                }
                Err(_) if stop.load(Ordering::Relaxed) => None,
                // Not answered in time: the daemon is overloaded, which the quiet
                // client's figures show; keep up the pressure.
                Err(_) => {
                    lingering.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        };
        if let Some(mut s) = stream {
            if !wait_closed(&mut s, &stop) && !stop.load(Ordering::Relaxed) {
                lingering.fetch_add(1, Ordering::Relaxed);
            }
            cycles.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    Ok(())
}

/// `hostile`: see the module comment. Routed messages = quiet calls answered.
pub fn hostile(o: &Opts) -> Outcome {
    let abort = Arc::new(AtomicBool::new(false));
    let sh: Shared = (Instant::now() + o.timeout, abort.clone());
    let idle = match open_idle(o, &sh, o.idle) {
        Ok(v) => v,
        Err(e) => return setup_failed(o.count, e),
    };
    // The subscriber asks for the flood and never reads a byte of it.
    let subscriber = connect(o, &sh).and_then(|mut c| {
        c.call(
            BUS_NAME,
            BUS_PATH,
            BUS_NAME,
            "AddMatch",
            "s",
            &body_s(FLOOD_MATCH),
        )?;
        Ok(c)
    });
    let subscriber = match subscriber {
        Ok(c) => c,
        Err(e) => return setup_failed(o.count, e),
    };
    let mut quiet = match connect(o, &sh) {
        Ok(c) => c,
        Err(e) => return setup_failed(o.count, e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let cycles = Arc::new(AtomicU64::new(0));
    let lingering = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    let reconnects = Arc::new(AtomicU64::new(0));
    for _ in 0..o.flooders {
        let fsh: Shared = (sh.0, stop.clone());
        let (o2, size, sent, rc) = (o.clone(), o.size, flooded.clone(), reconnects.clone());
        load.push(thread::spawn(move || match flood(o2, fsh, size, sent) {
            Ok(n) => {
                rc.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(format!("flooder: {e}")),
        }));
    }
    for _ in 0..o.garbage {
        let (o2, st, cy, li) = (o.clone(), stop.clone(), cycles.clone(), lingering.clone());
        load.push(thread::spawn(move || {
            garbage(o2, st, cy, li).map_err(|e| format!("garbage peer: {e}"))
        }));
    }
    // Let the subscriber's queue fill and the flood reach its steady state.
    thread::sleep(Duration::from_secs(1));
    let mut lat = Vec::with_capacity(o.count as usize);
    let cpu0 = daemon_cpu(o.pid);
    let t0 = Instant::now();
    let r = getid_calls(&mut quiet, o.count, &mut lat);
    let wall = t0.elapsed();
    let cpu1 = daemon_cpu(o.pid);
    let (flood_n, cycles_n) = (
        flooded.load(Ordering::Relaxed),
        cycles.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    let mut error = r.err().map(|e| format!("quiet client: {e}"));
    for h in load {
        if let Err(e) = h.join().expect("load thread panicked") {
            error.get_or_insert(e);
        }
    }
    drop((idle, subscriber));
    Outcome {
        routed: lat.len() as u64,
        expected: o.count,
        wall,
        error,
        lat_ns: lat,
        extra: vec![
            ("idle", o.idle.to_string()),
            ("flooders", o.flooders.to_string()),
            ("garbage_peers", o.garbage.to_string()),
            ("flood_msgs", flood_n.to_string()),
            ("garbage_cycles", cycles_n.to_string()),
            (
                "garbage_lingering",
                lingering.load(Ordering::Relaxed).to_string(),
            ),
            (
                "flooder_reconnects",
                reconnects.load(Ordering::Relaxed).to_string(),
            ),
        ],
        cpu: cpu0.zip(cpu1),
    }
}
