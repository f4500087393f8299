//! A token bucket per kind of log line, so that a peer cannot flood the
//! log (and the disk behind it) by repeating what makes the bus complain.
//! dbus-daemon has no such limit; journald's own (10000 lines per 30 s per
//! service by default) is far too coarse to protect anything.

use std::time::{Duration, Instant};

/// Lines of one kind that may come in a burst.
pub const BURST: u32 = 20;
/// One more line of a kind is allowed per this interval once the burst is
/// spent (5 lines a second).
pub const REFILL: Duration = Duration::from_millis(200);

/// The bucket of one kind.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    since: Option<Instant>,
    /// Lines dropped since the last one that went out.
    suppressed: u64,
}

/// Whether a line may go out.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Yes; this many lines of its kind were suppressed before it.
    Pass(u64),
    /// No (it was counted).
    Drop,
}

impl Bucket {
    /// A full bucket.
    pub const fn new() -> Bucket {
        Bucket {
            tokens: BURST,
            since: None,
            suppressed: 0,
        }
    }

    /// Takes a token at `now`, if there is one.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.since {
            None => self.since = Some(now),
            Some(since) => {
                let elapsed = now.saturating_duration_since(since);
                let gained = (elapsed.as_nanos() / REFILL.as_nanos()) as u64;
                if gained > 0 {
                    let t = u64::from(self.tokens) + gained;
                    self.tokens = t.min(u64::from(BURST)) as u32;
                    // Keep the remainder of a partial interval.
                    let used = REFILL.saturating_mul(gained.min(u64::from(u32::MAX)) as u32);
                    self.since = Some(if self.tokens == BURST {
                        now
                    } else {
                        since + used
                    });
                }
            }
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return Admit::Drop;
        }
        self.tokens -= 1;
        Admit::Pass(std::mem::take(&mut self.suppressed))
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_line_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        for _ in 0..BURST {
            assert_eq!(b.admit(t0), Admit::Pass(0));
        }
        for _ in 0..100 {
            assert_eq!(b.admit(t0), Admit::Drop);
        }
        assert_eq!(b.admit(t0 + REFILL / 2), Admit::Drop);
        assert_eq!(b.admit(t0 + REFILL), Admit::Pass(101));
        assert_eq!(b.admit(t0 + REFILL), Admit::Drop);
        // A long quiet spell refills the bucket, but no further.
        let later = t0 + REFILL * 1000;
        assert_eq!(b.admit(later), Admit::Pass(1));
        for _ in 1..BURST {
            assert_eq!(b.admit(later), Admit::Pass(0));
        }
        assert_eq!(b.admit(later), Admit::Drop);
    }
}
