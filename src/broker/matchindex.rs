//! The bus's match-rule index: every connection's AddMatch rules, filed by
//! their most selective keys so that a broadcast only looks at rules that
//! can possibly match it.
//!
//! Rules with `eavesdrop='true'` are kept apart: a message with a destination
//! can only match those (dbus-daemon 1.14 semantics, see `Bus::rule_matches`),
//! so unicast traffic looks at no rule at all unless someone eavesdrops.
//!
//! Filing (dbus-broker's order): first by the `sender=` key (a rule with one
//! can only match messages from a connection owning that name), then by
//! `interface=` and `member=`. A rule without any of these keys goes to the
//! `rest` list of its sender level. A message collects its candidates from
//! at most four lists per sender level: (interface, any member),
//! (interface, member), (no interface, member) and rest. Each candidate then
//! gets the full check (`Bus::rule_matches`).
//!
//! Rules are owned per connection, in the order added, so RemoveMatch can
//! remove the most recent of several identical rules and Debug.Stats can list
//! them. Every rule knows its position in its list, so removal is O(1) after
//! the per-connection search.

use std::cell::Cell;
use std::collections::HashMap;

use super::matchrule::MatchRule;

/// Index of a rule in the slab.
type RuleId = u32;

/// One stored rule.
#[derive(Debug)]
struct Entry {
    rule: MatchRule,
    /// Index into `owners`.
    owner: u32,
    /// Position in its bucket list.
    pos: u32,
}

/// One connection's rules.
#[derive(Debug)]
struct Owner {
    peer: u64,
    /// Rule ids in the order added.
    rules: Vec<RuleId>,
    /// The `MatchIndex::stamp` of the last message this connection was
    /// selected for (dedups recipients without a sort).
    stamp: Cell<u64>,
}

/// Rules of one sender level, by interface and member.
#[derive(Debug, Default)]
struct Buckets {
    /// Rules with an interface key: (rules without member, rules by member).
    by_iface: HashMap<Box<str>, IfaceBucket>,
    /// Rules with a member key but no interface key.
    by_member: HashMap<Box<str>, Vec<RuleId>>,
    /// Rules with neither.
    rest: Vec<RuleId>,
}

#[derive(Debug, Default)]
struct IfaceBucket {
    any_member: Vec<RuleId>,
    by_member: HashMap<Box<str>, Vec<RuleId>>,
}

impl IfaceBucket {
    fn is_empty(&self) -> bool {
        self.any_member.is_empty() && self.by_member.is_empty()
    }
}

impl Buckets {
    fn is_empty(&self) -> bool {
        self.by_iface.is_empty() && self.by_member.is_empty() && self.rest.is_empty()
    }

    /// The list a rule with these keys lives in (created when missing).
    fn list_mut(&mut self, iface: Option<&str>, member: Option<&str>) -> &mut Vec<RuleId> {
        match (iface, member) {
            (Some(i), m) => {
                let b = self.by_iface.entry(i.into()).or_default();
                match m {
                    Some(m) => b.by_member.entry(m.into()).or_default(),
                    None => &mut b.any_member,
                }
            }
            (None, Some(m)) => self.by_member.entry(m.into()).or_default(),
            (None, None) => &mut self.rest,
        }
    }

    /// Removes position `pos` from the list for (iface, member), dropping
    /// lists that become empty. Returns the rule moved into `pos`, if any.
    fn remove_at(
        &mut self,
        iface: Option<&str>,
        member: Option<&str>,
        pos: usize,
    ) -> Option<RuleId> {
        fn take(v: &mut Vec<RuleId>, pos: usize) -> Option<RuleId> {
            v.swap_remove(pos);
            v.get(pos).copied()
        }
        match (iface, member) {
            (Some(i), m) => {
                let b = self.by_iface.get_mut(i)?;
                let moved = match m {
                    Some(m) => {
                        let v = b.by_member.get_mut(m)?;
                        let moved = take(v, pos);
                        if v.is_empty() {
                            b.by_member.remove(m);
                        }
                        moved
                    }
                    None => take(&mut b.any_member, pos),
                };
                if b.is_empty() {
                    self.by_iface.remove(i);
                }
                moved
            }
            (None, Some(m)) => {
                let v = self.by_member.get_mut(m)?;
                let moved = take(v, pos);
                if v.is_empty() {
                    self.by_member.remove(m);
                }
                moved
            }
            (None, None) => take(&mut self.rest, pos),
        }
    }

    /// Calls `f` on every rule that could match a message with this
    /// interface and member.
    #[inline]
    fn candidates(&self, iface: Option<&str>, member: Option<&str>, f: &mut impl FnMut(RuleId)) {
        if let Some(i) = iface {
            if !self.by_iface.is_empty() {
                if let Some(b) = self.by_iface.get(i) {
                    b.any_member.iter().for_each(|&r| f(r));
                    if let (Some(m), false) = (member, b.by_member.is_empty()) {
                        if let Some(v) = b.by_member.get(m) {
                            v.iter().for_each(|&r| f(r));
                        }
                    }
                }
            }
        }
        if let (Some(m), false) = (member, self.by_member.is_empty()) {
            if let Some(v) = self.by_member.get(m) {
                v.iter().for_each(|&r| f(r));
            }
        }
        self.rest.iter().for_each(|&r| f(r));
    }
}

/// Rules filed by sender, then interface and member.
#[derive(Debug, Default)]
struct Level {
    /// Rules without a sender key.
    any_sender: Buckets,
    /// Rules with a sender key, by that name.
    by_sender: HashMap<Box<str>, Buckets>,
    /// Number of rules.
    len: usize,
}

/// Every connection's match rules, indexed for broadcast routing.
#[derive(Debug, Default)]
pub struct MatchIndex {
    rules: Vec<Option<Entry>>,
    free_rules: Vec<RuleId>,
    owners: Vec<Option<Owner>>,
    free_owners: Vec<u32>,
    owner_of: super::idmap::IdMap<u32>,
    /// Rules without `eavesdrop='true'`.
    plain: Level,
    /// Rules with `eavesdrop='true'`.
    eavesdrop: Level,
    /// Number of rules.
    len: usize,
    /// Incremented for every lookup; see `Owner::stamp`.
    stamp: Cell<u64>,
}

impl MatchIndex {
    /// Number of rules of every connection.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any rule has a sender key (callers may skip collecting the
    /// sender's names otherwise).
    pub fn has_sender_rules(&self) -> bool {
        !self.plain.by_sender.is_empty() || !self.eavesdrop.by_sender.is_empty()
    }

    /// Whether any rule has `eavesdrop='true'` (only those can match a
    /// message that has a destination).
    pub fn has_eavesdrop_rules(&self) -> bool {
        self.eavesdrop.len > 0
    }

    fn owner(&self, peer: u64) -> Option<&Owner> {
        let i = *self.owner_of.get(&peer)?;
        self.owners.get(i as usize)?.as_ref()
    }

    /// Number of rules of connection `peer`.
    pub fn count_of(&self, peer: u64) -> usize {
        self.owner(peer).map_or(0, |o| o.rules.len())
    }

    /// The rules of connection `peer`, in the order they were added.
    pub fn rules_of(&self, peer: u64) -> impl Iterator<Item = &MatchRule> + '_ {
        self.owner(peer)
            .map(|o| o.rules.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&r| self.rules.get(r as usize)?.as_ref().map(|e| &e.rule))
    }

    fn level_mut(&mut self, eavesdrop: bool) -> &mut Level {
        if eavesdrop {
            &mut self.eavesdrop
        } else {
            &mut self.plain
        }
    }

    /// Adds a rule for connection `peer`; returns how many it has now.
    pub fn insert(&mut self, peer: u64, rule: MatchRule) -> usize {
        let owner = match self.owner_of.get(&peer) {
            Some(&o) => o,
            None => {
                let o = Owner {
                    peer,
                    rules: Vec::new(),
                    stamp: Cell::new(0),
                };
                let i = match self.free_owners.pop() {
                    Some(i) => {
                        self.owners[i as usize] = Some(o);
                        i
                    }
                    None => {
                        self.owners.push(Some(o));
                        (self.owners.len() - 1) as u32
                    }
                };
                self.owner_of.insert(peer, i);
                i
            }
        };
        let id = match self.free_rules.pop() {
            Some(id) => id,
            None => {
                self.rules.push(None);
                (self.rules.len() - 1) as RuleId
            }
        };
        let level = self.level_mut(rule.eavesdrop);
        level.len += 1;
        let buckets = match rule.sender.as_deref() {
            Some(s) => level.by_sender.entry(s.into()).or_default(),
            None => &mut level.any_sender,
        };
        let list = buckets.list_mut(rule.interface.as_deref(), rule.member.as_deref());
        let pos = list.len() as u32;
        list.push(id);
        self.rules[id as usize] = Some(Entry { rule, owner, pos });
        self.len += 1;
        let o = self.owners[owner as usize]
            .as_mut()
            .expect("owner slot is live");
        o.rules.push(id);
        o.rules.len()
    }

    /// Unfiles rule `id` and frees its slot (the owner's list is the
    /// caller's business).
    fn unfile(&mut self, id: RuleId) -> Option<MatchRule> {
        let e = self.rules.get_mut(id as usize)?.take()?;
        self.free_rules.push(id);
        self.len -= 1;
        let (sender, iface, member) = (
            e.rule.sender.as_deref(),
            e.rule.interface.as_deref(),
            e.rule.member.as_deref(),
        );
        let level = if e.rule.eavesdrop {
            &mut self.eavesdrop
        } else {
            &mut self.plain
        };
        level.len -= 1;
        let moved = match sender {
            Some(s) => {
                let b = level.by_sender.get_mut(s)?;
                let moved = b.remove_at(iface, member, e.pos as usize);
                if b.is_empty() {
                    level.by_sender.remove(s);
                }
                moved
            }
            None => level.any_sender.remove_at(iface, member, e.pos as usize),
        };
        if let Some(m) = moved.and_then(|m| self.rules.get_mut(m as usize)?.as_mut()) {
            m.pos = e.pos;
        }
        Some(e.rule)
    }

    /// Removes the most recently added rule of `peer` equal to `rule` (as
    /// dbus-daemon's RemoveMatch does). Returns whether there was one.
    pub fn remove_one(&mut self, peer: u64, rule: &MatchRule) -> bool {
        let Some(&oi) = self.owner_of.get(&peer) else {
            return false;
        };
        let Some(o) = self.owners[oi as usize].as_mut() else {
            return false;
        };
        let rules = &self.rules;
        let Some(at) = o
            .rules
            .iter()
            .rposition(|&r| rules[r as usize].as_ref().is_some_and(|e| e.rule == *rule))
        else {
            return false;
        };
        let id = o.rules.remove(at);
        let now_empty = o.rules.is_empty();
        self.unfile(id);
        if now_empty {
            self.drop_owner(peer);
        }
        true
    }

    fn drop_owner(&mut self, peer: u64) -> Option<Owner> {
        let oi = self.owner_of.remove(&peer)?;
        let o = self.owners.get_mut(oi as usize)?.take();
        self.free_owners.push(oi);
        o
    }

    /// Removes every rule of `peer`; returns how many there were.
    pub fn remove_peer(&mut self, peer: u64) -> usize {
        let Some(o) = self.drop_owner(peer) else {
            return 0;
        };
        for &id in &o.rules {
            self.unfile(id);
        }
        o.rules.len()
    }

    /// Starts a lookup: every connection is unmarked afterwards.
    pub fn begin(&self) {
        self.stamp.set(self.stamp.get() + 1);
    }

    /// Calls `f(peer, rule)` for every rule that can match a message with
    /// this interface and member, sent by a connection owning `sender_names`
    /// (sender-keyed rules are found only through these names; they need
    /// not be collected unless [`MatchIndex::has_sender_rules`]). With
    /// `eavesdrop_only` (the message has a destination) only
    /// `eavesdrop='true'` rules are visited. When `f` returns true the
    /// connection is done: its other rules are skipped until the next
    /// [`MatchIndex::begin`].
    #[inline]
    pub fn for_candidates<'n>(
        &self,
        sender_names: impl Iterator<Item = &'n str> + Clone,
        iface: Option<&str>,
        member: Option<&str>,
        eavesdrop_only: bool,
        mut f: impl FnMut(u64, &MatchRule) -> bool,
    ) {
        let stamp = self.stamp.get();
        let mut visit = |id: RuleId| {
            let Some(e) = self.rules.get(id as usize).and_then(Option::as_ref) else {
                return;
            };
            let Some(o) = self.owners.get(e.owner as usize).and_then(Option::as_ref) else {
                return;
            };
            if o.stamp.get() == stamp {
                return;
            }
            if f(o.peer, &e.rule) {
                o.stamp.set(stamp);
            }
        };
        let levels: &[&Level] = if eavesdrop_only {
            &[&self.eavesdrop]
        } else {
            &[&self.plain, &self.eavesdrop]
        };
        for level in levels {
            if level.len == 0 {
                continue;
            }
            level.any_sender.candidates(iface, member, &mut visit);
            if !level.by_sender.is_empty() {
                for n in sender_names.clone() {
                    if let Some(b) = level.by_sender.get(n) {
                        b.candidates(iface, member, &mut visit);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> MatchRule {
        MatchRule::parse(s).unwrap()
    }

    fn cands(
        ix: &MatchIndex,
        names: &[&str],
        i: Option<&str>,
        m: Option<&str>,
    ) -> Vec<(u64, String)> {
        ix.begin();
        let mut v = Vec::new();
        ix.for_candidates(names.iter().copied(), i, m, false, |p, rule| {
            v.push((p, rule.to_string()));
            false
        });
        v.sort();
        v
    }

    #[test]
    fn files_by_sender_interface_member() {
        let mut ix = MatchIndex::default();
        ix.insert(1, r("interface='a.B'"));
        ix.insert(1, r("interface='a.B',member='M'"));
        ix.insert(2, r("member='M'"));
        ix.insert(2, r("type='signal'"));
        ix.insert(3, r("sender='x.Y',interface='a.B'"));
        ix.insert(3, r("interface='c.D'"));
        assert_eq!(ix.len(), 6);
        let c = cands(&ix, &[":1.1"], Some("a.B"), Some("M"));
        assert_eq!(c.len(), 4, "{c:?}");
        let c = cands(&ix, &[":1.1", "x.Y"], Some("a.B"), Some("N"));
        assert_eq!(
            c,
            vec![
                (1, "interface='a.B'".to_string()),
                (2, "type='signal'".to_string()),
                (3, "interface='a.B',sender='x.Y'".to_string())
            ]
        );
        let c = cands(&ix, &[], None, None);
        assert_eq!(c, vec![(2, "type='signal'".to_string())]);
    }

    #[test]
    fn stamp_dedups_and_removal_keeps_positions() {
        let mut ix = MatchIndex::default();
        for p in 1..=3 {
            ix.insert(p, r("interface='a.B'"));
            ix.insert(p, r("interface='a.B'"));
        }
        ix.begin();
        let mut hits = Vec::new();
        ix.for_candidates(std::iter::empty(), Some("a.B"), None, false, |p, _| {
            hits.push(p);
            true
        });
        hits.sort_unstable();
        assert_eq!(hits, vec![1, 2, 3]);
        // Removing one of two identical rules leaves the other.
        assert!(ix.remove_one(2, &r("interface='a.B'")));
        assert_eq!(ix.count_of(2), 1);
        assert!(ix.remove_one(2, &r("interface='a.B'")));
        assert!(!ix.remove_one(2, &r("interface='a.B'")));
        assert_eq!(ix.count_of(2), 0);
        assert_eq!(ix.remove_peer(1), 2);
        assert_eq!(ix.len(), 2);
        let c = cands(&ix, &[], Some("a.B"), None);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|(p, _)| *p == 3));
        assert_eq!(ix.remove_peer(3), 2);
        assert!(ix.is_empty());
        assert!(ix.plain.any_sender.is_empty());
    }

    #[test]
    fn remove_one_takes_the_most_recent() {
        let mut ix = MatchIndex::default();
        ix.insert(1, r("member='A'"));
        ix.insert(1, r("member='B'"));
        ix.insert(1, r("member='A'"));
        assert!(ix.remove_one(1, &r("member='A'")));
        let left: Vec<String> = ix.rules_of(1).map(|r| r.to_string()).collect();
        assert_eq!(left, vec!["member='A'", "member='B'"]);
    }

    #[test]
    fn slots_are_reused() {
        let mut ix = MatchIndex::default();
        for round in 0..3 {
            for p in 0..10 {
                ix.insert(p, r(&format!("sender=':1.{p}',interface='i.F{round}'")));
            }
            for p in 0..10 {
                assert_eq!(ix.remove_peer(p), 1);
            }
        }
        assert!(ix.rules.len() <= 10 && ix.owners.len() <= 10);
        assert!(ix.plain.by_sender.is_empty());
    }

    #[test]
    fn addressed_messages_see_only_eavesdrop_rules() {
        let mut ix = MatchIndex::default();
        ix.insert(1, r("interface='a.B'"));
        ix.insert(2, r("interface='a.B',eavesdrop=true"));
        ix.insert(3, r("sender='x.Y',eavesdrop=true"));
        assert!(ix.has_eavesdrop_rules());
        let seen = |only: bool| {
            ix.begin();
            let mut v = Vec::new();
            ix.for_candidates(["x.Y"].into_iter(), Some("a.B"), None, only, |p, _| {
                v.push(p);
                false
            });
            v.sort_unstable();
            v
        };
        assert_eq!(seen(false), vec![1, 2, 3]);
        assert_eq!(seen(true), vec![2, 3]);
        ix.remove_peer(2);
        ix.remove_peer(3);
        assert!(!ix.has_eavesdrop_rules());
        assert!(!ix.has_sender_rules());
    }
}
