//! Per-user accounting: the bytes and fds queued for delivery are charged to
//! the user (uid) whose connections hold them, and each user may hold only a
//! share of a bus-wide budget, a share that shrinks as more users hold
//! something. This is dbus-broker's quota model (its src/util/user.c) applied
//! to one pool for the whole bus instead of one pool per user; the design is
//! documented for users in man/busbar.1 (PER-USER ACCOUNTING).
//!
//! * **Budget.** The pool holds `4 x max(max_incoming_bytes,
//!   max_outgoing_bytes)` bytes (at least [`MIN_BUDGET_BYTES`]) and
//!   `4 x max(max_incoming_unix_fds, max_outgoing_unix_fds)` fds (at least
//!   [`MIN_BUDGET_FDS`]), so one connection can always fill its own
//!   max_outgoing_bytes queue while the bus is otherwise idle.
//! * **Share.** With `n` users holding something (counting the one asking),
//!   `r` left in the pool and `h` held by the user already, the user may hold
//!   `(r + h) / (n + 1)` in all: half of the pool when alone, and between
//!   1/n and 1/n^2 of it when n users compete (dbus-broker's
//!   `A(users) = users + 1`).
//! * **Other users' messages.** Of what a user may hold, the messages of any
//!   one other user may take at most `1 / (k + 1)`, `k` being the number of
//!   other users with messages queued there, so a flooder cannot use up the
//!   share of the user it floods.
//! * **Over the share** a forwarded message is refused like a full queue
//!   (LimitsExceeded for a method call, the copy dropped for a signal), and
//!   a sender refused by its *own* user's share stops being read (see
//!   [`PAUSE`]). Messages from the bus itself are only charged, as
//!   dbus-daemon's per-connection limits already bound them.
//!
//! dbus-daemon's per-connection limits keep their meaning on top: a queue
//! stops at max_outgoing_bytes, a sender pauses at max_incoming_bytes.

use super::idmap::KeyedMap;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The account key of connections without a uid (TCP, or no credentials).
/// No Linux process runs as uid 4294967295 (it is `(uid_t) -1`).
pub const NO_UID: u32 = u32::MAX;
/// The smallest bus-wide byte budget.
pub const MIN_BUDGET_BYTES: u64 = 32 * 1024 * 1024;
/// The smallest bus-wide fd budget.
pub const MIN_BUDGET_FDS: u64 = 1024;
/// How long a sender refused by its own user's share stops being read, at
/// most (it resumes sooner once the user's queued messages drain below the
/// share). A bound, so a user with hung receivers does not freeze its other
/// senders for good.
pub const PAUSE: Duration = Duration::from_millis(250);

/// A paused sender resumes once its user could take this much more: a
/// refused message left the user just under its share, and resuming for
/// every few bytes drained would read (and refuse) one message at a time.
pub const PAUSE_SLACK: u64 = 64 * 1024;

/// What the whole bus may hold, and what it holds.
#[derive(Debug, Default)]
pub struct Pool {
    budget_bytes: Cell<u64>,
    budget_fds: Cell<u64>,
    bytes: Cell<u64>,
    fds: Cell<u64>,
    /// Accounts holding anything.
    holders: Cell<u64>,
}

/// Bytes and fds one other user has queued in an account.
#[derive(Debug, Clone, Copy)]
struct Foreign {
    uid: u32,
    bytes: u64,
    fds: u64,
}

/// One user's account.
#[derive(Debug)]
pub struct Account {
    /// The uid (or [`NO_UID`]).
    pub uid: u32,
    pool: Rc<Pool>,
    bytes: Cell<u64>,
    fds: Cell<u64>,
    foreign: RefCell<Vec<Foreign>>,
}

/// The largest total an account holding `held` may reach: `(r + h) / (n + 1)`.
fn allowance(budget: u64, used: u64, holders: u64, held: u64) -> u64 {
    let n = holders + u64::from(held == 0);
    let remaining = budget.saturating_sub(used);
    (remaining.saturating_add(held)) / (n + 1)
}

impl Account {
    fn new(uid: u32, pool: Rc<Pool>) -> Account {
        Account {
            uid,
            pool,
            bytes: Cell::new(0),
            fds: Cell::new(0),
            foreign: RefCell::new(Vec::new()),
        }
    }

    /// Bytes queued at this user's connections.
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Fds queued at this user's connections.
    pub fn fds(&self) -> u64 {
        self.fds.get()
    }

    fn holds(&self) -> bool {
        self.bytes.get() > 0 || self.fds.get() > 0
    }

    /// What this account may hold in all right now (bytes, fds).
    pub fn allowance(&self) -> (u64, u64) {
        let p = &self.pool;
        let holders = p.holders.get();
        (
            allowance(
                p.budget_bytes.get(),
                p.bytes.get(),
                holders,
                self.bytes.get(),
            ),
            allowance(p.budget_fds.get(), p.fds.get(), holders, self.fds.get()),
        )
    }

    /// Whether the user holds its whole share (or more): then a sender of
    /// the same user that was refused stays paused.
    pub fn over_share(&self) -> bool {
        let (ab, af) = self.allowance();
        self.bytes.get().saturating_add(PAUSE_SLACK) > ab
            || (self.fds.get() > 0 && self.fds.get() >= af)
    }

    /// Whether a message of `bytes` and `fds` sent by `actor` may be queued
    /// at one of this user's connections.
    pub fn admits(&self, actor: u32, bytes: u64, fds: u64) -> bool {
        let (ab, af) = self.allowance();
        let (hb, hf) = (self.bytes.get(), self.fds.get());
        if hb.saturating_add(bytes) > ab || (fds > 0 && hf.saturating_add(fds) > af) {
            return false;
        }
        if actor == self.uid {
            return true;
        }
        let foreign = self.foreign.borrow();
        let mine = foreign.iter().find(|f| f.uid == actor);
        let k = foreign.len() as u64 + u64::from(mine.is_none());
        let (ub, uf) = mine.map_or((0, 0), |f| (f.bytes, f.fds));
        ub.saturating_add(bytes) <= ab / (k + 1)
            && (fds == 0 || uf.saturating_add(fds) <= af / (k + 1))
    }

    /// Charges a queued message (always succeeds: the checks are
    /// [`Account::admits`]'s).
    pub fn charge(&self, actor: u32, bytes: u64, fds: u64) {
        if bytes == 0 && fds == 0 {
            return;
        }
        let p = &self.pool;
        if !self.holds() {
            p.holders.set(p.holders.get() + 1);
        }
        self.bytes.set(self.bytes.get() + bytes);
        self.fds.set(self.fds.get() + fds);
        p.bytes.set(p.bytes.get() + bytes);
        p.fds.set(p.fds.get() + fds);
        if actor != self.uid {
            let mut foreign = self.foreign.borrow_mut();
            match foreign.iter_mut().find(|f| f.uid == actor) {
                Some(f) => {
                    f.bytes += bytes;
                    f.fds += fds;
                }
                None => foreign.push(Foreign {
                    uid: actor,
                    bytes,
                    fds,
                }),
            }
        }
    }

    /// Gives back what [`Account::charge`] took.
    pub fn release(&self, actor: u32, bytes: u64, fds: u64) {
        if bytes == 0 && fds == 0 {
            return;
        }
        let p = &self.pool;
        self.bytes.set(self.bytes.get().saturating_sub(bytes));
        self.fds.set(self.fds.get().saturating_sub(fds));
        p.bytes.set(p.bytes.get().saturating_sub(bytes));
        p.fds.set(p.fds.get().saturating_sub(fds));
        if !self.holds() {
            p.holders.set(p.holders.get().saturating_sub(1));
        }
        if actor != self.uid {
            let mut foreign = self.foreign.borrow_mut();
            if let Some(i) = foreign.iter().position(|f| f.uid == actor) {
                let f = &mut foreign[i];
                f.bytes = f.bytes.saturating_sub(bytes);
                f.fds = f.fds.saturating_sub(fds);
                if f.bytes == 0 && f.fds == 0 {
                    foreign.swap_remove(i);
                }
            }
        }
    }
}

/// Every user's account, and the pool they share.
#[derive(Debug, Default)]
pub struct Users {
    pool: Rc<Pool>,
    /// By uid, hashed with one keyed multiply rather than SipHash (looked
    /// up at every connection and disconnection; see [`super::idmap`]).
    accounts: KeyedMap<u32, Weak<Account>>,
    /// Connections that completed Hello, by authenticated uid
    /// (max_connections_per_user).
    active: KeyedMap<u32, u64>,
}

impl Users {
    /// Accounts with the budget derived from `limits`.
    pub fn new(limits: &policy::Limits) -> Users {
        let u = Users::default();
        u.set_budget(limits);
        u
    }

    /// Derives the bus-wide budget from dbus-daemon's per-connection limits
    /// (at start-up and on reload).
    pub fn set_budget(&self, l: &policy::Limits) {
        let bytes = l
            .max_incoming_bytes
            .max(l.max_outgoing_bytes)
            .saturating_mul(4)
            .max(MIN_BUDGET_BYTES);
        let fds = l
            .max_incoming_unix_fds
            .max(l.max_outgoing_unix_fds)
            .saturating_mul(4)
            .max(MIN_BUDGET_FDS);
        self.pool.budget_bytes.set(bytes);
        self.pool.budget_fds.set(fds);
    }

    /// The bus-wide budget (bytes, fds).
    pub fn budget(&self) -> (u64, u64) {
        (self.pool.budget_bytes.get(), self.pool.budget_fds.get())
    }

    /// What the bus holds in all (bytes, fds).
    pub fn used(&self) -> (u64, u64) {
        (self.pool.bytes.get(), self.pool.fds.get())
    }

    /// The account of `uid`, created on first use. Accounts live as long as
    /// a connection holds them.
    pub fn account(&mut self, uid: u32) -> Rc<Account> {
        if let Some(a) = self.accounts.get(&uid).and_then(Weak::upgrade) {
            return a;
        }
        if self.accounts.len() >= 64 {
            self.accounts.retain(|_, w| w.strong_count() > 0);
        }
        let a = Rc::new(Account::new(uid, self.pool.clone()));
        self.accounts.insert(uid, Rc::downgrade(&a));
        a
    }

    /// Connections of `uid` that completed Hello.
    pub fn active(&self, uid: u32) -> u64 {
        self.active.get(&uid).copied().unwrap_or(0)
    }

    /// A connection of `uid` completed Hello.
    pub fn add_active(&mut self, uid: u32) {
        *self.active.entry(uid).or_insert(0) += 1;
    }

    /// A connection of `uid` that had completed Hello went away.
    pub fn remove_active(&mut self, uid: u32) {
        if let Some(n) = self.active.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.active.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(mib: u64) -> Users {
        let l = policy::Limits {
            max_incoming_bytes: mib << 20,
            max_outgoing_bytes: mib << 20,
            ..policy::Limits::default()
        };
        Users::new(&l)
    }

    #[test]
    fn budget_follows_the_connection_limits() {
        assert_eq!(users(8).budget().0, 32 << 20);
        assert_eq!(users(1).budget().0, MIN_BUDGET_BYTES);
        assert_eq!(users(127).budget().0, 508 << 20);
    }

    #[test]
    fn a_lone_user_gets_half_the_pool() {
        let mut u = users(8);
        let a = u.account(65534);
        assert_eq!(a.allowance().0, 16 << 20);
        assert!(a.admits(65534, 16 << 20, 0));
        assert!(!a.admits(65534, (16 << 20) + 1, 0));
        a.charge(65534, (16 << 20) - 4096, 0);
        assert!(a.over_share(), "within PAUSE_SLACK of the share");
        assert!(!a.admits(65534, 8192, 0));
        a.release(65534, 1 << 20, 0);
        assert!(!a.over_share());
        assert!(a.admits(65534, 1, 0));
    }

    #[test]
    fn a_newcomer_still_finds_room() {
        let mut u = users(8);
        let hog = u.account(65534);
        hog.charge(65534, 16 << 20, 0);
        let root = u.account(0);
        // (32 - 16) / 3 for the newcomer; the hog may not grow at all.
        assert_eq!(root.allowance().0, (16 << 20) / 3);
        assert!(root.admits(0, 4 << 20, 0));
        assert!(!hog.admits(65534, 1, 0));
        root.charge(0, 4 << 20, 0);
        let (used, _) = u.used();
        assert_eq!(used, 20 << 20);
        assert!(used <= u.budget().0);
    }

    #[test]
    fn another_user_takes_at_most_half_of_a_share() {
        let mut u = users(8);
        let root = u.account(0);
        let half = root.allowance().0 / 2;
        assert!(root.admits(65534, half, 0));
        assert!(!root.admits(65534, half + 1, 0));
        root.charge(65534, half, 0);
        assert!(!root.admits(65534, 1, 0), "the flooder is at its cap");
        assert!(root.admits(0, 1 << 20, 0), "root's own traffic still fits");
        assert!(root.admits(1000, 1 << 20, 0), "a third user still fits");
        root.release(65534, half, 0);
        assert_eq!(root.bytes(), 0);
        assert_eq!(u.used(), (0, 0));
    }

    #[test]
    fn fds_are_a_separate_dimension() {
        let mut u = users(8);
        let a = u.account(7);
        let (_, af) = a.allowance();
        assert!(a.admits(7, 10, af));
        assert!(!a.admits(7, 10, af + 1));
    }

    #[test]
    fn accounts_are_shared_and_forgotten() {
        let mut u = users(8);
        let a = u.account(5);
        let b = u.account(5);
        assert!(Rc::ptr_eq(&a, &b));
        drop((a, b));
        let c = u.account(5);
        assert_eq!(c.bytes(), 0);
        u.add_active(5);
        u.add_active(5);
        assert_eq!(u.active(5), 2);
        u.remove_active(5);
        u.remove_active(5);
        assert_eq!(u.active(5), 0);
    }
}
