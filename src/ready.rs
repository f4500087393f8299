//! The loop's ready queue: which connections get a turn in the next round,
//! and in what order.
//!
//! Sockets are edge-triggered, so a connection that still has input (it
//! used its whole turn before reaching EAGAIN) gets no new event: it must
//! stay queued until a turn ends with nothing left to read. A round serves
//! first the connections that became ready since the last round, then those
//! that used their whole turn in it, so a flooder queues behind everyone who
//! sent a little (dbus-broker orders its dispatch rounds the same way).

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasherDefault;

use crate::broker::idmap::IdHasher;

/// Connections waiting for a turn. Each is queued at most once.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    /// Became ready since the last round, in the order they did.
    fresh: VecDeque<u64>,
    /// Used their whole turn in the last round.
    again: Vec<u64>,
    /// Everything in `fresh`, `again` or the round being served.
    queued: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl ReadyQueue {
    /// `id` has something to read: queue it unless it already is.
    pub fn schedule(&mut self, id: u64) {
        if self.queued.insert(id) {
            self.fresh.push_back(id);
        }
    }

    /// Moves the next round's connections into `round` (fresh ones first).
    /// Each stays queued until [`ReadyQueue::requeue`] or
    /// [`ReadyQueue::done`] is called for it.
    pub fn take_round(&mut self, round: &mut Vec<u64>) {
        round.clear();
        round.extend(self.fresh.drain(..));
        round.append(&mut self.again);
    }

    /// `id` used its whole turn and may have more: it goes behind the
    /// connections that become ready before the next round.
    pub fn requeue(&mut self, id: u64) {
        self.again.push(id);
    }

    /// `id` has nothing more to read now (or is gone, or must wait for its
    /// messages to drain): the next readiness event queues it again.
    pub fn done(&mut self, id: u64) {
        self.queued.remove(&id);
    }

    /// Whether any connection waits for a turn.
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.again.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_before_those_that_used_their_turn() {
        let mut q = ReadyQueue::default();
        let mut round = Vec::new();
        q.schedule(1);
        q.schedule(2);
        q.schedule(1);
        q.take_round(&mut round);
        assert_eq!(round, [1, 2]);
        // 1 used its whole turn, 2 ran dry; then 3 and 2 become ready and
        // 1 gets another event while it is still queued.
        q.requeue(1);
        q.done(2);
        q.schedule(3);
        q.schedule(2);
        q.schedule(1);
        q.take_round(&mut round);
        assert_eq!(round, [3, 2, 1]);
        for id in [1, 2, 3] {
            q.done(id);
        }
        assert!(q.is_empty());
        q.take_round(&mut round);
        assert!(round.is_empty());
    }
}
