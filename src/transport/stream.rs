//! A connected peer socket: non-blocking reads that collect passed fds,
//! vectored writes that attach fds, and peer credentials.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    /// unix-domain
    Unix(mio::net::UnixStream),
    /// TCP
    Tcp(mio::net::TcpStream),
}

/// Credentials of the process at the other end.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PeerCreds {
    /// uid
    pub uid: Option<u32>,
    /// pid
    pub pid: Option<u32>,
    /// primary gid
    pub gid: Option<u32>,
}

/// Maximum fds taken from one recvmsg (as libdbus: the per-message maximum).
const MAX_FDS_PER_READ: usize = 64;

thread_local! {
    /// The control-message buffer of every recvmsg on this thread, made
    /// once (a fresh one per read would be an allocation per read).
    static CMSG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Stream {
    /// The raw fd.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }

    /// Whether fds can pass over this socket.
    pub fn can_pass_fds(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// SO_PEERCRED of a unix socket.
    pub fn peer_creds(&self) -> PeerCreds {
        match self {
            Stream::Unix(s) => match getsockopt(s, sockopt::PeerCredentials) {
                Ok(c) => PeerCreds {
                    uid: Some(c.uid()),
                    pid: u32::try_from(c.pid()).ok().filter(|&p| p != 0),
                    gid: Some(c.gid()),
                },
                Err(_) => PeerCreds::default(),
            },
            Stream::Tcp(_) => PeerCreds::default(),
        }
    }

    /// The peer's security label (SO_PEERSEC) up to its first NUL, as
    /// libdbus reads it for LinuxSecurityLabel; None where the kernel has
    /// no security module that labels sockets (ENOPROTOOPT) or for TCP.
    pub fn peer_security_label(&self) -> Option<Vec<u8>> {
        let Stream::Unix(s) = self else { return None };
        if !peersec::worth_asking() {
            return None;
        }
        let fd = s.as_raw_fd();
        let mut buf = vec![0u8; 256];
        loop {
            let mut len = libc::socklen_t::try_from(buf.len()).ok()?;
            // SAFETY: `buf` is a live allocation of exactly `len` writable
            // bytes; getsockopt writes at most `len` bytes and stores the
            // size used (or needed, with ERANGE) in `len`, a valid
            // socklen_t. `fd` is an open socket owned by `self`.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_PEERSEC,
                    buf.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if r == 0 {
                buf.truncate((len as usize).min(buf.len()));
                if let Some(nul) = buf.iter().position(|&b| b == 0) {
                    buf.truncate(nul);
                }
                return (!buf.is_empty()).then_some(buf);
            }
            let err = io::Error::last_os_error();
            let needed = len as usize;
            if err.raw_os_error() == Some(libc::ERANGE) && needed > buf.len() && needed <= 65536 {
                buf.resize(needed, 0);
                continue;
            }
            if err.raw_os_error() == Some(libc::ENOPROTOOPT) {
                peersec::unsupported();
            }
            return None;
        }
    }

    /// The peer's supplementary groups as the kernel saw them at connect
    /// time (SO_PEERGROUPS), as dbus-daemon 1.14 uses them.
    pub fn peer_groups(&self) -> Option<Vec<u32>> {
        let Stream::Unix(s) = self else { return None };
        let fd = s.as_raw_fd();
        let mut buf: Vec<libc::gid_t> = vec![0; 64];
        loop {
            let cap = buf.len() * std::mem::size_of::<libc::gid_t>();
            let mut len = libc::socklen_t::try_from(cap).ok()?;
            // SAFETY: `buf` is a live allocation of exactly `len` writable
            // bytes; getsockopt writes at most `len` bytes into it and
            // stores the size it needed (or used) in `len`, which is a
            // valid, exclusively borrowed socklen_t. `fd` is an open socket
            // owned by `self` for the duration of the call.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_PEERGROUPS,
                    buf.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            let needed = len as usize / std::mem::size_of::<libc::gid_t>();
            if r == 0 {
                buf.truncate(needed.min(buf.len()));
                peergroups::answered();
                return Some(buf);
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) && needed > buf.len() && needed <= 65536 {
                buf.resize(needed, 0);
                continue;
            }
            return None;
        }
    }

    /// Whether SO_PEERGROUPS has answered on this kernel: then a unix
    /// socket's groups can be asked for at any time while it is open (the
    /// kernel keeps the peer's credentials from connect time on the socket,
    /// so a later answer is the connect-time one).
    pub fn peer_groups_known_to_work() -> bool {
        peergroups::works()
    }

    /// Reads into `buf`; fds that arrive are appended to `fds`.
    /// Returns 0 at end of stream.
    pub fn recv(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        CMSG.with(|cmsg| {
            let mut cmsg = cmsg.borrow_mut();
            if cmsg.capacity() == 0 {
                *cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]);
            }
            self.recv_with(buf, fds, &mut cmsg)
        })
    }

    fn recv_with(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        cmsg: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let fd = self.raw_fd();
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = c {
                    for raw in received {
                        // SAFETY: the kernel installed these descriptors in
                        // our table for this SCM_RIGHTS message; nothing else
                        // refers to them, so wrapping each once gives it a
                        // single owner that closes it.
                        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many file descriptors in one read",
            ));
        }
        Ok(n)
    }

    /// Writes the slices, attaching `fds` (raw descriptors kept open by the
    /// caller) to the first byte.
    pub fn send(&self, iov: &[IoSlice<'_>], fds: &[RawFd]) -> io::Result<usize> {
        let fd = self.raw_fd();
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        let r = if fds.is_empty() {
            sendmsg::<()>(fd, iov, &[], flags, None)
        } else {
            sendmsg::<()>(fd, iov, &[ControlMessage::ScmRights(fds)], flags, None)
        };
        r.map_err(io::Error::from)
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tcp(s) => s.register(registry, token, interests),
        }
    }
    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tcp(s) => s.reregister(registry, token, interests),
        }
    }
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tcp(s) => s.deregister(registry),
        }
    }
}

/// Whether SO_PEERGROUPS has answered once (it exists since Linux 4.13;
/// an older kernel never answers, so this stays false there).
mod peergroups {
    use std::sync::atomic::{AtomicBool, Ordering};

    static WORKS: AtomicBool = AtomicBool::new(false);

    pub fn works() -> bool {
        WORKS.load(Ordering::Relaxed)
    }

    pub fn answered() {
        WORKS.store(true, Ordering::Relaxed);
    }
}

/// Whether SO_PEERSEC can answer at all, so that a kernel without a
/// security module that labels sockets costs no getsockopt per connection.
mod peersec {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const ASK: u8 = 1;
    const NEVER: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// False once SO_PEERSEC said ENOPROTOOPT while no security module
    /// with process labels (SELinux, AppArmor, Smack: the ones that label
    /// sockets) is loaded; modules are chosen at boot, so no later socket
    /// would answer differently. SELinux also says ENOPROTOOPT for an
    /// unlabeled peer before its policy is loaded, so with such a module
    /// present every connection is asked.
    pub fn worth_asking() -> bool {
        STATE.load(Ordering::Relaxed) != NEVER
    }

    /// SO_PEERSEC said ENOPROTOOPT.
    pub fn unsupported() {
        if STATE.load(Ordering::Relaxed) != UNKNOWN {
            return;
        }
        // /proc/self/attr/current is EINVAL when no module provides
        // process attributes (read once, at the first such answer).
        let no_module = matches!(
            std::fs::read("/proc/self/attr/current"),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL)
        );
        STATE.store(if no_module { NEVER } else { ASK }, Ordering::Relaxed);
    }
}
