//! loadgen: end-to-end load generator for D-Bus message bus daemons.
//!
//!   loadgen run --address unix:path=/tmp/x/bus --pid PID --scenario unicast [options]
//!   loadgen report target/bench/results.tsv [--json out.json]
//!
//! `run` prints one `RESULT` line of tab-separated key=value pairs on stdout (plus a human
//! summary on stderr) and exits non-zero when the scenario failed (timeout, lost message, error).

mod hostile;
mod wire;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wire::{
    body_ay, body_s, header, patch_u32, Conn, BUS_NAME, BUS_PATH, F, T_CALL, T_ERROR, T_RETURN,
    T_SIGNAL,
};

const IFACE: &str = "org.example.Bench";
const OBJ: &str = "/org/example/Bench";
const MATCH: &str = "type='signal',interface='org.example.Bench'";

#[derive(Clone)]
struct Opts {
    path: String,
    pid: Option<u32>,
    scenario: String,
    label: String,
    pairs: usize,
    window: u64,
    size: usize,
    count: u64,
    subscribers: usize,
    rules: usize,
    timeout: Duration,
    quick: bool,
    /// Idle connections (getid-idle, hostile).
    idle: usize,
    /// Flooding connections (hostile).
    flooders: usize,
    /// Garbage-sending, reconnecting peers (hostile).
    garbage: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage:
  loadgen run --address ADDR --scenario unicast|pingpong|broadcast|large|fanout-sparse|monitor
              [--pid DAEMON_PID] [--label NAME] [--count N] [--pairs K] [--window W]
              [--size BYTES] [--subscribers N] [--rules R] [--timeout SECS] [--quick]
  loadgen report RESULTS.tsv [--json OUT.json]

Scenario defaults (full / --quick):
  unicast    K=2 caller/server pairs, window 64, 64-byte ay body, 300000 / 60000 calls
  pingpong   1 pair, window 1 (strict ping-pong), 64-byte body, 50000 / 10000 calls
  broadcast  1 sender, 8 subscribers, window 128, 64-byte ay body, 100000 / 20000 signals
  large      1 pair, window 4, 1 MiB ay body, 1000 / 200 calls
  fanout-sparse  1 sender, N=200 subscribers with R=5 rules each (interface+member, distinct
             interfaces org.example.Fan.I0..I199); each signal matches R subscribers;
             64-byte body, 100000 / 20000 signals, window 128 signals
  monitor    broadcast plus one BecomeMonitor connection that must see every signal
Routed messages: unicast/pingpong/large count call + reply (2 per call); broadcast and monitor
count one per delivered subscriber copy (signals x subscribers; the monitor's copies are not
counted); fanout-sparse counts signals x R."
    );
    std::process::exit(2)
}

fn parse_run_args(args: &[String]) -> Opts {
    let mut o = Opts {
        path: String::new(),
        pid: None,
        scenario: String::new(),
        label: String::from("daemon"),
        pairs: 0,
        window: 0,
        size: usize::MAX,
        count: 0,
        subscribers: 0,
        rules: 5,
        timeout: Duration::from_secs(60),
        quick: false,
        idle: usize::MAX,
        flooders: 4,
        garbage: 20,
    };
    let mut i = 0;
    let val = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| usage())
    };
    let num = |s: String| -> u64 { s.parse().unwrap_or_else(|_| usage()) };
    while i < args.len() {
        let a = args[i].clone();
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let v = |i: &mut usize| inline.clone().unwrap_or_else(|| val(i));
        match k.as_str() {
            "--address" => {
                let s = v(&mut i);
                o.path = match s.strip_prefix("unix:") {
                    Some(rest) => rest
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("path="))
                        .unwrap_or_else(|| {
                            eprintln!("loadgen: only unix:path= addresses are supported: {s}");
                            std::process::exit(2)
                        })
                        .to_string(),
                    None => s,
                }
            }
            "--pid" => o.pid = Some(num(v(&mut i)) as u32),
            "--scenario" => o.scenario = v(&mut i),
            "--label" => o.label = v(&mut i),
            "--count" => o.count = num(v(&mut i)),
            "--pairs" => o.pairs = num(v(&mut i)) as usize,
            "--window" => o.window = num(v(&mut i)),
            "--size" => o.size = num(v(&mut i)) as usize,
            "--subscribers" => o.subscribers = num(v(&mut i)) as usize,
            "--rules" => o.rules = (num(v(&mut i)) as usize).max(1),
            "--timeout" => o.timeout = Duration::from_secs(num(v(&mut i))),
            "--quick" => o.quick = true,
            "--idle" => o.idle = num(v(&mut i)) as usize,
            "--flooders" => o.flooders = num(v(&mut i)) as usize,
            "--garbage" => o.garbage = num(v(&mut i)) as usize,
            _ => usage(),
        }
        i += 1;
    }
    if o.path.is_empty() || o.scenario.is_empty() {
        usage()
    }
    let q = o.quick;
    let (pairs, window, size, count, subs) = match o.scenario.as_str() {
        "unicast" => (2, 64, 64, if q { 60_000 } else { 300_000 }, 0),
        "pingpong" => (1, 1, 64, if q { 10_000 } else { 50_000 }, 0),
        "broadcast" | "monitor" => (0, 128, 64, if q { 20_000 } else { 100_000 }, 8),
        "fanout-sparse" => (0, 128, 64, if q { 20_000 } else { 100_000 }, 200),
        "large" => (1, 4, 1 << 20, if q { 200 } else { 1_000 }, 0),
        // count = sequential GetId calls; size = flood signal body bytes.
        "getid" | "getid-idle" => (0, 1, 0, if q { 4_000 } else { 20_000 }, 0),
        "hostile" => (0, 1, 4096, if q { 1_000 } else { 2_000 }, 0),
        _ => usage(),
    };
    if o.idle == usize::MAX {
        o.idle = match o.scenario.as_str() {
            "getid-idle" => 4000,
            "hostile" => 500,
            _ => 0,
        };
    }
    if o.pairs == 0 {
        o.pairs = pairs
    }
    if o.window == 0 {
        o.window = window
    }
    if o.size == usize::MAX {
        o.size = size
    }
    if o.count == 0 && !args.iter().any(|a| a.starts_with("--count")) {
        o.count = count
    }
    if o.subscribers == 0 {
        o.subscribers = subs
    }
    if o.scenario == "fanout-sparse" && !o.subscribers.is_multiple_of(o.rules) {
        eprintln!("loadgen: fanout-sparse needs --subscribers divisible by --rules");
        std::process::exit(2)
    }
    o
}

/// Daemon CPU time: (utime+stime clock ticks from /proc/PID/stat, sum of per-thread on-CPU ns
/// from /proc/PID/task/*/schedstat).
fn daemon_cpu(pid: Option<u32>) -> Option<(u64, u64)> {
    let pid = pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "comm)", field 3 (state) is f[0]; utime is field 14, stime field 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let mut sched = 0u64;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                sched += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some((ticks, sched))
}

/// The daemon's peak resident set (VmHWM, KiB) and whether it is still alive (not gone, not
/// a zombie).
fn daemon_rss_alive(pid: Option<u32>) -> (u64, bool) {
    let Some(pid) = pid else { return (0, true) };
    let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, false);
    };
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or("")
    };
    let rss = field("VmHWM:")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(0);
    (rss, !field("State:").starts_with('Z'))
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

struct Outcome {
    routed: u64,
    expected: u64,
    wall: Duration,
    error: Option<String>,
    lat_ns: Vec<u64>,
    /// Scenario-specific figures for the RESULT line.
    extra: Vec<(&'static str, String)>,
    /// Daemon CPU at the start and end of the measured phase, when the scenario measures a
    /// phase of its own (otherwise the whole scenario is measured).
    cpu: Option<((u64, u64), (u64, u64))>,
}

type Shared = (Instant, Arc<AtomicBool>);

fn connect(o: &Opts, sh: &Shared) -> io::Result<Conn> {
    Conn::connect(&o.path, sh.0, sh.1.clone())
}

/// Runs `body` on a thread; on error raises the abort flag so every other thread stops too.
fn spawn<T: Send + 'static>(
    abort: &Arc<AtomicBool>,
    body: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> thread::JoinHandle<io::Result<T>> {
    let abort = abort.clone();
    thread::spawn(move || {
        let r = body();
        if r.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        r
    })
}

/// Server side of a pair: answers every `Echo` call with an empty method return.
fn serve(mut c: Conn, n: u64, prog: Arc<AtomicU64>) -> io::Result<u64> {
    let mut done = 0u64;
    let mut serial = c.serial;
    // Reply template for the last caller seen: serial at 8, reply serial at 20.
    let mut tmpl: (String, Vec<u8>) = (String::new(), Vec::new());
    while done < n {
        c.poll(|m, out| {
            if m.typ == T_CALL && m.member == "Echo" {
                if tmpl.0 != m.sender {
                    tmpl = (
                        m.sender.to_string(),
                        header(
                            T_RETURN,
                            0,
                            0,
                            &[F::ReplySerial(0), F::Destination(m.sender)],
                            0,
                        ),
                    );
                }
                serial = serial.wrapping_add(1).max(1);
                let off = out.len();
                out.extend_from_slice(&tmpl.1);
                patch_u32(out, off + 8, serial);
                patch_u32(out, off + 20, m.serial);
                done += 1;
            }
            Ok(())
        })?;
        prog.store(done, Ordering::Relaxed);
        c.flush()?;
    }
    Ok(done)
}

/// Caller side: keeps up to `window` calls in flight; checks every reply arrives, in order.
fn caller(
    mut c: Conn,
    n: u64,
    dest: String,
    window: u64,
    size: usize,
    prog: Arc<AtomicU64>,
) -> io::Result<(u64, Vec<u64>)> {
    let body = body_ay(size);
    let tmpl = header(
        T_CALL,
        0,
        0,
        &[
            F::Path(OBJ),
            F::Interface(IFACE),
            F::Member("Echo"),
            F::Destination(&dest),
            F::Signature("ay"),
        ],
        body.len(),
    );
    let big = body.len() > 64 << 10;
    let first = c.serial + 1;
    let (mut sent, mut recvd) = (0u64, 0u64);
    let lat = window == 1;
    let mut lat_ns = Vec::with_capacity(if lat { n as usize } else { 0 });
    let mut t_send = Instant::now();
    while recvd < n {
        while sent < n && sent - recvd < window {
            let serial = c.next_serial();
            let off = c.wbuf.len();
            c.wbuf.extend_from_slice(&tmpl);
            patch_u32(&mut c.wbuf, off + 8, serial);
            if big {
                c.flush()?;
                c.write_raw(&body)?;
            } else {
                c.wbuf.extend_from_slice(&body);
            }
            sent += 1;
        }
        if lat {
            t_send = Instant::now();
        }
        c.flush()?;
        c.poll(|m, _| {
            if (m.typ == T_RETURN || m.typ == T_ERROR) && m.reply_serial >= first {
                if m.typ == T_ERROR {
                    return Err(io::Error::other(format!(
                        "call serial {} got error {}: {}",
                        m.reply_serial,
                        m.error_name,
                        m.body_str()
                    )));
                }
                let want = first.wrapping_add(recvd as u32);
                if m.reply_serial != want {
                    return Err(io::Error::other(format!(
                        "reply for serial {} arrived while waiting for {} (lost or reordered)",
                        m.reply_serial, want
                    )));
                }
                recvd += 1;
                if lat {
                    lat_ns.push(t_send.elapsed().as_nanos() as u64);
                }
            }
            Ok(())
        })?;
        prog.store(recvd, Ordering::Relaxed);
    }
    Ok((recvd, lat_ns))
}

fn unicast(o: &Opts) -> Outcome {
    let abort = Arc::new(AtomicBool::new(false));
    let sh: Shared = (Instant::now() + o.timeout, abort.clone());
    let expected = 2 * o.count;
    let fail = |e: io::Error| Outcome {
        routed: 0,
        expected,
        wall: Duration::ZERO,
        error: Some(format!("setup: {e}")),
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    };
    let mut pairs = Vec::new();
    for _ in 0..o.pairs {
        match (connect(o, &sh), connect(o, &sh)) {
            (Ok(s), Ok(c)) => pairs.push((s, c)),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        }
    }
    // Per-thread progress, so that a failed run still reports how much got through.
    let progress: Vec<Arc<AtomicU64>> = (0..2 * pairs.len())
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (i, (s, c)) in pairs.into_iter().enumerate() {
        let (ps, pc) = (progress[2 * i].clone(), progress[2 * i + 1].clone());
        let n = o.count / o.pairs as u64 + u64::from((i as u64) < o.count % o.pairs as u64);
        let dest = s.unique.clone();
        let (window, size) = (o.window, o.size);
        handles.push((
            spawn(&abort, move || serve(s, n, ps)),
            spawn(&abort, move || caller(c, n, dest, window, size, pc)),
        ));
    }
    let (mut routed, mut error, mut lat_ns) = (0u64, None, Vec::new());
    for (hs, hc) in handles {
        match hc.join().expect("caller thread panicked") {
            Ok((_, l)) => lat_ns.extend(l),
            Err(e) => {
                note_err(&mut error, format!("caller: {e}"));
            }
        }
        match hs.join().expect("server thread panicked") {
            Ok(_) => {}
            Err(e) => {
                note_err(&mut error, format!("server: {e}"));
            }
        }
    }
    routed += progress
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .sum::<u64>();
    Outcome {
        routed,
        expected,
        wall: t0.elapsed(),
        error,
        lat_ns,
        extra: vec![],
        cpu: None,
    }
}

fn broadcast(o: &Opts, monitor: bool) -> Outcome {
    let abort = Arc::new(AtomicBool::new(false));
    let sh: Shared = (Instant::now() + o.timeout, abort.clone());
    let expected = o.count * o.subscribers as u64;
    let fail = |e: io::Error| Outcome {
        routed: 0,
        expected,
        wall: Duration::ZERO,
        error: Some(format!("setup: {e}")),
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    };
    let mut sender = match connect(o, &sh) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut subs = Vec::new();
    for _ in 0..o.subscribers {
        let r = connect(o, &sh).and_then(|mut c| {
            c.call(
                BUS_NAME,
                BUS_PATH,
                BUS_NAME,
                "AddMatch",
                "s",
                &body_s(MATCH),
            )?;
            Ok(c)
        });
        match r {
            Ok(c) => subs.push(c),
            Err(e) => return fail(e),
        }
    }
    if monitor {
        // The monitor is one more reader (counted last), which must see every signal.
        let r = connect(o, &sh).and_then(|mut c| {
            c.call(
                BUS_NAME,
                BUS_PATH,
                "org.freedesktop.DBus.Monitoring",
                "BecomeMonitor",
                "asu",
                &[0u8; 8],
            )?;
            Ok(c)
        });
        match r {
            Ok(c) => subs.push(c),
            Err(e) => return fail(e),
        }
    }
    let n_subs = o.subscribers;
    // Flow control: the sender keeps at most `window` signals ahead of the slowest subscriber.
    let counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..subs.len()).map(|_| AtomicU64::new(0)).collect());
    let cv = Arc::new((Mutex::new(()), Condvar::new()));
    let n = o.count;
    let first = sender.serial + 1;
    let sender_name = sender.unique.clone();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (i, mut c) in subs.into_iter().enumerate() {
        let (counts, cv, sender_name) = (counts.clone(), cv.clone(), sender_name.clone());
        handles.push(spawn(&abort, move || {
            let mut got = 0u64;
            while got < n {
                c.poll(|m, _| {
                    if m.typ == T_SIGNAL && m.interface == IFACE && m.member == "Tick" {
                        let want = first.wrapping_add(got as u32);
                        if m.sender != sender_name || m.serial != want {
                            return Err(io::Error::other(format!(
                                "signal serial {} from {} while waiting for {} from {} (lost or reordered)",
                                m.serial, m.sender, want, sender_name
                            )));
                        }
                        got += 1;
                    }
                    Ok(())
                })?;
                counts[i].store(got, Ordering::Release);
                drop(cv.0.lock().unwrap());
                cv.1.notify_all();
            }
            Ok(got)
        }));
    }
    let (window, size) = (o.window, o.size);
    let counts2 = counts.clone();
    let hsend = spawn(&abort, move || {
        let body = body_ay(size);
        let tmpl = header(
            T_SIGNAL,
            0,
            0,
            &[
                F::Path(OBJ),
                F::Interface(IFACE),
                F::Member("Tick"),
                F::Signature("ay"),
            ],
            body.len(),
        );
        let min = || {
            counts2
                .iter()
                .map(|c| c.load(Ordering::Acquire))
                .min()
                .unwrap_or(u64::MAX)
        };
        let mut sent = 0u64;
        while sent < n {
            let mut lo = min();
            if sent.saturating_sub(lo) >= window {
                let mut g = cv.0.lock().unwrap();
                loop {
                    lo = min();
                    if sent.saturating_sub(lo) < window {
                        break;
                    }
                    sender.check()?;
                    g = cv.1.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
                }
            }
            let k = (window - sent.saturating_sub(lo)).min(n - sent);
            for _ in 0..k {
                let serial = sender.next_serial();
                let off = sender.wbuf.len();
                sender.wbuf.extend_from_slice(&tmpl);
                patch_u32(&mut sender.wbuf, off + 8, serial);
                sender.wbuf.extend_from_slice(&body);
            }
            sent += k;
            sender.flush()?;
        }
        Ok(sent)
    });
    let (mut routed, mut error) = (0u64, None);
    for h in handles {
        match h.join().expect("subscriber thread panicked") {
            Ok(_) => {}
            Err(e) => {
                note_err(&mut error, format!("subscriber: {e}"));
            }
        }
    }
    if let Err(e) = hsend.join().expect("sender thread panicked") {
        note_err(&mut error, format!("sender: {e}"));
    }
    routed += counts
        .iter()
        .take(n_subs)
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>();
    if error.is_none() && monitor && counts[n_subs].load(Ordering::Relaxed) != n {
        error = Some(format!(
            "monitor saw {} of {n} signals",
            counts[n_subs].load(Ordering::Relaxed)
        ));
    }
    if error.is_none() && o.subscribers == 0 {
        error = Some("no subscribers".into());
    }
    Outcome {
        routed,
        expected,
        wall: t0.elapsed(),
        error,
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    }
}

/// fanout-sparse: N subscribers, each with R rules `type='signal',interface='org.example.Fan.I<j>',
/// member='Changed'` on distinct interfaces: subscriber i takes j = i + k*N/R (k < R). Signal s
/// goes out on interface I<s mod N>, so it matches the R subscribers with i = s (mod N/R), and
/// subscriber i sees signals i mod N/R, then every (N/R)th one. One thread reads every
/// subscriber through epoll and checks that order; the sender keeps at most `window` signals
/// (window x R copies) in flight.
fn fanout_sparse(o: &Opts) -> Outcome {
    let abort = Arc::new(AtomicBool::new(false));
    let sh: Shared = (Instant::now() + o.timeout, abort.clone());
    let (n_subs, r) = (o.subscribers, o.rules);
    let stride = (n_subs / r) as u64;
    let expected = o.count * r as u64;
    let fail = |e: io::Error| Outcome {
        routed: 0,
        expected,
        wall: Duration::ZERO,
        error: Some(format!("setup: {e}")),
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    };
    let iface = |j: usize| format!("org.example.Fan.I{j}");
    let mut sender = match connect(o, &sh) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut subs = Vec::new();
    for i in 0..n_subs {
        let r = connect(o, &sh).and_then(|mut c| {
            for k in 0..r {
                let j = (i + k * stride as usize) % n_subs;
                let rule = format!("type='signal',interface='{}',member='Changed'", iface(j));
                c.call(
                    BUS_NAME,
                    BUS_PATH,
                    BUS_NAME,
                    "AddMatch",
                    "s",
                    &body_s(&rule),
                )?;
            }
            Ok(c)
        });
        match r {
            Ok(c) => subs.push(c),
            Err(e) => return fail(e),
        }
    }
    let received = Arc::new(AtomicU64::new(0));
    let n = o.count;
    let first = sender.serial + 1;
    let sender_name = sender.unique.clone();
    let t0 = Instant::now();
    let recv2 = received.clone();
    let abort2 = abort.clone();
    let hrecv = spawn(&abort, move || {
        // SAFETY: epoll_create1 has no preconditions; the fd is closed below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, c) in subs.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: ep and c.fd() are open fds; ev is a valid event.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.fd(), &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Next expected signal index per subscriber.
        let mut next: Vec<u64> = (0..n_subs as u64).map(|i| i % stride).collect();
        let mut got = 0u64;
        let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let res = (|| {
            while got < expected {
                // SAFETY: evs has room for evs.len() events.
                let k = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, 100) };
                if k < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if k == 0 {
                    if abort2.load(Ordering::Relaxed) {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "aborted (another connection failed)",
                        ));
                    }
                    subs[0].check()?;
                }
                for ev in &evs[..k as usize] {
                    let i = ev.u64 as usize;
                    let nx = &mut next[i];
                    subs[i].poll(|m, _| {
                        if m.typ == T_SIGNAL && m.member == "Changed" {
                            let want = first.wrapping_add(*nx as u32);
                            if m.sender != sender_name || m.serial != want {
                                return Err(io::Error::other(format!(
                                    "subscriber {i}: signal serial {} from {} while waiting for {} from {} (lost, extra or reordered)",
                                    m.serial, m.sender, want, sender_name
                                )));
                            }
                            *nx += stride;
                            got += 1;
                        }
                        Ok(())
                    })?;
                }
                recv2.store(got, Ordering::Release);
            }
            Ok(got)
        })();
        // SAFETY: ep is our epoll fd.
        unsafe { libc::close(ep) };
        res
    });
    // `window` signals in flight, i.e. window x R copies.
    let window = o.window * r as u64;
    let size = o.size;
    let recv3 = received.clone();
    let hsend = spawn(&abort, move || {
        let body = body_ay(size);
        let tmpls: Vec<Vec<u8>> = (0..n_subs)
            .map(|j| {
                let i = iface(j);
                header(
                    T_SIGNAL,
                    0,
                    0,
                    &[
                        F::Path(OBJ),
                        F::Interface(&i),
                        F::Member("Changed"),
                        F::Signature("ay"),
                    ],
                    body.len(),
                )
            })
            .collect();
        let mut sent = 0u64;
        while sent < n {
            // Copies in flight, by the receiver's count.
            let mut lo = recv3.load(Ordering::Acquire);
            while (sent * r as u64).saturating_sub(lo) + r as u64 > window {
                sender.check()?;
                thread::sleep(Duration::from_micros(50));
                lo = recv3.load(Ordering::Acquire);
            }
            let room = (window - (sent * r as u64).saturating_sub(lo)) / r as u64;
            let k = room.clamp(1, n - sent);
            for s in sent..sent + k {
                let serial = sender.next_serial();
                let off = sender.wbuf.len();
                sender
                    .wbuf
                    .extend_from_slice(&tmpls[(s % n_subs as u64) as usize]);
                patch_u32(&mut sender.wbuf, off + 8, serial);
                sender.wbuf.extend_from_slice(&body);
            }
            sent += k;
            sender.flush()?;
        }
        Ok(sent)
    });
    let mut error = None;
    if let Err(e) = hrecv.join().expect("receiver thread panicked") {
        note_err(&mut error, format!("subscriber: {e}"));
    }
    if let Err(e) = hsend.join().expect("sender thread panicked") {
        note_err(&mut error, format!("sender: {e}"));
    }
    let routed = received.load(Ordering::Relaxed);
    Outcome {
        routed,
        expected,
        wall: t0.elapsed(),
        error,
        lat_ns: vec![],
        extra: vec![],
        cpu: None,
    }
}

/// Keeps the root cause: a thread that stopped because another failed ("aborted") is reported
/// only when nothing better is known.
fn note_err(slot: &mut Option<String>, e: String) {
    match slot {
        Some(old) if !old.contains("aborted") => {}
        Some(_) if e.contains("aborted") => {}
        _ => *slot = Some(e),
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn run(args: &[String]) -> i32 {
    let o = parse_run_args(args);
    let cpu0 = daemon_cpu(o.pid);
    let out = match o.scenario.as_str() {
        "broadcast" => broadcast(&o, false),
        "monitor" => broadcast(&o, true),
        "fanout-sparse" => fanout_sparse(&o),
        "getid" | "getid-idle" => hostile::getid(&o),
        "hostile" => hostile::hostile(&o),
        _ => unicast(&o),
    };
    let cpu1 = daemon_cpu(o.pid);
    let (cpu0, cpu1) = match out.cpu {
        Some((a, b)) => (Some(a), Some(b)),
        None => (cpu0, cpu1),
    };
    let (rss_kib, alive) = daemon_rss_alive(o.pid);
    let tck = clk_tck();
    let (cpu_ns, sched_ns) = match (cpu0, cpu1) {
        (Some(a), Some(b)) => ((b.0 - a.0) * 1_000_000_000 / tck, b.1.saturating_sub(a.1)),
        _ => (0, 0),
    };
    let mut lat = out.lat_ns.clone();
    lat.sort_unstable();
    let ok = out.error.is_none() && out.routed == out.expected && alive;
    let status = if ok {
        "ok".to_string()
    } else if !alive {
        "CRASH".into()
    } else if let Some(e) = &out.error {
        if e.contains("deadline") {
            "TIMEOUT".into()
        } else {
            "FAIL".into()
        }
    } else {
        "INCOMPLETE".into()
    };
    let secs = out.wall.as_secs_f64().max(1e-9);
    let per = |ns: u64| {
        if out.routed > 0 {
            ns as f64 / out.routed as f64
        } else {
            0.0
        }
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("daemon", o.label.clone()),
        ("scenario", o.scenario.clone()),
        ("status", status.clone()),
        ("routed", out.routed.to_string()),
        ("expected", out.expected.to_string()),
        ("calls_or_signals", o.count.to_string()),
        ("pairs", o.pairs.to_string()),
        ("subscribers", o.subscribers.to_string()),
        ("window", o.window.to_string()),
        ("body_bytes", o.size.to_string()),
        ("wall_s", format!("{secs:.4}")),
        ("msg_per_s", format!("{:.0}", out.routed as f64 / secs)),
        (
            "mib_per_s",
            format!(
                "{:.1}",
                out.routed as f64 / 2.0 * o.size as f64 / secs / (1 << 20) as f64
            ),
        ),
        ("daemon_cpu_ms", format!("{:.1}", cpu_ns as f64 / 1e6)),
        ("cpu_ns_per_msg", format!("{:.0}", per(cpu_ns))),
        ("sched_ns_per_msg", format!("{:.0}", per(sched_ns))),
        ("lat_p50_us", format!("{:.1}", pct(&lat, 0.5))),
        ("lat_p99_us", format!("{:.1}", pct(&lat, 0.99))),
        ("peak_rss_kib", rss_kib.to_string()),
        ("alive", u8::from(alive).to_string()),
        (
            "error",
            out.error
                .clone()
                .unwrap_or_default()
                .replace(['\t', '\n'], " "),
        ),
    ];
    let at = fields.len() - 1;
    for (k, v) in out.extra.iter().rev() {
        fields.insert(at, (k, v.clone()));
    }
    let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT\t{}", line.join("\t"));
    let get = |k: &str| {
        fields
            .iter()
            .find(|f| f.0 == k)
            .map(|f| f.1.as_str())
            .unwrap_or("")
    };
    eprintln!(
        "{:<12} {:<10} {:<10} routed {}/{} in {}s = {} msg/s, daemon cpu {} ns/msg (schedstat {}){}{}",
        o.label,
        o.scenario,
        status,
        out.routed,
        out.expected,
        get("wall_s"),
        get("msg_per_s"),
        get("cpu_ns_per_msg"),
        get("sched_ns_per_msg"),
        if lat.is_empty() { String::new() } else { format!(", rtt p50 {} us p99 {} us", get("lat_p50_us"), get("lat_p99_us")) },
        out.error.as_ref().map(|e| format!("\n  error: {e}")).unwrap_or_default(),
    );
    if ok {
        0
    } else {
        1
    }
}

/// Prints the comparison table from RESULT lines, optionally writes JSON.
fn report(args: &[String]) -> i32 {
    let path = args.first().unwrap_or_else(|| usage());
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("loadgen report: {path}: {e}");
        std::process::exit(2)
    });
    let rows: Vec<BTreeMap<String, String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT\t"))
        .map(|l| {
            l.split('\t')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    let g = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let f = |r: &BTreeMap<String, String>, k: &str| g(r, k).parse::<f64>().unwrap_or(0.0);
    let mut scenarios: Vec<String> = Vec::new();
    let mut daemons: Vec<String> = Vec::new();
    for r in &rows {
        if !scenarios.contains(&g(r, "scenario")) {
            scenarios.push(g(r, "scenario"));
        }
        if !daemons.contains(&g(r, "daemon")) {
            daemons.push(g(r, "daemon"));
        }
    }
    // With --repeat, several rows share (daemon, scenario): merge them into one row holding the
    // median of each number; the status is the first non-ok one, if any.
    let merged: Vec<BTreeMap<String, String>> = daemons
        .iter()
        .flat_map(|d| scenarios.iter().map(move |s| (d.clone(), s.clone())))
        .filter_map(|(d, s)| {
            let group: Vec<&BTreeMap<String, String>> = rows
                .iter()
                .filter(|r| g(r, "daemon") == d && g(r, "scenario") == s)
                .collect();
            let first = group.first()?;
            let mut m = (*group
                .iter()
                .find(|r| g(r, "status") != "ok")
                .unwrap_or(first))
            .clone();
            for k in [
                "msg_per_s",
                "mib_per_s",
                "cpu_ns_per_msg",
                "sched_ns_per_msg",
                "lat_p50_us",
                "lat_p99_us",
                "wall_s",
                "peak_rss_kib",
            ] {
                let mut v: Vec<f64> = group
                    .iter()
                    .filter(|r| g(r, "status") == "ok")
                    .map(|r| f(r, k))
                    .collect();
                if v.is_empty() {
                    continue;
                }
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let med = if v.len() % 2 == 1 {
                    v[v.len() / 2]
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
                };
                let prec = if k.ends_with("_us") || k == "mib_per_s" {
                    1
                } else if k == "wall_s" {
                    4
                } else {
                    0
                };
                m.insert(k.to_string(), format!("{med:.prec$}"));
            }
            m.insert("runs".into(), group.len().to_string());
            Some(m)
        })
        .collect();
    let find = |d: &str, s: &str| {
        merged
            .iter()
            .find(|r| g(r, "daemon") == d && g(r, "scenario") == s)
    };
    let runs = merged
        .iter()
        .map(|r| f(r, "runs") as u64)
        .max()
        .unwrap_or(1);
    if runs > 1 {
        println!("(median of up to {runs} runs per row)");
    }
    let mut o = io::stdout().lock();
    let _ = writeln!(
        o,
        "{:<10} {:<12} {:>9} {:>10} {:>8} {:>11} {:>11} {:>8} {:>8} {:>7}  status",
        "scenario",
        "daemon",
        "msgs",
        "msg/s",
        "MiB/s",
        "cpu ns/msg",
        "sched ns/m",
        "p50 us",
        "p99 us",
        "rss MiB",
    );
    for s in &scenarios {
        for d in &daemons {
            if let Some(r) = find(d, s) {
                let lat = f(r, "lat_p50_us") > 0.0;
                let _ = writeln!(
                    o,
                    "{:<10} {:<12} {:>9} {:>10} {:>8} {:>11} {:>11} {:>8} {:>8} {:>7}  {}",
                    s,
                    d,
                    g(r, "routed"),
                    g(r, "msg_per_s"),
                    if s == "large" {
                        g(r, "mib_per_s")
                    } else {
                        "-".into()
                    },
                    g(r, "cpu_ns_per_msg"),
                    g(r, "sched_ns_per_msg"),
                    if lat { g(r, "lat_p50_us") } else { "-".into() },
                    if lat { g(r, "lat_p99_us") } else { "-".into() },
                    format!("{:.1}", f(r, "peak_rss_kib") / 1024.0),
                    if g(r, "status") == "ok" {
                        "ok".into()
                    } else {
                        format!("{} {}", g(r, "status"), g(r, "error"))
                    }
                );
            }
        }
    }
    let base = daemons
        .iter()
        .find(|d| d.as_str() == "busbar")
        .cloned()
        .unwrap_or_else(|| daemons.first().cloned().unwrap_or_default());
    let others: Vec<&String> = daemons.iter().filter(|d| **d != base).collect();
    if !others.is_empty() {
        let _ = writeln!(o, "\nratios {base}/X (throughput: >1 means {base} faster; cpu/msg: <1 means {base} cheaper)");
        let mut hdr = format!("{:<10}", "scenario");
        for x in &others {
            hdr += &format!(
                " {:>18} {:>18}",
                format!("msg/s vs {x}"),
                format!("cpu vs {x}")
            );
        }
        let _ = writeln!(o, "{hdr}");
        for s in &scenarios {
            let mut line = format!("{s:<10}");
            for x in &others {
                let (a, b) = (find(&base, s), find(x, s));
                let ratio = |k: &str| match (a, b) {
                    (Some(a), Some(b))
                        if f(b, k) > 0.0 && g(a, "status") == "ok" && g(b, "status") == "ok" =>
                    {
                        format!("{:.2}", f(a, k) / f(b, k))
                    }
                    _ => "n/a".into(),
                };
                line += &format!(
                    " {:>18} {:>18}",
                    ratio("msg_per_s"),
                    ratio("cpu_ns_per_msg")
                );
            }
            let _ = writeln!(o, "{line}");
        }
    }
    fairness_report(&mut o, &rows, &daemons, &base);
    if let Some(jp) = json_out {
        let mut j = String::from("[\n");
        for (i, r) in rows.iter().enumerate() {
            let items: Vec<String> = r
                .iter()
                .map(|(k, v)| {
                    let num = !v.is_empty()
                        && v.parse::<f64>().is_ok()
                        && k != "daemon"
                        && k != "scenario";
                    if num {
                        format!("\"{k}\": {v}")
                    } else {
                        format!(
                            "\"{k}\": \"{}\"",
                            v.replace('\\', "\\\\").replace('"', "\\\"")
                        )
                    }
                })
                .collect();
            j += &format!(
                "  {{{}}}{}\n",
                items.join(", "),
                if i + 1 < rows.len() { "," } else { "" }
            );
        }
        j += "]\n";
        if let Err(e) = std::fs::write(jp, j) {
            eprintln!("loadgen report: {jp}: {e}");
            return 1;
        }
    }
    0
}

/// The hostile and idle-connection scenarios: every hostile run on its own (the machine is
/// shared, so one median hides too much), p50/p99 ratios against busbar, and per daemon the
/// CPU per call with idle connections over that without.
fn fairness_report(
    o: &mut impl Write,
    rows: &[BTreeMap<String, String>],
    daemons: &[String],
    base: &str,
) {
    let g = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let f = |r: &BTreeMap<String, String>, k: &str| g(r, k).parse::<f64>().unwrap_or(0.0);
    let hostile: Vec<&BTreeMap<String, String>> = rows
        .iter()
        .filter(|r| g(r, "scenario") == "hostile")
        .collect();
    if !hostile.is_empty() {
        let _ = writeln!(o, "\nhostile, every run (quiet client's sequential GetId under flood + garbage + stuck reader)");
        let _ = writeln!(
            o,
            "{:<4} {:<12} {:>9} {:>8} {:>8} {:>8} {:>6} {:>10} {:>8}  status",
            "run",
            "daemon",
            "answered",
            "p50 us",
            "p99 us",
            "rss MiB",
            "alive",
            "flood msgs",
            "garbage",
        );
        let runs = |d: &str| {
            hostile
                .iter()
                .filter(|r| g(r, "daemon") == d)
                .copied()
                .collect::<Vec<_>>()
        };
        let n = daemons.iter().map(|d| runs(d).len()).max().unwrap_or(0);
        for i in 0..n {
            for d in daemons {
                if let Some(r) = runs(d).get(i) {
                    let _ = writeln!(
                        o,
                        "{:<4} {:<12} {:>9} {:>8} {:>8} {:>8.1} {:>6} {:>10} {:>8}  {}",
                        i + 1,
                        d,
                        format!("{}/{}", g(r, "routed"), g(r, "expected")),
                        g(r, "lat_p50_us"),
                        g(r, "lat_p99_us"),
                        f(r, "peak_rss_kib") / 1024.0,
                        if g(r, "alive") == "0" { "DEAD" } else { "yes" },
                        g(r, "flood_msgs"),
                        g(r, "garbage_cycles"),
                        g(r, "status")
                    );
                }
            }
            for d in daemons.iter().filter(|d| d.as_str() != base) {
                if let (Some(a), Some(b)) = (runs(base).get(i), runs(d).get(i)) {
                    if f(b, "lat_p50_us") > 0.0 && f(b, "lat_p99_us") > 0.0 {
                        let _ = writeln!(
                            o,
                            "{:<4} {base}/{d}: p50 {:.2}x, p99 {:.2}x",
                            "",
                            f(a, "lat_p50_us") / f(b, "lat_p50_us"),
                            f(a, "lat_p99_us") / f(b, "lat_p99_us")
                        );
                    }
                }
            }
        }
    }
    let cpu_of = |d: &str, s: &str| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| g(r, "daemon") == d && g(r, "scenario") == s && g(r, "status") == "ok")
            .map(|r| f(r, "sched_ns_per_msg"))
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied()
    };
    let mut header = false;
    for d in daemons {
        if let (Some(a), Some(b)) = (cpu_of(d, "getid-idle"), cpu_of(d, "getid")) {
            if !header {
                let _ = writeln!(
                    o,
                    "\ndaemon CPU per GetId call (schedstat ns; median), idle connections vs none"
                );
                let _ = writeln!(
                    o,
                    "{:<12} {:>10} {:>12} {:>7}",
                    "daemon", "none", "with idle", "ratio"
                );
                header = true;
            }
            if b > 0.0 {
                let _ = writeln!(o, "{d:<12} {b:>10.0} {a:>12.0} {:>7.2}", a / b);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("report") => report(&args[1..]),
        _ => usage(),
    };
    std::process::exit(code);
}
