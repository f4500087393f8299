//! The seam between the loop and the kernel interface that tells it what
//! is ready and writes the peers' queues: epoll (through mio) or io_uring.
//! The rounds, turns and their fairness stay in the loop, shared by both.
//!
//! `BUSBAR_IO_BACKEND=epoll|uring` forces one (for tests and benchmarks);
//! without it the default is chosen by [`DEFAULT`]. io_uring is probed at
//! start-up (a kernel may lack it, or have it disabled by the sysctl
//! kernel.io_uring_disabled or by a seccomp filter): where it is missing
//! the loop runs on epoll, which behaves identically.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::broker::bus::Bus;

use super::epoll::Epoll;
pub(super) use super::uring::RxEnd;
use super::uring::Uring;

/// Which backend runs when the environment names none.
const DEFAULT: Choice = Choice::Epoll;

/// A backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    /// mio's epoll, edge-triggered.
    Epoll,
    /// io_uring: receives from a provided-buffer ring (or multishot
    /// polls), and a round's sends submitted with the wait for the next
    /// events.
    Uring,
}

/// What became ready, whichever backend said so.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Event {
    pub token: usize,
    pub readable: bool,
    pub writable: bool,
    pub read_closed: bool,
    pub error: bool,
}

/// The running backend.
pub(super) enum Io {
    Epoll(Epoll),
    Uring(Box<Uring>),
}

/// The backend the environment asks for, or the default.
fn choice() -> Choice {
    match std::env::var("BUSBAR_IO_BACKEND").as_deref() {
        Ok("epoll") => Choice::Epoll,
        Ok("uring") | Ok("io_uring") => Choice::Uring,
        Ok("") | Err(_) => DEFAULT,
        Ok(other) => {
            crate::log::warning(&format!(
                "Unknown BUSBAR_IO_BACKEND \"{other}\" (epoll or uring); using the default"
            ));
            DEFAULT
        }
    }
}

impl Io {
    /// The chosen backend; io_uring falls back to epoll where it is not
    /// available.
    pub fn new() -> Result<Io, String> {
        if choice() == Choice::Uring {
            match Uring::new() {
                Ok(u) => {
                    if !u.ring_receives() && super::uring::ring_receives_wanted() {
                        crate::log::warning(
                            "io_uring receives from a provided-buffer ring are not available \
                             (they need IORING_SETUP_DEFER_TASKRUN and IORING_REGISTER_PBUF_RING); \
                             the loop receives with recvmsg",
                        );
                    }
                    return Ok(Io::Uring(Box::new(u)));
                }
                Err(e) => {
                    if std::env::var_os("BUSBAR_IO_BACKEND").is_some() {
                        crate::log::warning(&format!(
                            "io_uring is not available ({e}); using epoll"
                        ));
                    }
                }
            }
        }
        Ok(Io::Epoll(Epoll::new()?))
    }

    /// Which one runs.
    #[allow(dead_code)]
    pub fn which(&self) -> Choice {
        match self {
            Io::Epoll(_) => Choice::Epoll,
            Io::Uring(_) => Choice::Uring,
        }
    }

    /// Watches `fd` for input (edge-triggered: one event per arrival),
    /// reported under `token`.
    pub fn register(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        match self {
            Io::Epoll(e) => e.register(fd, token),
            Io::Uring(u) => u.register(fd, token),
        }
    }

    /// Watches connection `id`'s socket (`fresh`: just accepted, nothing
    /// read from it yet).
    pub fn register_peer(&mut self, fd: RawFd, id: u64, fresh: bool) -> io::Result<()> {
        match self {
            Io::Epoll(e) => e.register(fd, id as usize),
            Io::Uring(u) => u.register_peer(fd, id, fresh),
        }
    }

    /// Connection `id`'s turn ended with nothing more to read now (epoll:
    /// the next edge says when; io_uring may arm a receive).
    pub fn turn_drained(&mut self, bus: &mut Bus, id: u64) {
        if let Io::Uring(u) = self {
            u.turn_drained(bus, id);
        }
    }

    /// The loop is about to work on connection `id` (a turn, or input
    /// processed on a wake-up): io_uring takes back a receive in flight.
    pub fn reclaim(&mut self, bus: &mut Bus, id: u64) {
        if let Io::Uring(u) = self {
            u.reclaim(bus, id);
        }
    }

    /// Connection `id`'s framing asked for its socket to itself
    /// (`Peer::rx_release`): io_uring takes back its multishot receive.
    pub fn release(&mut self, bus: &mut Bus, id: u64) {
        if let Io::Uring(u) = self {
            u.release(bus, id);
        }
    }

    /// Connection `id` is throttled: io_uring cancels its multishot
    /// receive.
    pub fn pause(&mut self, id: u64) {
        if let Io::Uring(u) = self {
            u.pause(id);
        }
    }

    /// Bytes the backend itself received for `id` (into its receive
    /// chunk) since its last turn began: they count against the turn's
    /// budget.
    pub fn take_delivered(&mut self, id: u64) -> usize {
        match self {
            Io::Epoll(_) => 0,
            Io::Uring(u) => u.take_delivered(id),
        }
    }

    /// What the backend's last receive for `id` said about its socket
    /// (epoll: nothing, the loop reads).
    pub fn rx_end(&mut self, id: u64) -> RxEnd {
        match self {
            Io::Epoll(_) => RxEnd::Open,
            Io::Uring(u) => u.rx_end(id),
        }
    }

    /// Before the state is saved for a re-exec: no receive may be in
    /// flight.
    pub fn quiesce(&mut self, bus: &mut Bus) {
        if let Io::Uring(u) = self {
            u.quiesce(bus);
        }
    }

    /// A connection's socket is about to be closed. epoll needs no
    /// EPOLL_CTL_DEL: closing the socket (its only fd: sockets are never
    /// duplicated) removes it from the epoll set, and ids are never reused,
    /// so an event already collected for it finds no peer. io_uring's
    /// polls hold the file open, so they are cancelled.
    pub fn closing(&mut self, _fd: RawFd, token: usize) {
        match self {
            Io::Epoll(_) => {}
            Io::Uring(u) => u.deregister(token),
        }
    }

    /// Watches listener `fd` level-triggered (`level`) or edge-triggered;
    /// false where the backend cannot (io_uring's multishot poll reports
    /// each wake-up, so its listeners stay as registered).
    pub fn set_level_triggered(&mut self, fd: RawFd, token: usize, level: bool) -> bool {
        match self {
            Io::Epoll(e) => e.set_level_triggered(fd, token, level),
            Io::Uring(_) => false,
        }
    }

    /// A function the worker threads call to wake the loop; it reports
    /// `token` readable.
    pub fn waker(
        &mut self,
        token: usize,
    ) -> Result<std::sync::Arc<dyn Fn() + Send + Sync>, String> {
        match self {
            Io::Epoll(e) => e.waker(token),
            Io::Uring(u) => u.waker(token),
        }
    }

    /// The waker's event arrived (io_uring's must be drained).
    pub fn woken(&mut self) {
        if let Io::Uring(u) = self {
            u.woken();
        }
    }

    /// Writes (or, with io_uring, queues the write of) what peer `id` has
    /// queued; arranges to be told when a full socket takes more.
    pub fn flush_peer(&mut self, bus: &mut Bus, id: u64) {
        match self {
            Io::Epoll(e) => e.flush_peer(bus, id),
            Io::Uring(u) => u.flush_peer(bus, id),
        }
    }

    /// Completes every queued write, so the peers' queues may be changed
    /// and their sockets closed or handed over.
    pub fn settle(&mut self, bus: &mut Bus) {
        if let Io::Uring(u) = self {
            u.settle(bus);
        }
    }

    /// Submits what is queued and waits (at most `timeout`) for events,
    /// appended to `events`.
    pub fn wait(
        &mut self,
        bus: &mut Bus,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        match self {
            Io::Epoll(e) => e.wait(events, timeout),
            Io::Uring(u) => u.wait(bus, events, timeout),
        }
    }
}
