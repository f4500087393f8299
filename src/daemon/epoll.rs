//! The epoll backend (mio, edge-triggered): the loop's readiness and
//! writes as they were before io_uring (moved here from src/daemon.rs).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::broker::bus::Bus;
use crate::broker::peer::Flush;

use super::backend::Event;

pub(super) struct Epoll {
    poll: Poll,
    events: Events,
}

impl Epoll {
    pub fn new() -> Result<Epoll, String> {
        Ok(Epoll {
            poll: Poll::new().map_err(|e| format!("Failed to create poll: {e}"))?,
            events: Events::with_capacity(1024),
        })
    }

    pub fn register(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
    }

    /// Switches `fd` (registered under `token`) between level- and
    /// edge-triggered readiness; false if epoll refused.
    pub fn set_level_triggered(&mut self, fd: RawFd, token: usize, level: bool) -> bool {
        use std::os::fd::AsRawFd;
        let mut events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if !level {
            events |= libc::EPOLLET as u32;
        }
        let mut ev = libc::epoll_event {
            events,
            u64: token as u64,
        };
        // SAFETY: the epoll fd belongs to `self.poll` and `fd` was
        // registered in it by the caller, both open for the duration of the
        // call; `ev` is a valid epoll_event that the kernel only reads.
        // Only the trigger mode changes: the token is the one mio
        // registered (mio reads it back from the event's data).
        let r = unsafe { libc::epoll_ctl(self.poll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) };
        r == 0
    }

    pub fn waker(
        &mut self,
        token: usize,
    ) -> Result<std::sync::Arc<dyn Fn() + Send + Sync>, String> {
        let waker = mio::Waker::new(self.poll.registry(), Token(token))
            .map_err(|e| format!("Failed to create a waker: {e}"))?;
        Ok(std::sync::Arc::new(move || {
            let _ = waker.wake();
        }))
    }

    pub fn flush_peer(&mut self, bus: &mut Bus, id: u64) {
        let Some(p) = bus.peer_mut(id) else {
            return;
        };
        if p.out.is_empty() && !p.write_interest {
            return;
        }
        // Writability is watched only while a write is blocked, as
        // dbus-daemon does: a socket that is merely writable must
        // not queue a readiness event ahead of peers that sent
        // data earlier (that would reorder their messages).
        let want_write = match p.flush() {
            Ok(Flush::Done | Flush::Waiting) => false,
            Ok(Flush::Blocked) => {
                p.detach_queued();
                true
            }
            Err(_) => {
                bus.close(id);
                return;
            }
        };
        if want_write != p.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let fd = p.stream.raw_fd();
            if self
                .poll
                .registry()
                .reregister(&mut SourceFd(&fd), Token(id as usize), interest)
                .is_ok()
            {
                p.write_interest = want_write;
            }
        }
    }

    pub fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        out.extend(self.events.iter().map(|ev| Event {
            token: ev.token().0,
            readable: ev.is_readable(),
            writable: ev.is_writable(),
            read_closed: ev.is_read_closed(),
            error: ev.is_error(),
        }));
        Ok(())
    }
}
