//! uring-splice: what moving a large body socket -> pipe -> socket costs, with splice(2) calls
//! (what busbar does on both backends), with IORING_OP_SPLICE (one entry per move, submitted and
//! waited for as the io_uring backend's round would), and by copying through user memory.
//!
//!   uring-splice [--mode splice|uring|copy|all] [--size BYTES] [--count N] [--cpu N]
//!
//! One process, three threads pinned to one CPU (as bench/clients pins a run): a writer that
//! writes N messages of SIZE bytes into socket A, the mover (the daemon's part), and a reader
//! that drains socket B. Sockets are non-blocking for the mover, which waits with poll(2) as a
//! daemon's loop would; each message's body is moved on its own, as busbar moves one body per
//! pipe. Prints one line per mode: CPU of the whole process and of the mover
//! per MiB moved, the mover's moves, and context switches per MiB.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use io_uring::{opcode, types, IoUring};

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ctx_switches() -> u64 {
    // SAFETY: an all-zero rusage is a valid out-value; getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

fn pin(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes within it; the
    // affinity call reads it for the duration of the call (pid 0: this thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn wait_for(fd: RawFd, events: libc::c_short) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, -1) };
}

fn pipe(cap: usize) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes; on success we own them.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2");
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ takes an int and changes only the pipe's capacity.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, cap as libc::c_int) };
    (r, w)
}

/// One move of at most `len` bytes, `from` -> `to`; Err(errno) on failure.
trait Mover {
    fn splice(&mut self, from: RawFd, to: RawFd, len: usize) -> Result<usize, i32>;
}

struct Syscall;
impl Mover for Syscall {
    fn splice(&mut self, from: RawFd, to: RawFd, len: usize) -> Result<usize, i32> {
        // SAFETY: both fds are open for the call; null offsets (pipes and sockets); no memory.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(n as usize)
        }
    }
}

struct Uring(IoUring);
impl Mover for Uring {
    fn splice(&mut self, from: RawFd, to: RawFd, len: usize) -> Result<usize, i32> {
        let e = opcode::Splice::new(types::Fd(from), -1, types::Fd(to), -1, len as u32)
            .flags(libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE)
            .build()
            .user_data(1);
        // SAFETY: the entry refers to no user memory; both fds stay open until the completion
        // is reaped below.
        unsafe { self.0.submission().push(&e).expect("sq room") };
        self.0.submit_and_wait(1).expect("io_uring_enter");
        let c = self.0.completion().next().expect("a completion");
        if c.result() < 0 {
            Err(-c.result())
        } else {
            Ok(c.result() as usize)
        }
    }
}

/// Moves `total` bytes from `a` to `b`; returns the number of moves (splices, or reads plus
/// writes when copying).
fn run_mover(mode: &str, a: RawFd, b: RawFd, total: usize, size: usize, cap: usize) -> u64 {
    let mut moves = 0u64;
    if mode == "copy" {
        let mut buf = vec![0u8; cap];
        let mut left = total;
        while left > 0 {
            // As busbar's copying path reads a large message: up to its end.
            let want = buf.len().min(left).min(size - (total - left) % size);
            // SAFETY: `buf` is valid for writes of its length for the call.
            let n = unsafe { libc::read(a, buf.as_mut_ptr().cast(), want) };
            moves += 1;
            if n < 0 {
                wait_for(a, libc::POLLIN);
                continue;
            }
            let n = n as usize;
            let mut off = 0;
            while off < n {
                // SAFETY: `buf[off..n]` is initialized and valid for reads for the call.
                let w = unsafe { libc::write(b, buf[off..].as_ptr().cast(), n - off) };
                moves += 1;
                if w < 0 {
                    wait_for(b, libc::POLLOUT);
                } else {
                    off += w as usize;
                }
            }
            left -= n;
        }
        return moves;
    }
    let mut mover: Box<dyn Mover> = match mode {
        "splice" => Box::new(Syscall),
        _ => Box::new(Uring(IoUring::new(64).expect("io_uring_setup"))),
    };
    let (pr, pw) = pipe(cap);
    let mut left = total;
    // Bytes left of the current message: as in busbar, each body is moved on its own (its
    // pipe holds one body; the next one starts after it).
    let mut body_left = 0;
    while left > 0 {
        if body_left == 0 {
            body_left = size.min(left);
        }
        let n = match mover.splice(a, pw.as_raw_fd(), body_left.min(cap)) {
            Ok(0) => panic!("socket A closed early"),
            Ok(n) => n,
            Err(libc::EAGAIN) => {
                moves += 1;
                wait_for(a, libc::POLLIN);
                continue;
            }
            Err(e) => panic!("splice in: errno {e}"),
        };
        moves += 1;
        let mut out = 0;
        while out < n {
            match mover.splice(pr.as_raw_fd(), b, n - out) {
                Ok(k) => out += k,
                Err(libc::EAGAIN) => wait_for(b, libc::POLLOUT),
                Err(e) => panic!("splice out: errno {e}"),
            }
            moves += 1;
        }
        left -= n;
        body_left -= n;
    }
    moves
}

fn measure(mode: &str, size: usize, count: usize, cpu: usize) {
    let (mut aw, ar) = UnixStream::pair().expect("socketpair");
    let (bw, mut br) = UnixStream::pair().expect("socketpair");
    ar.set_nonblocking(true).unwrap();
    bw.set_nonblocking(true).unwrap();
    let total = size * count;
    let writer = std::thread::spawn(move || {
        pin(cpu);
        let body = vec![0x5au8; size];
        for _ in 0..count {
            aw.write_all(&body).expect("write A");
        }
    });
    let reader = std::thread::spawn(move || {
        pin(cpu);
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            let n = br.read(&mut buf).expect("read B");
            assert!(n > 0, "socket B closed early");
            got += n;
        }
    });
    let (p0, t0, c0, w0) = (
        cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID),
        ctx_switches(),
        Instant::now(),
    );
    let moves = run_mover(mode, ar.as_raw_fd(), bw.as_raw_fd(), total, size, 1 << 20);
    let mover_ns = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
    writer.join().unwrap();
    reader.join().unwrap();
    let (p1, c1, wall) = (
        cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        ctx_switches(),
        w0.elapsed(),
    );
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "RESULT mode={mode} size={size} count={count} total_cpu_us_per_mib={:.1} mover_cpu_us_per_mib={:.1} moves_per_mib={:.1} ctxsw_per_mib={:.1} wall_ms={}",
        (p1 - p0) as f64 / 1e3 / mib,
        mover_ns as f64 / 1e3 / mib,
        moves as f64 / mib,
        (c1 - c0) as f64 / mib,
        wall.as_millis()
    );
}

fn main() {
    let mut mode = "all".to_string();
    let (mut size, mut count, mut cpu) = (1usize << 20, 2000usize, 0usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value");
        match a.as_str() {
            "--mode" => mode = val(),
            "--size" => size = val().parse().expect("--size BYTES"),
            "--count" => count = val().parse().expect("--count N"),
            "--cpu" => cpu = val().parse().expect("--cpu N"),
            _ => {
                eprintln!("usage: uring-splice [--mode splice|uring|copy|all] [--size B] [--count N] [--cpu N]");
                std::process::exit(2);
            }
        }
    }
    pin(cpu);
    let modes: Vec<&str> = if mode == "all" {
        vec!["splice", "uring", "copy"]
    } else {
        vec![mode.as_str()]
    };
    for m in modes {
        measure(m, size, count, cpu);
    }
}
