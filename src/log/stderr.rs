//! Writing log lines to stderr without ever blocking the bus or dying of
//! it. `eprintln!` panics when stderr is a pipe nobody reads any more
//! (EPIPE) or a terminal that went away (EIO), and a plain write blocks the
//! whole bus when stderr is a full pipe. So a line is written without
//! waiting, or dropped (and counted): the bus matters more than its log.
//!
//! How a line goes out depends on what fd 2 is:
//! - a socket (journald's stdout stream, a socketpair): `send` with
//!   MSG_DONTWAIT, which touches no flag shared with anyone else;
//! - a pipe, FIFO or terminal: a second open file description of the same
//!   object (`/proc/self/fd/2`), put in non-blocking mode. Setting
//!   O_NONBLOCK on fd 2 itself would change it for every process sharing
//!   it (the shell that started us, for one);
//! - without /proc: fd 2 itself, after poll says there is room;
//! - a regular file (or /dev/null): fd 2 itself; ENOSPC is ignored.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

/// A line written in one non-blocking write to a pipe is either written
/// whole or not at all when it is no longer than PIPE_BUF (4096 on Linux),
/// so lines are cut to that.
pub const MAX_LINE: usize = 4096;

/// How lines reach fd 2.
#[derive(Debug)]
enum Sink {
    /// Not looked at yet, or fd 2 was replaced.
    Unknown,
    /// fd 2 is a socket.
    Socket,
    /// Our own non-blocking open of what fd 2 refers to.
    Own(File),
    /// fd 2 itself, after checking for room with poll.
    Polled,
    /// fd 2 itself: writes to it do not block for long (regular files).
    Direct,
    /// Nobody reads: a pipe whose reader is gone, or no fd 2 at all.
    Dead,
}

/// The stderr log target.
#[derive(Debug)]
pub struct Stderr {
    sink: Sink,
    /// Lines dropped because stderr was full, not yet reported.
    dropped: u64,
}

impl Default for Stderr {
    fn default() -> Self {
        Stderr::new()
    }
}

/// Runs `f` on fd 2, borrowed from std's handle (busbar never closes
/// fd 2; it only replaces it with dup2).
fn with_fd2<R>(f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
    let e = io::stderr();
    f(e.as_fd())
}

impl Stderr {
    /// A target that looks at fd 2 on its first line.
    pub const fn new() -> Stderr {
        Stderr {
            sink: Sink::Unknown,
            dropped: 0,
        }
    }

    /// fd 2 now refers to something else (after daemonizing): look again.
    pub fn reset(&mut self) {
        self.sink = Sink::Unknown;
    }

    /// The device and inode of fd 2, to compare with $JOURNAL_STREAM.
    pub fn dev_ino() -> Option<(u64, u64)> {
        let st = with_fd2(|fd| nix::sys::stat::fstat(fd.as_raw_fd())).ok()?;
        Some((st.st_dev, st.st_ino))
    }

    fn resolve() -> Sink {
        let Ok(st) = with_fd2(|fd| nix::sys::stat::fstat(fd.as_raw_fd())) else {
            return Sink::Dead;
        };
        let kind = st.st_mode & libc::S_IFMT;
        match kind {
            libc::S_IFSOCK => Sink::Socket,
            libc::S_IFIFO | libc::S_IFCHR => {
                // A character device may be /dev/null or a terminal; both
                // take a second open fine. Never O_WRONLY without
                // O_NONBLOCK here: opening a FIFO for writing would wait
                // for a reader.
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
                    .open("/proc/self/fd/2")
                {
                    Ok(f) => {
                        // Only trust it if it is the same object.
                        match f.metadata() {
                            Ok(m) if is_same(&m, &st) => Sink::Own(f),
                            _ => Sink::Polled,
                        }
                    }
                    // ENXIO: a pipe or FIFO with no reader.
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Sink::Dead,
                    Err(_) => Sink::Polled,
                }
            }
            _ => Sink::Direct,
        }
    }

    /// Writes one line (a newline is added), or drops it if stderr would
    /// block. Never panics, never waits.
    pub fn write_line(&mut self, line: &str) {
        if matches!(self.sink, Sink::Unknown) {
            self.sink = Self::resolve();
        }
        if matches!(self.sink, Sink::Dead) {
            return;
        }
        if self.dropped > 0 {
            let note = format!(
                "busbar[{}]: {} log lines were dropped because stderr was not being read\n",
                std::process::id(),
                self.dropped
            );
            match self.write_raw(note.as_bytes()) {
                Ok(()) => self.dropped = 0,
                Err(()) => {
                    self.dropped += 1;
                    return;
                }
            }
        }
        let mut buf = Vec::with_capacity(line.len().min(MAX_LINE) + 1);
        buf.extend_from_slice(truncate(line, MAX_LINE - 1).as_bytes());
        buf.push(b'\n');
        if self.write_raw(&buf).is_err() {
            self.dropped += 1;
        }
    }

    /// One attempt to write `buf`; Err when it was not (wholly) written.
    fn write_raw(&mut self, buf: &[u8]) -> Result<(), ()> {
        let r: io::Result<usize> = match &mut self.sink {
            Sink::Unknown | Sink::Dead => return Err(()),
            Sink::Socket => {
                use nix::sys::socket::{send, MsgFlags};
                with_fd2(|fd| {
                    send(
                        fd.as_raw_fd(),
                        buf,
                        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                    )
                })
                .map_err(io::Error::from)
            }
            Sink::Own(f) => f.write(buf),
            Sink::Polled => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let r = with_fd2(|fd| {
                    let mut pfd = [PollFd::new(fd, PollFlags::POLLOUT)];
                    match poll(&mut pfd, PollTimeout::ZERO) {
                        Ok(1)
                            if pfd[0]
                                .revents()
                                .is_some_and(|r| r.contains(PollFlags::POLLOUT)) =>
                        {
                            Some(nix::unistd::write(fd, buf))
                        }
                        _ => None,
                    }
                });
                match r {
                    Some(r) => r.map_err(io::Error::from),
                    None => return Err(()),
                }
            }
            Sink::Direct => with_fd2(|fd| nix::unistd::write(fd, buf)).map_err(io::Error::from),
        };
        match r {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(()),
            Err(e) => {
                match e.raw_os_error() {
                    // The reader is gone for good; stop trying.
                    Some(libc::EPIPE) | Some(libc::EBADF) => self.sink = Sink::Dead,
                    // EAGAIN (full), EIO (terminal hung up), ENOSPC, EINTR:
                    // this line is lost, the next may go through.
                    _ => {}
                }
                Err(())
            }
        }
    }
}

fn is_same(m: &std::fs::Metadata, st: &nix::sys::stat::FileStat) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.dev() == st.st_dev && m.ino() == st.st_ino
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
