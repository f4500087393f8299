//! The user database cache: one answer per uid, looked up on first use and
//! again once it is older than [`TTL`] (or after [`UserDb::flush`]).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
}

/// Cached user database answers.
#[derive(Debug, Default)]
pub struct UserDb {
    entries: HashMap<u32, Entry>,
    /// Lookups made (cache misses), for tests and Debug.Stats-like checks.
    pub lookups: u64,
}

/// Asks the system user database (NSS) about `uid`.
pub fn lookup(uid: u32) -> UserInfo {
    let mut gids = Vec::new();
    let mut name = None;
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        if let Ok(cname) = std::ffi::CString::new(u.name.clone()) {
            if let Ok(g) = nix::unistd::getgrouplist(&cname, u.gid) {
                gids.extend(g.into_iter().map(|g| g.as_raw()));
            }
        }
        gids.push(u.gid.as_raw());
        name = Some(Rc::from(u.name.as_str()));
    }
    gids.sort_unstable();
    gids.dedup();
    UserInfo {
        name,
        gids: gids.into(),
    }
}

impl UserDb {
    /// The answer for `uid`, from the cache when it is fresh.
    pub fn get(&mut self, uid: u32) -> &UserInfo {
        let now = Instant::now();
        let stale = self
            .entries
            .get(&uid)
            .is_none_or(|e| now.duration_since(e.fetched) >= TTL);
        if stale {
            self.lookups += 1;
            let info = lookup(uid);
            self.entries.insert(uid, Entry { info, fetched: now });
        }
        match self.entries.get(&uid) {
            Some(e) => &e.info,
            None => unreachable!("inserted above"),
        }
    }

    /// The groups of `uid` (primary and supplementary), plus `extra`.
    pub fn groups_with(&mut self, uid: u32, extra: Option<u32>) -> Vec<u32> {
        let mut out: Vec<u32> = self.get(uid).gids.to_vec();
        if let Some(g) = extra {
            if let Err(i) = out.binary_search(&g) {
                out.insert(i, g);
            }
        }
        out
    }

    /// Forgets every answer (a reload: dbus-daemon flushes its user
    /// database cache then too).
    pub fn flush(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_cached_and_flushed() {
        let mut db = UserDb::default();
        let g = db.groups_with(0, None);
        assert!(g.contains(&0), "root's primary group is 0: {g:?}");
        assert_eq!(db.get(0).name.as_deref(), Some("root"));
        assert_eq!(db.lookups, 1);
        db.flush();
        let _ = db.get(0);
        assert_eq!(db.lookups, 2);
    }

    #[test]
    fn extra_gid_is_merged_sorted() {
        let mut db = UserDb::default();
        let g = db.groups_with(0, Some(4_000_000_000));
        assert_eq!(g.last(), Some(&4_000_000_000));
        assert!(g.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_user_has_no_groups() {
        let mut db = UserDb::default();
        let info = db.get(3_999_999_999).clone();
        assert!(info.name.is_none());
        assert!(info.gids.is_empty());
    }
}
