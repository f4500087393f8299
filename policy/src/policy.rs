//! The compiled security policy and its per-connection view.
//!
//! Rules keep dbus-daemon's semantics (bus/policy.c): a connection's rules
//! are the default rules, then those of each of its groups, its user, the
//! at_console=true/false rules, then the mandatory rules; the last matching
//! rule decides, and everything before the last "wildcard" rule of a kind is
//! dropped (dbus-daemon's optimisation, which also shapes the matched-rule
//! count in AccessDenied errors). Checks only visit rules that can match:
//! message rules are indexed by their exact name and, for allow rules, by
//! interface.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use crate::rules::{MessageRule, NameMatch, Rule, MAX_MESSAGE_UNIX_FDS};
use crate::{msg_type, MessageFacts, Verdict};

/// The rules of a whole configuration, grouped by `<policy>` context, each
/// list in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRules {
    /// `<policy context="default">`
    pub default: Vec<Rule>,
    /// `<policy context="mandatory">`
    pub mandatory: Vec<Rule>,
    /// `<policy user="...">`, by uid
    pub by_user: BTreeMap<u32, Vec<Rule>>,
    /// `<policy group="...">`, by gid
    pub by_group: BTreeMap<u32, Vec<Rule>>,
    /// `<policy at_console="true">`
    pub at_console: Vec<Rule>,
    /// `<policy at_console="false">`
    pub not_at_console: Vec<Rule>,
}

impl PolicyRules {
    /// Appends `other`'s rules after ours (what an `<include>` does).
    pub fn merge(&mut self, other: PolicyRules) {
        self.default.extend(other.default);
        self.mandatory.extend(other.mandatory);
        for (k, v) in other.by_user {
            self.by_user.entry(k).or_default().extend(v);
        }
        for (k, v) in other.by_group {
            self.by_group.entry(k).or_default().extend(v);
        }
        self.at_console.extend(other.at_console);
        self.not_at_console.extend(other.not_at_console);
    }
}

/// The compiled policy of the whole bus.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: PolicyRules,
    compiled: Arc<Compiled>,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for Policy {}

#[derive(Debug, Default)]
struct Compiled {
    default: Arc<Segment>,
    mandatory: Arc<Segment>,
    by_user: HashMap<u32, Arc<Segment>>,
    by_group: HashMap<u32, Arc<Segment>>,
    at_console: Arc<Segment>,
    not_at_console: Arc<Segment>,
}

/// One context's rules, indexed.
#[derive(Debug, Default)]
struct Segment {
    send: MsgIndex,
    receive: MsgIndex,
    own: OwnIndex,
}

#[derive(Debug, Default)]
struct MsgIndex {
    rules: Vec<MessageRule>,
    by_name: HashMap<String, Vec<usize>>,
    by_interface: HashMap<String, Vec<usize>>,
    general: Vec<usize>,
    last_wildcard: Option<usize>,
}

impl MsgIndex {
    /// Whether any rule matches by name (so a check needs the peer's names).
    fn uses_names(&self) -> bool {
        !self.by_name.is_empty() || self.rules.iter().any(|r| !matches!(r.name, NameMatch::Any))
    }

    fn push(&mut self, r: &MessageRule) {
        let i = self.rules.len();
        if r.is_wildcard() {
            self.last_wildcard = Some(i);
        }
        match (&r.name, &r.interface) {
            (NameMatch::Exact(n), _) => self.by_name.entry(n.clone()).or_default().push(i),
            // an allow rule with an interface never matches a message without one
            (_, Some(iface)) if r.allow => {
                self.by_interface.entry(iface.clone()).or_default().push(i)
            }
            _ => self.general.push(i),
        }
        self.rules.push(r.clone());
    }
}

#[derive(Debug, Default)]
struct OwnIndex {
    rules: Vec<(bool, NameMatch)>,
    by_name: HashMap<String, Vec<usize>>,
    general: Vec<usize>,
    last_wildcard: Option<usize>,
}

impl Segment {
    fn new(rules: &[Rule]) -> Segment {
        let mut s = Segment::default();
        for r in rules {
            match r {
                Rule::Send(m) => s.send.push(m),
                Rule::Receive(m) => s.receive.push(m),
                Rule::Own { allow, name } => {
                    let i = s.own.rules.len();
                    match name {
                        NameMatch::Exact(n) => s.own.by_name.entry(n.clone()).or_default().push(i),
                        NameMatch::Any => {
                            s.own.last_wildcard = Some(i);
                            s.own.general.push(i);
                        }
                        NameMatch::Prefix(_) => s.own.general.push(i),
                    }
                    s.own.rules.push((*allow, name.clone()));
                }
                Rule::User { .. } | Rule::Group { .. } => {}
            }
        }
        s
    }

    fn is_empty(&self) -> bool {
        self.send.rules.is_empty() && self.receive.rules.is_empty() && self.own.rules.is_empty()
    }
}

/// Position of a rule in a connection's rule sequence: (segment, index).
type Pos = (usize, usize);

/// The part of the policy that applies to one connection (by uid and gids),
/// computed once at connect time (and again after a reload).
#[derive(Clone, Debug, Default)]
pub struct ConnectionPolicy {
    segments: Vec<Arc<Segment>>,
    send_from: Pos,
    receive_from: Pos,
    own_from: Pos,
    /// Whether any send rule looks at the receiver's names.
    send_names: bool,
    /// Whether any receive rule looks at the sender's names.
    receive_names: bool,
}

fn owner_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(crate::sys::process_uid)
}

impl Policy {
    /// Compiles `rules`.
    pub fn from_rules(rules: PolicyRules) -> Policy {
        let seg = |r: &[Rule]| Arc::new(Segment::new(r));
        let compiled = Compiled {
            default: seg(&rules.default),
            mandatory: seg(&rules.mandatory),
            by_user: rules.by_user.iter().map(|(k, v)| (*k, seg(v))).collect(),
            by_group: rules.by_group.iter().map(|(k, v)| (*k, seg(v))).collect(),
            at_console: seg(&rules.at_console),
            not_at_console: seg(&rules.not_at_console),
        };
        Policy {
            rules,
            compiled: Arc::new(compiled),
        }
    }

    /// The rules this policy was compiled from.
    pub fn rules(&self) -> &PolicyRules {
        &self.rules
    }

    /// Whether a user may connect at all (`<allow user=..>`/`<deny group=..>` rules).
    /// Without rules only the user the bus runs as may connect.
    pub fn allows_user(&self, uid: u32, gids: &[u32]) -> bool {
        self.allows_user_owned_by(uid, gids, owner_uid())
    }

    /// [`Policy::allows_user`] for a bus running as `bus_uid`.
    pub fn allows_user_owned_by(&self, uid: u32, gids: &[u32], bus_uid: Option<u32>) -> bool {
        let mut allowed = bus_uid == Some(uid);
        for rule in self.rules.default.iter().chain(&self.rules.mandatory) {
            match rule {
                Rule::User { allow, uid: u } if u.is_none_or(|u| u == uid) => allowed = *allow,
                Rule::Group { allow, gid } if gid.is_none_or(|g| gids.contains(&g)) => {
                    allowed = *allow
                }
                _ => {}
            }
        }
        allowed
    }

    /// Whether any `<policy group="..">` context has rules, i.e. whether
    /// [`Policy::for_connection`] looks at the groups it is given.
    pub fn uses_groups(&self) -> bool {
        !self.compiled.by_group.is_empty()
    }

    /// The rules that apply to a connection of this user.
    /// `uid` is None for anonymous connections.
    pub fn for_connection(
        &self,
        uid: Option<u32>,
        gids: &[u32],
        at_console: bool,
    ) -> ConnectionPolicy {
        let c = &self.compiled;
        // default, the groups', the user's, at_console, mandatory: sized
        // once (this runs for every connection).
        let mut segments = Vec::with_capacity(4 + gids.len().min(c.by_group.len()));
        segments.push(c.default.clone());
        for g in gids {
            if let Some(s) = c.by_group.get(g) {
                segments.push(s.clone());
            }
        }
        if let Some(uid) = uid {
            if let Some(s) = c.by_user.get(&uid) {
                segments.push(s.clone());
            }
            segments.push(if at_console {
                c.at_console.clone()
            } else {
                c.not_at_console.clone()
            });
        }
        segments.push(c.mandatory.clone());
        segments.retain(|s| !s.is_empty());
        let last = |f: &dyn Fn(&Segment) -> Option<usize>| {
            segments
                .iter()
                .enumerate()
                .rev()
                .find_map(|(k, s)| f(s).map(|i| (k, i)))
                .unwrap_or((0, 0))
        };
        let send_from = last(&|s| s.send.last_wildcard);
        let receive_from = last(&|s| s.receive.last_wildcard);
        let own_from = last(&|s| s.own.last_wildcard);
        let send_names = segments.iter().any(|s| s.send.uses_names());
        let receive_names = segments.iter().any(|s| s.receive.uses_names());
        ConnectionPolicy {
            segments,
            send_from,
            receive_from,
            own_from,
            send_names,
            receive_names,
        }
    }
}

/// dbus-daemon's test is "has a reply serial", not the message type.
fn is_reply(m: &MessageFacts<'_>) -> bool {
    m.reply_serial.is_some_and(|s| s != 0)
        || m.msg_type == msg_type::METHOD_RETURN
        || m.msg_type == msg_type::ERROR
}

/// A rule field that only excludes messages having a different value.
fn field_ok(rule: &Option<String>, msg: Option<&str>) -> bool {
    match (rule, msg) {
        (Some(r), Some(m)) => r == m,
        _ => true,
    }
}

/// The checks common to send and receive rules.
fn common_match(r: &MessageRule, m: &MessageFacts<'_>, requested_reply: bool) -> bool {
    if r.msg_type.is_some_and(|t| t != m.msg_type) {
        return false;
    }
    if is_reply(m) {
        // allow rules: requested_reply=true applies only to requested replies
        if !requested_reply && r.allow && r.requested_reply && !r.eavesdrop {
            return false;
        }
        // deny rules: requested_reply=false applies only to unrequested replies
        if requested_reply && !r.allow && !r.requested_reply {
            return false;
        }
    }
    if !field_ok(&r.path, m.path) {
        return false;
    }
    if let Some(iface) = &r.interface {
        match m.interface {
            None if r.allow => return false,
            Some(i) if i != iface => return false,
            _ => {}
        }
    }
    if !field_ok(&r.member, m.member) || !field_ok(&r.error, m.error_name) {
        return false;
    }
    true
}

fn fds_match(r: &MessageRule, n: u32) -> bool {
    if r.min_fds > 0 || r.max_fds < MAX_MESSAGE_UNIX_FDS {
        return n >= r.min_fds && n <= r.max_fds;
    }
    true
}

fn names_match(rule: &NameMatch, names: &[&str]) -> bool {
    match rule {
        NameMatch::Any => true,
        NameMatch::Exact(n) => names.contains(&n.as_str()),
        NameMatch::Prefix(p) => names.iter().any(|n| crate::rules::starts_with_words(n, p)),
    }
}

/// Tally of matching rules: the count and the last match.
#[derive(Default)]
struct Tally {
    count: u32,
    last: Option<(Pos, bool, bool)>,
}

impl Tally {
    fn hit(&mut self, pos: Pos, allow: bool, log: bool) {
        self.count = self.count.saturating_add(1);
        if self.last.is_none_or(|(p, _, _)| pos > p) {
            self.last = Some((pos, allow, log));
        }
    }

    fn verdict(&self) -> Verdict {
        let (allowed, log) = self.last.map_or((false, false), |(_, a, l)| (a, l));
        Verdict {
            allowed,
            matched_rules: self.count,
            log,
        }
    }
}

impl ConnectionPolicy {
    /// Whether [`ConnectionPolicy::can_send`] looks at `receiver_names` at
    /// all. When false, passing `&[]` gives the same verdict, so callers
    /// may skip collecting the names.
    pub fn send_needs_names(&self) -> bool {
        self.send_names
    }

    /// Whether [`ConnectionPolicy::can_receive`] looks at `sender_names` at
    /// all (see [`ConnectionPolicy::send_needs_names`]).
    pub fn receive_needs_names(&self) -> bool {
        self.receive_names
    }

    /// Whether [`ConnectionPolicy::can_receive`] gives `other`'s verdict for
    /// every message: both were built from the same compiled segments (by
    /// identity, so two connections of one user compare equal) and start
    /// from the same rule. A caller checking one message for many receivers
    /// may then reuse a verdict instead of scanning again.
    pub fn same_receive_rules(&self, other: &ConnectionPolicy) -> bool {
        self.receive_from == other.receive_from
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Runs `matches` over the candidate rules of the index `pick` selects.
    fn scan(
        &self,
        from: Pos,
        pick: fn(&Segment) -> &MsgIndex,
        names: &[&str],
        interface: Option<&str>,
        matches: &dyn Fn(&MessageRule) -> bool,
    ) -> Verdict {
        let mut tally = Tally::default();
        for (k, seg) in self.segments.iter().enumerate() {
            let idx = pick(seg);
            let mut visit = |i: usize| {
                if (k, i) < from {
                    return;
                }
                if let Some(r) = idx.rules.get(i) {
                    if matches(r) {
                        tally.hit((k, i), r.allow, r.log);
                    }
                }
            };
            idx.general.iter().for_each(|&i| visit(i));
            for (j, name) in names.iter().enumerate() {
                if names[..j].contains(name) {
                    continue;
                }
                if let Some(v) = idx.by_name.get(*name) {
                    v.iter().for_each(|&i| visit(i));
                }
            }
            if let Some(v) = interface.and_then(|i| idx.by_interface.get(i)) {
                v.iter().for_each(|&i| visit(i));
            }
        }
        tally.verdict()
    }

    /// May this connection own `name`?
    pub fn can_own(&self, name: &str) -> bool {
        let mut tally = Tally::default();
        for (k, seg) in self.segments.iter().enumerate() {
            let own = &seg.own;
            let exact = own.by_name.get(name).map(Vec::as_slice).unwrap_or_default();
            for &i in own.general.iter().chain(exact) {
                if (k, i) < self.own_from {
                    continue;
                }
                if let Some((allow, rule)) = own.rules.get(i) {
                    if rule.matches(name) {
                        tally.hit((k, i), *allow, false);
                    }
                }
            }
        }
        tally.verdict().allowed
    }

    /// May this connection send `m` to a receiver that owns `receiver_names`
    /// (its unique name and well-known names, including names it is queued
    /// for; for the bus driver "org.freedesktop.DBus"; for activation the
    /// requested name)?
    /// `requested_reply`: the message is a reply the receiver asked for.
    /// `eavesdrop`: checking on behalf of an eavesdropper rather than the
    /// addressee (dbus-daemon's send check does not look at it: pass the
    /// eavesdropper's names as `receiver_names` and `requested_reply=false`).
    pub fn can_send(
        &self,
        m: &MessageFacts<'_>,
        receiver_names: &[&str],
        requested_reply: bool,
        eavesdrop: bool,
    ) -> Verdict {
        let _ = eavesdrop;
        let broadcast = m.destination.is_none() && m.msg_type == msg_type::SIGNAL;
        let matches = |r: &MessageRule| {
            common_match(r, m, requested_reply)
                && r.broadcast.is_none_or(|b| b == broadcast)
                && names_match(&r.name, receiver_names)
                && fds_match(r, m.unix_fds)
        };
        self.scan(
            self.send_from,
            |s| &s.send,
            receiver_names,
            m.interface,
            &matches,
        )
    }

    /// May this connection receive `m` from a sender owning `sender_names`
    /// (for messages from the bus driver: "org.freedesktop.DBus")?
    /// `eavesdrop`: the message has a destination and this connection is not
    /// it.
    pub fn can_receive(
        &self,
        m: &MessageFacts<'_>,
        sender_names: &[&str],
        requested_reply: bool,
        eavesdrop: bool,
    ) -> Verdict {
        let matches = |r: &MessageRule| {
            if eavesdrop && r.allow && !r.eavesdrop {
                return false;
            }
            if !eavesdrop && !r.allow && r.eavesdrop {
                return false;
            }
            common_match(r, m, requested_reply)
                && names_match(&r.name, sender_names)
                && fds_match(r, m.unix_fds)
        };
        self.scan(
            self.receive_from,
            |s| &s.receive,
            sender_names,
            m.interface,
            &matches,
        )
    }
}
