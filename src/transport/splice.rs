//! splice(2) plumbing for large message bodies: pipes sized with
//! F_SETPIPE_SZ (up to /proc/sys/fs/pipe-max-size), a small pool of empty
//! ones, and the non-blocking socket -> pipe -> socket moves. Nothing here
//! knows about messages; src/broker/splice.rs does.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Pipes (with their buffers) alive at once, at most: each holds up to its
/// capacity of kernel memory and two fds, so past this the copying path
/// is used.
pub const MAX_LIVE_PIPES: usize = 64;
/// Empty pipes kept for reuse.
const POOL_KEEP: usize = 8;
/// The capacity asked for when pipe-max-size cannot be read.
const DEFAULT_MAX: usize = 1024 * 1024;

/// A pipe: both ends non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static DEV_NULL: OnceLock<Option<OwnedFd>> = const { OnceLock::new() };
}

/// /proc/sys/fs/pipe-max-size, read once.
fn pipe_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX)
    })
}

impl Pipe {
    /// A pipe that holds at least `want` bytes if pipe-max-size (and the
    /// user's pipe quota) allow it, else as much as they do; pooled when
    /// possible. None when [`MAX_LIVE_PIPES`] are in use or pipe(2) fails.
    pub fn take(want: usize) -> Option<Pipe> {
        if LIVE.with(Cell::get) >= MAX_LIVE_PIPES {
            return None;
        }
        let want = want.clamp(4096, pipe_max());
        let pooled = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let i = p
                .iter()
                .position(|x| x.cap >= want)
                .or_else(|| (!p.is_empty()).then_some(0))?;
            Some(p.swap_remove(i))
        });
        let mut pipe = match pooled {
            Some(p) => p,
            None => {
                let (r, w) = nix::unistd::pipe2(
                    nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
                )
                .ok()?;
                // SAFETY: F_GETPIPE_SZ takes no argument and only reads the
                // pipe's size; `w` is an open pipe fd.
                let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
                Pipe {
                    r,
                    w,
                    cap: usize::try_from(cap).unwrap_or(4096),
                }
            }
        };
        if pipe.cap < want {
            // SAFETY: F_SETPIPE_SZ takes an int size and changes only the
            // pipe's capacity (it fails, leaving it as it is, with EPERM
            // past the user's pipe quota or EBUSY if it holds more data).
            let got = unsafe {
                libc::fcntl(
                    pipe.w.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX),
                )
            };
            if let Ok(c) = usize::try_from(got) {
                pipe.cap = c;
            }
        }
        LIVE.with(|l| l.set(l.get() + 1));
        Some(pipe)
    }

    /// A pipe handed over by the previous image at a re-exec (its read
    /// and write ends, still holding a body's bytes): counted as live like
    /// one [`Pipe::take`] made, even past [`MAX_LIVE_PIPES`]. Err if
    /// either end is not a pipe.
    pub fn adopt(r: OwnedFd, w: OwnedFd) -> io::Result<Pipe> {
        // Both ends of one pipe share its inode.
        let same = match (
            nix::sys::stat::fstat(r.as_raw_fd()),
            nix::sys::stat::fstat(w.as_raw_fd()),
        ) {
            (Ok(a), Ok(b)) => {
                let fifo = |m: libc::mode_t| m & libc::S_IFMT == libc::S_IFIFO;
                fifo(a.st_mode) && fifo(b.st_mode) && a.st_ino == b.st_ino && a.st_dev == b.st_dev
            }
            _ => false,
        };
        if !same {
            return Err(io::Error::other("not the two ends of one pipe"));
        }
        // SAFETY: F_GETPIPE_SZ takes no argument and only reads the pipe's
        // size; `w` is an open pipe fd (owned here).
        let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        for (fd, mode) in [(&r, libc::O_RDONLY), (&w, libc::O_WRONLY)] {
            let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
                .map_err(io::Error::from)?;
            if flags & libc::O_ACCMODE != mode {
                return Err(io::Error::other("a pipe's ends swapped"));
            }
            let flags =
                nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
                .map_err(io::Error::from)?;
        }
        LIVE.with(|l| l.set(l.get() + 1));
        Ok(Pipe {
            r,
            w,
            cap: usize::try_from(cap).unwrap_or(4096),
        })
    }

    /// The read and write ends' numbers (for a re-exec to hand them over).
    pub fn raw_fds(&self) -> (RawFd, RawFd) {
        (self.r.as_raw_fd(), self.w.as_raw_fd())
    }

    /// Bytes the pipe holds at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Returns an empty pipe for reuse. A pipe that may still hold bytes
    /// must be dropped instead (its data would precede the next body).
    pub fn give_back(self) {
        LIVE.with(|l| l.set(l.get().saturating_sub(1)));
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_KEEP {
                p.push(self);
            }
        });
    }

    /// A pipe that is closed rather than pooled.
    pub fn discard(self) {
        LIVE.with(|l| l.set(l.get().saturating_sub(1)));
    }

    /// Moves at most `len` bytes from the socket `from` into the pipe.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.w.as_raw_fd(), len)
    }

    /// Moves at most `len` bytes from the pipe to the socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.r.as_raw_fd(), to, len)
    }

    /// Writes `bytes` (already read into user memory) into the pipe,
    /// ahead of what is spliced in after them.
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        nix::unistd::write(&self.w, bytes).map_err(io::Error::from)
    }

    /// Throws away at most `len` bytes of the pipe (into /dev/null).
    pub fn drain_away(&self, len: usize) -> io::Result<usize> {
        let null = DEV_NULL.with(|n| {
            n.get_or_init(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .ok()
                    .map(OwnedFd::from)
            })
            .as_ref()
            .map(|f| f.as_raw_fd())
        });
        match null {
            Some(fd) => splice(self.r.as_raw_fd(), fd, len),
            None => {
                let mut buf = [0u8; 16 * 1024];
                let n = len.min(buf.len());
                nix::unistd::read(self.r.as_raw_fd(), &mut buf[..n]).map_err(io::Error::from)
            }
        }
    }
}

/// Pipes in use now (not pooled).
pub fn live_pipes() -> usize {
    LIVE.with(Cell::get)
}

/// One non-blocking splice(2).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: both fds are open (borrowed from live owners for the
        // call); null offsets mean "current position", which pipes and
        // sockets require; no user memory is passed.
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
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn socket_to_pipe_to_socket_moves_the_bytes() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        c.set_nonblocking(true).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let p = Pipe::take(data.len()).unwrap();
        assert!(p.capacity() >= 4096);
        let writer = std::thread::spawn(move || a.write_all(&data).map(|_| data));
        let mut got = Vec::new();
        let mut moved = 0;
        while moved < 100_000 {
            match p.fill_from(b.as_raw_fd(), (100_000 - moved).min(p.capacity())) {
                Ok(n) => {
                    let mut left = n;
                    while left > 0 {
                        left -= p.drain_to(c.as_raw_fd(), left).unwrap();
                        let mut buf = vec![0u8; 65536];
                        d.set_nonblocking(true).unwrap();
                        while let Ok(k) = d.read(&mut buf) {
                            got.extend_from_slice(&buf[..k]);
                        }
                    }
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let data = writer.join().unwrap().unwrap();
        assert_eq!(got, data);
        p.give_back();
    }
}
