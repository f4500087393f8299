//! Reply tracking: which method calls are waiting for a reply, so that a
//! reply is delivered once and only when it was asked for, callers learn
//! when the callee disconnects, and calls time out after reply_timeout.

use std::collections::BTreeSet;
use std::time::Instant;

use super::idmap::{IdMap, KeyedMap, KeyedSet};

#[derive(Debug, Clone, Copy)]
struct Pending {
    callee: u64,
    deadline: Option<Instant>,
}

/// Why a reply cannot be expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectError {
    /// The same caller already waits on the same serial from the same callee.
    DuplicateSerial,
    /// max_replies_per_connection reached.
    TooMany,
}

/// One connection's share of the pending calls: the serials it waits on,
/// and the (caller, serial) pairs that wait on it. A connection that
/// leaves is handled from its own entry, whatever else is pending.
#[derive(Debug, Default)]
struct Own {
    calls: KeyedSet<u32>,
    owed: KeyedSet<(u64, u32)>,
}

/// The pending calls by (caller, serial). Reached only through these
/// methods, each of which counts the entries it looks at in tests, so a
/// test can tell a lookup from a scan.
#[derive(Debug, Default)]
struct Table {
    map: KeyedMap<(u64, u32), Pending>,
    #[cfg(test)]
    visited: std::cell::Cell<usize>,
}

impl Table {
    #[inline]
    fn visit(&self, _n: usize) {
        #[cfg(test)]
        self.visited.set(self.visited.get() + _n);
    }

    fn get(&self, k: &(u64, u32)) -> Option<&Pending> {
        self.visit(1);
        self.map.get(k)
    }

    fn insert(&mut self, k: (u64, u32), p: Pending) {
        self.visit(1);
        self.map.insert(k, p);
    }

    fn remove(&mut self, k: &(u64, u32)) -> Option<Pending> {
        self.visit(1);
        self.map.remove(k)
    }

    fn iter(&self) -> impl Iterator<Item = (&(u64, u32), &Pending)> + '_ {
        self.map.iter().inspect(|_| self.visit(1))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Outstanding method calls, keyed by (caller, serial).
#[derive(Debug, Default)]
pub struct Replies {
    pending: Table,
    by_peer: IdMap<Own>,
    deadlines: BTreeSet<(Instant, u64, u32)>,
}

impl Replies {
    /// Every pending call: (caller, serial, callee, deadline).
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32, u64, Option<Instant>)> + '_ {
        self.pending
            .iter()
            .map(|(&(caller, serial), p)| (caller, serial, p.callee, p.deadline))
    }

    /// Records that `callee` owes `caller` a reply to `serial`.
    pub fn expect(
        &mut self,
        caller: u64,
        callee: u64,
        serial: u32,
        deadline: Option<Instant>,
        limit: u64,
    ) -> Result<(), ExpectError> {
        if let Some(p) = self.pending.get(&(caller, serial)) {
            if p.callee == callee {
                return Err(ExpectError::DuplicateSerial);
            }
        }
        if self.count_for(caller) as u64 >= limit {
            return Err(ExpectError::TooMany);
        }
        // A call with a reused serial to another callee replaces the old
        // expectation.
        self.remove(caller, serial);
        self.pending
            .insert((caller, serial), Pending { callee, deadline });
        self.by_peer.entry(caller).or_default().calls.insert(serial);
        self.by_peer
            .entry(callee)
            .or_default()
            .owed
            .insert((caller, serial));
        if let Some(d) = deadline {
            self.deadlines.insert((d, caller, serial));
        }
        Ok(())
    }

    /// A reply from `callee` to `caller` for `serial` arrived: true (and the
    /// expectation is consumed) if it was expected.
    pub fn take(&mut self, caller: u64, callee: u64, serial: u32) -> bool {
        match self.pending.get(&(caller, serial)) {
            Some(p) if p.callee == callee => {
                self.remove(caller, serial);
                true
            }
            _ => false,
        }
    }

    fn remove(&mut self, caller: u64, serial: u32) {
        let Some(p) = self.pending.remove(&(caller, serial)) else {
            return;
        };
        if let Some(d) = p.deadline {
            self.deadlines.remove(&(d, caller, serial));
        }
        self.forget(caller, |o| {
            o.calls.remove(&serial);
        });
        self.forget(p.callee, |o| {
            o.owed.remove(&(caller, serial));
        });
    }

    /// Applies `f` to `id`'s entry. An entry that becomes empty stays until
    /// [`Replies::peer_gone`] (one per connection at most), so a peer making
    /// one call at a time does not allocate its sets again for every call.
    fn forget(&mut self, id: u64, f: impl FnOnce(&mut Own)) {
        if let Some(o) = self.by_peer.get_mut(&id) {
            f(o);
        }
    }

    /// Number of replies `caller` waits for.
    pub fn count_for(&self, caller: u64) -> u32 {
        self.by_peer
            .get(&caller)
            .map_or(0, |o| o.calls.len() as u32)
    }

    /// A peer left: forgets its own calls and returns the (caller, serial)
    /// pairs that were waiting on it, in serial order per caller. Costs
    /// O(its own calls and callers), not O(all pending calls).
    pub fn peer_gone(&mut self, id: u64) -> Vec<(u64, u32)> {
        let Some(own) = self.by_peer.remove(&id) else {
            return Vec::new();
        };
        for serial in own.calls {
            self.remove(id, serial);
        }
        let mut orphaned: Vec<(u64, u32)> = own.owed.into_iter().filter(|k| k.0 != id).collect();
        orphaned.sort_unstable();
        for &(caller, serial) in &orphaned {
            self.remove(caller, serial);
        }
        orphaned
    }

    /// Removes and returns calls whose deadline passed.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(&(d, caller, serial)) = self.deadlines.first() {
            if d > now {
                break;
            }
            out.push((caller, serial));
            self.remove(caller, serial);
        }
        out
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|d| d.0)
    }

    /// Number of calls waiting for a reply.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no call waits for a reply.
    pub fn is_empty(&self) -> bool {
        self.pending.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_take_and_limits() {
        let mut r = Replies::default();
        r.expect(1, 2, 10, None, 2).unwrap();
        assert_eq!(
            r.expect(1, 2, 10, None, 2),
            Err(ExpectError::DuplicateSerial)
        );
        r.expect(1, 3, 11, None, 2).unwrap();
        assert_eq!(r.expect(1, 3, 12, None, 2), Err(ExpectError::TooMany));
        assert!(!r.take(1, 3, 10));
        assert!(r.take(1, 2, 10));
        assert!(!r.take(1, 2, 10));
        assert_eq!(r.peer_gone(3), vec![(1, 11)]);
        assert_eq!(r.count_for(1), 0);
    }

    /// Issue 9: "`Replies::peer_gone` scans all pending replies." With
    /// 10,000 replies pending between other peers, a peer that leaves with
    /// two calls of its own and one it owes costs a look at those three
    /// entries (each removal looks once), not at all of them; the others
    /// stay pending.
    #[test]
    fn replies_peer_gone_visits_only_its_own_replies() {
        let mut r = Replies::default();
        for caller in 100..200u64 {
            for serial in 1..=100 {
                r.expect(caller, caller + 1000, serial, None, 1000).unwrap();
            }
        }
        r.expect(7, 100, 1, None, 10).unwrap(); // 7 waits on 100
        r.expect(7, 101, 2, None, 10).unwrap(); // and on 101
        r.expect(100, 7, 500, None, 1000).unwrap(); // 100 waits on 7
        assert_eq!(r.len(), 10_003);
        r.pending.visited.set(0);
        assert_eq!(r.peer_gone(7), vec![(100, 500)]);
        // One remove per entry (a lookup and removal each).
        assert_eq!(
            r.pending.visited.get(),
            3,
            "peer_gone looked beyond its own entries"
        );
        assert_eq!(r.len(), 10_000);
        assert_eq!(r.count_for(7), 0);
        assert_eq!(r.count_for(100), 100);
        // A late reply from 100 or 101 to the gone peer is not expected any
        // more; the others' are.
        assert!(!r.take(7, 100, 1));
        assert!(!r.take(7, 101, 2));
        assert!(r.take(100, 1100, 1));
        assert!(r.take(199, 1199, 100));
        // A peer that had nothing pending costs nothing.
        r.pending.visited.set(0);
        assert!(r.peer_gone(12345).is_empty());
        assert_eq!(r.pending.visited.get(), 0);
    }

    #[test]
    fn expiry() {
        let mut r = Replies::default();
        let now = Instant::now();
        r.expect(1, 2, 1, Some(now), 10).unwrap();
        r.expect(1, 2, 2, Some(now + std::time::Duration::from_secs(60)), 10)
            .unwrap();
        assert_eq!(r.expire(now), vec![(1, 1)]);
        assert_eq!(r.count_for(1), 1);
    }
}
