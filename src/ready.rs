//! The loop's ready queue: which connections get a turn in the next round,
//! and in what order.
//!
//! Sockets are edge-triggered, so a connection that still has input (it
//! used its whole turn before reaching EAGAIN) gets no new event: it must
//! stay queued until a turn ends with nothing left to read. A round serves
//! first the connections that became ready since the last round, then those
//! that used their whole turn in it, so a flooder queues behind everyone who
//! sent a little (dbus-broker orders its dispatch rounds the same way).
//!
//! Connections that have not completed Hello wait in a queue of their own,
//! from which a round takes only a few: a client of the bus is then never
//! stuck behind a crowd of peers that connect, fail to authenticate or send
//! garbage, and reconnect, whose turns (SASL, credentials, policy) cost far
//! more than a method call. dbus-daemon bounds the same crowd with
//! max_incomplete_connections; this bounds the time it takes from a round.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasherDefault;

use crate::broker::idmap::IdHasher;

/// Which queue a connection waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Completed Hello: served every round.
    Client,
    /// Not yet a client: a bounded number per round.
    Incomplete,
}

/// Connections waiting for a turn. Each is queued at most once.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    /// Clients that became ready since the last round, in the order they did.
    fresh: VecDeque<u64>,
    /// Clients that used their whole turn in the last round.
    again: Vec<u64>,
    /// Incomplete connections, first come first served.
    incomplete: VecDeque<u64>,
    /// Everything in the queues or in the round being served.
    queued: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl ReadyQueue {
    /// `id` has something to read: queue it unless it already is.
    pub fn schedule(&mut self, id: u64, class: Class) {
        if self.queued.insert(id) {
            match class {
                Class::Client => self.fresh.push_back(id),
                Class::Incomplete => self.incomplete.push_back(id),
            }
        }
    }

    /// Moves the next round's connections into `round`: fresh clients,
    /// then the clients that used their whole turn, then at most
    /// `max_incomplete` incomplete connections. Each stays queued until
    /// [`ReadyQueue::requeue`] or [`ReadyQueue::done`] is called for it.
    /// Returns how many fresh clients lead the round.
    pub fn take_round(&mut self, round: &mut Vec<u64>, max_incomplete: usize) -> usize {
        round.clear();
        round.extend(self.fresh.drain(..));
        let fresh = round.len();
        round.append(&mut self.again);
        let n = self.incomplete.len().min(max_incomplete);
        round.extend(self.incomplete.drain(..n));
        fresh
    }

    /// `id` used its whole turn and may have more: a client goes behind
    /// the clients that become ready before the next round, an incomplete
    /// connection to the back of its queue.
    pub fn requeue(&mut self, id: u64, class: Class) {
        match class {
            Class::Client => self.again.push(id),
            Class::Incomplete => self.incomplete.push_back(id),
        }
    }

    /// `id` has nothing more to read now (or is gone, or must wait for its
    /// messages to drain): the next readiness event queues it again.
    pub fn done(&mut self, id: u64) {
        self.queued.remove(&id);
    }

    /// Whether any connection waits for a turn.
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.again.is_empty() && self.incomplete.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Class = Class::Client;
    const I: Class = Class::Incomplete;

    #[test]
    fn fresh_before_those_that_used_their_turn() {
        let mut q = ReadyQueue::default();
        let mut round = Vec::new();
        q.schedule(1, C);
        q.schedule(2, C);
        q.schedule(1, C);
        q.take_round(&mut round, 4);
        assert_eq!(round, [1, 2]);
        // 1 used its whole turn, 2 ran dry; then 3 and 2 become ready and
        // 1 gets another event while it is still queued.
        q.requeue(1, C);
        q.done(2);
        q.schedule(3, C);
        q.schedule(2, C);
        q.schedule(1, C);
        assert_eq!(q.take_round(&mut round, 4), 2);
        assert_eq!(round, [3, 2, 1]);
        for id in [1, 2, 3] {
            q.done(id);
        }
        assert!(q.is_empty());
        q.take_round(&mut round, 4);
        assert!(round.is_empty());
    }

    #[test]
    fn incomplete_connections_a_few_per_round() {
        let mut q = ReadyQueue::default();
        let mut round = Vec::new();
        for id in 10..15 {
            q.schedule(id, I);
        }
        q.schedule(1, C);
        assert_eq!(q.take_round(&mut round, 2), 1);
        assert_eq!(round, [1, 10, 11]);
        q.done(1);
        q.done(10);
        // 11 completed Hello during its turn and has more.
        q.requeue(11, C);
        q.schedule(12, I);
        q.take_round(&mut round, 2);
        assert_eq!(round, [11, 12, 13]);
        q.done(11);
        q.requeue(12, I);
        q.done(13);
        q.take_round(&mut round, 2);
        assert_eq!(round, [14, 12]);
        q.done(14);
        q.done(12);
        assert!(q.is_empty());
    }
}
