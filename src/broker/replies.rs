//! Reply tracking: which method calls are waiting for a reply, so that a
//! reply is delivered once and only when it was asked for, callers learn
//! when the callee disconnects, and calls time out after reply_timeout.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

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

/// Outstanding method calls, keyed by (caller, serial).
#[derive(Debug, Default)]
pub struct Replies {
    pending: HashMap<(u64, u32), Pending>,
    per_caller: HashMap<u64, u32>,
    deadlines: BTreeSet<(Instant, u64, u32)>,
}

impl Replies {
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
        let count = self.per_caller.get(&caller).copied().unwrap_or(0);
        if u64::from(count) >= limit {
            return Err(ExpectError::TooMany);
        }
        if let Some(old) = self
            .pending
            .insert((caller, serial), Pending { callee, deadline })
        {
            // A call with a reused serial to another callee replaces the old
            // expectation.
            if let Some(d) = old.deadline {
                self.deadlines.remove(&(d, caller, serial));
            }
        } else {
            *self.per_caller.entry(caller).or_insert(0) += 1;
        }
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
        if let Some(p) = self.pending.remove(&(caller, serial)) {
            if let Some(d) = p.deadline {
                self.deadlines.remove(&(d, caller, serial));
            }
            if let Some(c) = self.per_caller.get_mut(&caller) {
                *c -= 1;
                if *c == 0 {
                    self.per_caller.remove(&caller);
                }
            }
        }
    }

    /// Number of replies `caller` waits for.
    pub fn count_for(&self, caller: u64) -> u32 {
        self.per_caller.get(&caller).copied().unwrap_or(0)
    }

    /// A peer left: forgets its own calls and returns the (caller, serial)
    /// pairs that were waiting on it, in serial order per caller.
    pub fn peer_gone(&mut self, id: u64) -> Vec<(u64, u32)> {
        let keys: Vec<(u64, u32)> = self
            .pending
            .iter()
            .filter(|(k, p)| k.0 == id || p.callee == id)
            .map(|(k, _)| *k)
            .collect();
        let mut orphaned = Vec::new();
        for (caller, serial) in keys {
            if caller != id {
                orphaned.push((caller, serial));
            }
            self.remove(caller, serial);
        }
        orphaned.sort_unstable();
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
