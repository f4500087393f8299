//! Per-connection deadlines (authentication, pending fds) in one ordered
//! set, so that the loop finds the next one and fires the due ones in
//! O(log n) of the deadlines armed, never by walking every connection.
//!
//! Entries are removed when they are disarmed (Hello completed, the fds
//! found their message, the peer left), not left behind for lazy deletion:
//! a peer that connects and completes Hello at a high rate would otherwise
//! leave one dead entry per connection for the whole auth_timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::bus::Bus;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SASL and Hello must be done by then (auth_timeout).
    Auth,
    /// Fds waiting for the rest of their message (pending_fd_timeout).
    PendingFds,
    /// A sender of spliced bodies waiting for its recipients
    /// ([`super::splice::PATIENCE`]).
    SpliceWait,
}

/// Armed deadlines, earliest first.
#[derive(Debug, Default)]
pub struct Deadlines {
    set: BTreeSet<(Instant, u64, Kind)>,
}

impl Deadlines {
    /// Arms `kind` for connection `id` at `at`.
    pub fn arm(&mut self, at: Instant, id: u64, kind: Kind) {
        self.set.insert((at, id, kind));
    }

    /// Disarms what [`Deadlines::arm`] armed with the same arguments.
    pub fn disarm(&mut self, at: Instant, id: u64, kind: Kind) {
        self.set.remove(&(at, id, kind));
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|e| e.0)
    }

    /// Removes and returns one deadline that is due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u64, Kind)> {
        let &(at, id, kind) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.pop_first();
        Some((id, kind))
    }

    /// Number of armed deadlines.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none is armed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl Bus {
    /// Arms the authentication deadline of a new connection `id`.
    pub fn arm_auth_deadline(&mut self, id: u64) {
        let at = Instant::now() + Duration::from_millis(self.config.limits.auth_timeout);
        if let Some(p) = self.peers.get_mut(&id) {
            if let Some(old) = p.auth_deadline.replace(at) {
                self.deadlines.disarm(old, id, Kind::Auth);
            }
            self.deadlines.arm(at, id, Kind::Auth);
        }
    }

    /// Connection `id` completed Hello (or is leaving): no auth deadline.
    pub fn disarm_auth_deadline(&mut self, id: u64) {
        if let Some(at) = self.peers.get_mut(&id).and_then(|p| p.auth_deadline.take()) {
            self.deadlines.disarm(at, id, Kind::Auth);
        }
    }

    /// Whether connection `id` has fds waiting for their message: arms
    /// pending_fd_timeout when they start waiting, disarms it when none is
    /// left. The timeout is the one configured when they started waiting
    /// (as dbus-daemon, which sets a connection's timeout up once).
    pub fn set_fds_pending(&mut self, id: u64, pending: bool) {
        let timeout = Duration::from_millis(self.config.limits.pending_fd_timeout);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        match (pending, p.pending_fd_deadline) {
            (true, None) => {
                let at = Instant::now() + timeout;
                p.pending_fd_deadline = Some(at);
                self.deadlines.arm(at, id, Kind::PendingFds);
            }
            (false, Some(at)) => {
                p.pending_fd_deadline = None;
                self.deadlines.disarm(at, id, Kind::PendingFds);
            }
            _ => {}
        }
    }

    /// Disconnects every connection whose authentication or pending-fd
    /// deadline is due at `now`, with dbus-daemon's log lines.
    pub fn expire_deadlines(&mut self, now: Instant) {
        while let Some((id, kind)) = self.deadlines.pop_due(now) {
            let limits = &self.config.limits;
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            match kind {
                Kind::Auth => p.auth_deadline = None,
                Kind::PendingFds => p.pending_fd_deadline = None,
                Kind::SpliceWait => p.splice_deadline = None,
            }
            if p.closing {
                continue;
            }
            match kind {
                Kind::SpliceWait => {
                    self.splice_patience_over(id);
                    continue;
                }
                // dbus-daemon's words; incomplete means until Hello.
                Kind::Auth => crate::log::peer_warning(
                    crate::log::Kind::AuthTimeout,
                    &p.who(),
                    &format!(
                        "Connection has not authenticated soon enough, closing it \
                         (auth_timeout={}ms)",
                        limits.auth_timeout
                    ),
                ),
                Kind::PendingFds => crate::log::peer_warning(
                    crate::log::Kind::LimitReached,
                    &p.who(),
                    &format!(
                        "Connection \"{}\" ({}) has had Unix fds pending for too long, \
                         closing it (pending_fd_timeout={} ms)",
                        p.name(),
                        p.loginfo(),
                        limits.pending_fd_timeout
                    ),
                ),
            }
            self.close(id);
        }
    }

    /// Disarms everything connection `id` had armed (it is being removed).
    pub fn disarm_deadlines(&mut self, id: u64) {
        self.disarm_auth_deadline(id);
        self.set_fds_pending(id, false);
        self.splice_wait_ends(id);
        super::splice::forget_sender(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_and_disarm() {
        let mut d = Deadlines::default();
        let t = Instant::now();
        let s = Duration::from_secs(1);
        d.arm(t + 2 * s, 1, Kind::Auth);
        d.arm(t + s, 2, Kind::PendingFds);
        d.arm(t + 3 * s, 3, Kind::Auth);
        assert_eq!(d.next(), Some(t + s));
        d.disarm(t + s, 2, Kind::PendingFds);
        assert_eq!(d.next(), Some(t + 2 * s));
        assert_eq!(d.pop_due(t + s), None);
        assert_eq!(d.pop_due(t + 2 * s), Some((1, Kind::Auth)));
        assert_eq!(d.pop_due(t + 2 * s), None);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(t + 9 * s), Some((3, Kind::Auth)));
        assert!(d.is_empty());
    }
}
