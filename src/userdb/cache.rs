//! The user database cache: one answer per uid, asked of the worker thread
//! ([`super::worker`]) on first use and again once it is older than [`TTL`]
//! or flushed by a reload. Nothing here blocks: a connection that needs an
//! answer the cache does not have yet waits for it ([`UserDb::wait_for`])
//! and is handed back by [`UserDb::take_answered`] once the worker replied.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::worker::{ask_nss, Answer, Received, Worker};

/// How long an answer is used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(60);

/// What the user database says about one uid.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// The login name (None: no such user).
    pub name: Option<Rc<str>>,
    /// The primary group and every supplementary group (getgrouplist),
    /// sorted, without duplicates; empty when the user is unknown.
    pub gids: Rc<[u32]>,
}

#[derive(Debug)]
struct Entry {
    info: UserInfo,
    fetched: Instant,
    /// A reload flushed it: new connections wait for a fresh answer, the
    /// ones already connected keep using it until then.
    flushed: bool,
}

impl Entry {
    fn is_fresh(&self, now: Instant) -> bool {
        !self.flushed && now.duration_since(self.fetched) < TTL
    }
}

/// Cached user database answers.
#[derive(Debug, Default)]
pub struct UserDb {
    entries: HashMap<u32, Entry>,
    /// Uids asked of the worker and not answered yet.
    in_flight: HashSet<u32>,
    /// Connections waiting for an answer, and the uid they wait for.
    waiting: HashMap<u64, u32>,
    /// Started on the first miss.
    worker: Option<Worker>,
    /// Lookups made (cache misses), for tests and Debug.Stats-like checks.
    pub lookups: u64,
}

impl From<Answer> for UserInfo {
    fn from(a: Answer) -> UserInfo {
        UserInfo {
            name: a.name.map(Rc::from),
            gids: a.gids.into(),
        }
    }
}

impl UserDb {
    /// A fresh answer for `uid`, or None after asking the worker for one
    /// (the caller then waits, see [`UserDb::wait_for`]).
    pub fn fresh(&mut self, uid: u32) -> Option<&UserInfo> {
        let now = Instant::now();
        if self.entries.get(&uid).is_some_and(|e| e.is_fresh(now)) {
            return self.entries.get(&uid).map(|e| &e.info);
        }
        self.ask(uid);
        // The worker could not be started: the answer was stored above.
        self.entries
            .get(&uid)
            .filter(|e| e.is_fresh(now))
            .map(|e| &e.info)
    }

    /// Any answer for `uid`, even one past its TTL or flushed (then a fresh
    /// one is asked for), for decisions about connections already admitted:
    /// a reload re-deciding their policy must not wait.
    pub fn known(&mut self, uid: u32) -> Option<&UserInfo> {
        let now = Instant::now();
        match self.entries.get(&uid) {
            Some(e) if e.is_fresh(now) => {}
            _ => self.ask(uid),
        }
        self.entries.get(&uid).map(|e| &e.info)
    }

    /// The groups of `uid` (primary and supplementary) plus `extra`, if a
    /// fresh answer is there; None after asking for one.
    pub fn fresh_groups(&mut self, uid: u32, extra: Option<u32>) -> Option<Vec<u32>> {
        let mut out: Vec<u32> = self.fresh(uid)?.gids.to_vec();
        if let Some(g) = extra {
            if let Err(i) = out.binary_search(&g) {
                out.insert(i, g);
            }
        }
        Some(out)
    }

    /// Asks the worker about `uid` unless that is already under way.
    fn ask(&mut self, uid: u32) {
        if self.in_flight.contains(&uid) {
            return;
        }
        self.lookups += 1;
        if self.worker.is_none() {
            self.worker = Worker::spawn();
        }
        if self.worker.as_ref().is_some_and(|w| w.ask(uid)) {
            self.in_flight.insert(uid);
            return;
        }
        // No thread could be started (or it died): answer here rather than
        // never. This blocks the loop, but only when threads fail.
        self.worker = None;
        self.store(ask_nss(uid));
    }

    fn store(&mut self, a: Answer) {
        self.in_flight.remove(&a.uid);
        let uid = a.uid;
        self.entries.insert(
            uid,
            Entry {
                info: a.into(),
                fetched: Instant::now(),
                flushed: false,
            },
        );
    }

    /// Connection `conn` waits for the answer about `uid`.
    pub fn wait_for(&mut self, conn: u64, uid: u32) {
        self.waiting.insert(conn, uid);
    }

    /// Whether connection `conn` waits for an answer.
    pub fn is_waiting(&self, conn: u64) -> bool {
        self.waiting.contains_key(&conn)
    }

    /// Connection `conn` is gone: it waits no more.
    pub fn forget(&mut self, conn: u64) {
        self.waiting.remove(&conn);
    }

    /// Stores the answers that arrived and returns the connections whose
    /// answer is now there (they stop waiting). Costs nothing per
    /// connection but the waiting ones.
    pub fn take_answered(&mut self) -> Vec<u64> {
        while let Some(w) = &self.worker {
            match w.try_answer() {
                Received::Answer(a) => self.store(a),
                Received::Nothing => break,
                Received::WorkerGone => {
                    // Whatever was in flight is asked again (by a new
                    // worker, or here).
                    self.worker = None;
                    let lost: Vec<u32> = self.in_flight.drain().collect();
                    for uid in lost {
                        self.ask(uid);
                    }
                }
            }
        }
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::new();
        let in_flight = &self.in_flight;
        self.waiting.retain(|&conn, uid| {
            if in_flight.contains(uid) {
                return true;
            }
            done.push(conn);
            false
        });
        done.sort_unstable();
        done
    }

    /// Blocks until every lookup in flight is answered (tests and tools,
    /// never the loop).
    pub fn wait_all(&mut self) {
        while !self.in_flight.is_empty() {
            let Some(a) = self.worker.as_ref().and_then(Worker::wait_answer) else {
                return;
            };
            self.store(a);
        }
    }

    /// Marks every answer stale (a reload: dbus-daemon flushes its user
    /// database cache then too). New connections wait for fresh answers;
    /// the old ones serve connections already admitted until then.
    pub fn flush(&mut self) {
        for e in self.entries.values_mut() {
            e.flushed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh answer for `uid`, waiting for the worker if need be.
    fn resolved(db: &mut UserDb, uid: u32) -> UserInfo {
        if db.fresh(uid).is_none() {
            db.wait_all();
        }
        db.fresh(uid).expect("answered").clone()
    }

    #[test]
    fn root_is_cached_and_flushed() {
        let mut db = UserDb::default();
        assert!(db.fresh(0).is_none(), "a miss is asked of the worker");
        db.wait_for(7, 0);
        assert!(db.is_waiting(7));
        db.wait_all();
        assert_eq!(db.take_answered(), [7]);
        assert!(db.fresh(0).is_some_and(|i| i.gids.contains(&0)));
        assert_eq!(db.lookups, 1);
        db.flush();
        assert_eq!(
            db.known(0).and_then(|i| i.name.clone()).as_deref(),
            Some("root"),
            "a flushed answer still serves connections already admitted"
        );
        assert_eq!(db.lookups, 2, "and a fresh one is asked for");
        assert!(db.fresh(0).is_none(), "new connections wait for it");
        assert_eq!(db.lookups, 2, "one lookup in flight per uid");
        db.wait_all();
        assert_eq!(resolved(&mut db, 0).name.as_deref(), Some("root"));
    }

    #[test]
    fn waiters_are_handed_back_when_their_answer_arrives() {
        let mut db = UserDb::default();
        assert!(db.fresh(0).is_none());
        db.wait_for(1, 0);
        db.wait_for(2, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut done = Vec::new();
        while done.is_empty() && Instant::now() < deadline {
            done = db.take_answered();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(done, [1, 2]);
        assert!(!db.is_waiting(1) && !db.is_waiting(2));
        assert!(db.fresh(0).is_some());
    }

    #[test]
    fn extra_gid_is_merged_sorted() {
        let mut db = UserDb::default();
        let _ = resolved(&mut db, 0);
        let g = db.fresh_groups(0, Some(4_000_000_000)).expect("cached");
        assert_eq!(g.last(), Some(&4_000_000_000));
        assert!(g.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_user_has_no_groups() {
        let mut db = UserDb::default();
        let info = resolved(&mut db, 3_999_999_999);
        assert!(info.name.is_none());
        assert!(info.gids.is_empty());
    }
}
