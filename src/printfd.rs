//! `--print-address=FD` and `--print-pid=FD`: the descriptors the address
//! and pid are written to, claimed at start-up before busbar opens any fd
//! of its own, so a number that was not open cannot later name one of the
//! bus's sockets.
//!
//! As dbus-daemon does:
//! - fds 1 and 2 are written through stdout and stderr and stay open;
//! - fd 0 is /dev/null by then (both daemons point stdin at /dev/null
//!   first thing), so a line printed there is lost, and fd 0 stays open;
//! - any other fd is closed after its line, so a reader sees end-of-file;
//! - when both options name the same fd (other than 1 or 2), dbus-daemon
//!   closes it after the address and then fails to write the pid ("Bad
//!   file descriptor", exit 1). busbar does the same, without ever closing
//!   the number twice.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
enum Dest {
    Stdout,
    Stderr,
    /// fd 0 (/dev/null by the time anything is printed).
    Stdin,
    /// An fd above 2 that was open at start-up.
    Owned(File),
    /// Written and closed already, or never open.
    Closed,
}

/// The claimed print descriptors.
#[derive(Debug, Default)]
pub struct PrintFds {
    slots: Vec<(RawFd, Dest)>,
}

fn is_open(fd: RawFd) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

fn write_err(e: &io::Error) -> String {
    format!("Writing to pipe: {}", crate::errtext::strerror(e))
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl PrintFds {
    /// Claims `fds` (the --print-address and --print-pid targets). Call
    /// first thing, before any fd is opened.
    pub fn claim(fds: &[Option<RawFd>]) -> PrintFds {
        let mut slots: Vec<(RawFd, Dest)> = Vec::new();
        for &fd in fds.iter().flatten() {
            if slots.iter().any(|(n, _)| *n == fd) {
                continue;
            }
            let dest = match fd {
                1 => Dest::Stdout,
                2 => Dest::Stderr,
                0 => Dest::Stdin,
                _ if !is_open(fd) => Dest::Closed,
                _ => {
                    // SAFETY: `fd` is open (F_GETFD succeeded) and was
                    // handed to busbar on the command line for this one
                    // use; busbar has opened nothing yet, so no other
                    // owner of this number exists in the process, and the
                    // slot list holds each number once, so it is owned once.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    let _ = nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    );
                    Dest::Owned(File::from(owned))
                }
            };
            slots.push((fd, dest));
        }
        PrintFds { slots }
    }

    /// Writes `text` to `fd`, then closes it unless it is stdout or
    /// stderr. The error is dbus-daemon's wording.
    pub fn print(&mut self, fd: RawFd, text: &str) -> Result<(), String> {
        let Some((_, dest)) = self.slots.iter_mut().find(|(n, _)| *n == fd) else {
            return Err(write_err(&ebadf()));
        };
        let r = match dest {
            Dest::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Dest::Stderr => io::stderr().lock().write_all(text.as_bytes()),
            Dest::Stdin => write_all_fd(io::stdin().as_fd(), text.as_bytes()),
            Dest::Owned(_) => {
                let Dest::Owned(mut f) = std::mem::replace(dest, Dest::Closed) else {
                    unreachable!("matched Owned above")
                };
                f.write_all(text.as_bytes())
            }
            Dest::Closed => Err(ebadf()),
        };
        r.map_err(|e| write_err(&e))
    }
}

fn write_all_fd(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Points `fd` (0, 1 or 2) at /dev/null, closing what it was.
pub fn replace_with_dev_null(fd: RawFd) {
    use nix::fcntl::{open, OFlag};
    if let Ok(n) = open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        if n != fd {
            // dup2 clears FD_CLOEXEC on the copy.
            let _ = nix::unistd::dup2(n, fd);
            let _ = nix::unistd::close(n);
        } else {
            let _ = nix::fcntl::fcntl(
                n,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
        }
    }
}
