//! The bus's state as the layers above see it: read accessors, and the few
//! operations that change several parts of it at once and so keep the
//! invariants between them (Hello, names, match rules, monitors, a new
//! configuration).

use std::rc::Rc;
use std::time::Instant;

use policy::{Config, Limits};

use super::activation::Activation;
use super::bus::{Bus, BusStats};
use super::errors;
use super::matchindex::MatchIndex;
use super::matchrule::MatchRule;
use super::names::{NameEvent, Registry};
use super::peer::{Peer, PeerState};
use super::security::Denied;
use super::upcalls::Upcalls;
use crate::transport::sasl::SaslConfig;

impl Bus {
    /// Wires the layers above (the daemon does this once at start-up).
    pub fn set_upcalls(&mut self, u: Rc<dyn Upcalls>) {
        self.upcalls = u;
    }

    /// The layers above, to call up through.
    pub fn upcalls(&self) -> Rc<dyn Upcalls> {
        self.upcalls.clone()
    }

    /// What the daemon was started with: --systemd-activation and the
    /// address clients connect to.
    pub fn set_start_info(&mut self, systemd_activation: bool, address: String) {
        self.systemd_activation = systemd_activation;
        self.address = address;
    }

    /// Connection `id`.
    pub fn peer(&self, id: u64) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// Connection `id`, to read from or write to its socket (the loop does
    /// the I/O; what it reads goes through [`Bus::process_input`]).
    pub fn peer_mut(&mut self, id: u64) -> Option<&mut Peer> {
        self.peers.get_mut(&id)
    }

    /// Whether connection `id` exists.
    pub fn has_peer(&self, id: u64) -> bool {
        self.peers.contains_key(&id)
    }

    /// Every connection.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> + '_ {
        self.peers.values()
    }

    /// Number of connections.
    pub fn n_peers(&self) -> usize {
        self.peers.len()
    }

    /// The id the next accepted connection gets.
    pub fn next_peer_id(&self) -> u64 {
        self.next_id
    }

    /// Every unique name with its connection.
    pub fn unique_names(&self) -> impl Iterator<Item = (&Rc<str>, u64)> + '_ {
        self.unique.iter().map(|(n, id)| (n, *id))
    }

    /// Number of unique names.
    pub fn n_unique(&self) -> usize {
        self.unique.len()
    }

    /// The well-known names.
    pub fn names(&self) -> &Registry {
        &self.names
    }

    /// Every connection's match rules.
    pub fn matches(&self) -> &MatchIndex {
        &self.matches
    }

    /// Number of match rules on the bus.
    pub fn match_rules(&self) -> usize {
        self.matches.len()
    }

    /// The running configuration.
    pub fn config(&self) -> &Rc<Config> {
        &self.config
    }

    /// The running configuration's limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The GUID of the listening addresses.
    pub fn guid(&self) -> &str {
        &self.guid
    }

    /// The bus's id (GetId).
    pub fn bus_id(&self) -> &str {
        &self.id
    }

    /// The address clients connect to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the daemon was started with --systemd-activation.
    pub fn systemd_activation(&self) -> bool {
        self.systemd_activation
    }

    /// Connections that have not completed Hello.
    pub fn incomplete(&self) -> usize {
        self.incomplete
    }

    /// Connections that completed Hello (monitors included).
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Bus-wide Debug.Stats counters.
    pub fn stats(&self) -> &BusStats {
        &self.stats
    }

    /// Whether any connection is a monitor.
    pub fn has_monitors(&self) -> bool {
        !self.monitors.is_empty()
    }

    /// Activation state.
    pub fn activation(&self) -> &Activation {
        &self.activation
    }

    /// Activation state, for src/activation to change.
    pub fn activation_mut(&mut self) -> &mut Activation {
        &mut self.activation
    }

    /// Marks connection `id` for flushing after this round.
    pub fn mark_dirty(&mut self, id: u64) {
        self.dirty.push(id);
    }

    /// The connections to flush (and forgets them).
    pub fn take_dirty(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dirty)
    }

    /// Swaps the list of connections to flush with `list` (which should
    /// be empty), keeping both allocations.
    pub fn swap_dirty(&mut self, list: &mut Vec<u64>) {
        std::mem::swap(&mut self.dirty, list);
    }

    /// Whether a connection waits to be flushed.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Whether a connection waits to be disconnected.
    pub fn has_to_close(&self) -> bool {
        !self.to_close.is_empty()
    }

    /// The connections to disconnect (and forgets them).
    pub fn take_to_close(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.to_close)
    }

    /// The earliest reply timeout, authentication or pending-fd deadline,
    /// or activation timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.activation.pending.values().map(|p| p.deadline).min(),
            self.replies.next_deadline(),
            self.deadlines.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Method calls whose reply timed out: their callers get NoReply.
    pub fn expire_replies(&mut self, now: Instant) {
        for (caller, serial) in self.replies.expire(now) {
            self.send_error_serial(
                caller,
                serial,
                errors::NO_REPLY,
                "Message did not receive a reply (timeout by message bus)",
            );
        }
    }

    /// Hello from `sid`: checks the connection limits and gives it its
    /// unique name. The caller replies and then emits the returned events.
    pub fn hello(&mut self, sid: u64) -> Result<(Rc<str>, Vec<NameEvent>), Denied> {
        let Some(p) = self.peers.get(&sid) else {
            return Err(Denied {
                name: errors::FAILED,
                text: "Connection is gone".into(),
            });
        };
        let p_uid = p.auth_uid;
        if p.unique_name.is_some() {
            return Err(Denied {
                name: errors::FAILED,
                text: "Already handled an Hello message".into(),
            });
        }
        if self.completed >= self.config.limits.max_completed_connections {
            return Err(Denied {
                name: errors::LIMITS_EXCEEDED,
                text: "The maximum number of active connections has been reached".into(),
            });
        }
        if let Some(uid) = p_uid {
            let limit = self.config.limits.max_connections_per_user;
            if self.users.active(uid) >= limit {
                crate::log::peer_warning(
                    crate::log::Kind::ConnectionRefused,
                    &p.who(),
                    &format!(
                        "The maximum number of active connections for UID {uid} has been reached (max_connections_per_user={limit})"
                    ),
                );
                return Err(Denied {
                    name: errors::LIMITS_EXCEEDED,
                    text: format!(
                        "The maximum number of active connections for UID {uid} has been reached"
                    ),
                });
            }
        }
        let name = unique_name(self.next_unique);
        self.next_unique += 1;
        if let Some(p) = self.peers.get_mut(&sid) {
            p.unique_name = Some(name.clone());
            p.state = PeerState::Active;
        }
        self.disarm_auth_deadline(sid);
        self.incomplete = self.incomplete.saturating_sub(1);
        self.completed += 1;
        if let Some(uid) = p_uid {
            self.users.add_active(uid);
        }
        self.unique.insert(name.clone(), sid);
        let events = vec![
            NameEvent::OwnerChanged {
                name: name.clone(),
                old: None,
                new: Some(sid),
            },
            NameEvent::Acquired {
                peer: sid,
                name: name.clone(),
            },
        ];
        Ok((name, events))
    }

    /// Adds a match rule of `sid`; returns how many it has now.
    pub fn add_match(&mut self, sid: u64, rule: MatchRule) -> usize {
        let n = self.matches.insert(sid, rule);
        if let Some(p) = self.peers.get_mut(&sid) {
            p.stats.peak_match_rules = p.stats.peak_match_rules.max(n as u64);
        }
        self.stats.peak_match_rules = self.stats.peak_match_rules.max(self.matches.len());
        self.stats.peak_match_rules_per_conn = self.stats.peak_match_rules_per_conn.max(n);
        n
    }

    /// Removes the most recently added rule of `sid` equal to `rule`.
    pub fn remove_match(&mut self, sid: u64, rule: &MatchRule) -> bool {
        self.matches.remove_one(sid, rule)
    }

    /// RequestName, after the caller checked validity, policy and limits:
    /// updates the registry and the connection's names, emits the signals
    /// and returns the reply code.
    pub fn request_name(&mut self, sid: u64, name: &str, flags: u32) -> u32 {
        let mut events = Vec::new();
        let code = self.names.request(name, sid, flags, &mut events);
        self.sync_peer_names(sid, name);
        self.emit_name_events(events);
        let per_conn = self.peers.get(&sid).map_or(0, |p| p.names.len() + 1);
        self.stats.peak_bus_names = self.stats.peak_bus_names.max(self.names.len());
        self.stats.peak_bus_names_per_conn = self.stats.peak_bus_names_per_conn.max(per_conn);
        code
    }

    /// ReleaseName of a name `sid` is in the queue of: updates the registry
    /// and the connection's names and emits the signals.
    pub fn release_name(&mut self, sid: u64, name: &str) {
        let mut events = Vec::new();
        self.names.remove(name, sid, &mut events);
        self.sync_peer_names(sid, name);
        self.emit_name_events(events);
    }

    /// Keeps a connection's list of names in step with the registry.
    fn sync_peer_names(&mut self, sid: u64, name: &str) {
        let queued = self.names.in_queue(name, sid);
        let key = self.names.key(name);
        if let Some(p) = self.peers.get_mut(&sid) {
            let pos = p.names.iter().position(|n| &**n == name);
            match (queued, pos, key) {
                (true, None, Some(k)) => p.names.push(k),
                (false, Some(i), _) => {
                    p.names.remove(i);
                }
                _ => {}
            }
        }
    }

    /// BecomeMonitor (after the caller was answered): `sid` gives up its
    /// names and match rules the way a disconnecting peer does (see
    /// [`Bus::release_all`]) and receives copies from now on.
    pub fn become_monitor(&mut self, sid: u64, rules: Vec<MatchRule>) {
        self.release_all(sid, Release::BecomeMonitor);
        if let Some(p) = self.peers.get_mut(&sid) {
            p.state = PeerState::Monitor;
            crate::log::event(
                crate::log::Kind::Monitor,
                crate::log::Level::Info,
                Some(&p.who()),
                &format!(
                    "Connection {} ({}) became a monitor.",
                    p.name(),
                    p.loginfo()
                ),
            );
        }
        self.monitors.push(sid);
        self.monitor_rules.insert(sid, rules);
    }

    /// Gives up every name and match rule of `id`, with the signals that
    /// go with it. The order of the signals is dbus-daemon's for each case:
    /// a disconnecting peer loses its well-known names in the reverse order
    /// it asked for them and its unique name last; a new monitor loses its
    /// unique name first, then its well-known names in order.
    pub(super) fn release_all(&mut self, id: u64, how: Release) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let names = std::mem::take(&mut p.names);
        let unique = p.unique_name.clone();
        let was_monitor = matches!(p.state, PeerState::Monitor);
        self.matches.remove_peer(id);
        // Its unique name's two events, and usually one or two per
        // well-known name: sized once.
        let mut events = Vec::with_capacity(2 + 2 * names.len());
        let unique_events = |events: &mut Vec<NameEvent>, u: &Rc<str>| {
            events.push(NameEvent::Lost {
                peer: id,
                name: u.clone(),
            });
            events.push(NameEvent::OwnerChanged {
                name: u.clone(),
                old: Some(id),
                new: None,
            });
        };
        match how {
            Release::Disconnect => {
                for n in names.iter().rev() {
                    self.names.remove(n, id, &mut events);
                }
                if let Some(u) = unique.as_ref().filter(|_| !was_monitor) {
                    unique_events(&mut events, u);
                }
            }
            Release::BecomeMonitor => {
                if let Some(u) = &unique {
                    self.unique.remove(u);
                    unique_events(&mut events, u);
                }
                for n in &names {
                    self.names.remove(n, id, &mut events);
                }
            }
        }
        self.emit_name_events(events);
        if let Some(u) = &unique {
            if self.unique.get(u) == Some(&id) {
                self.unique.remove(u);
            }
        }
    }

    /// A configuration was loaded (ReloadConfig, SIGHUP): swaps it in and
    /// brings everything derived from it up to date. Like dbus-daemon's
    /// reload, listen addresses, the user and the pidfile do not change.
    pub fn apply_config(&mut self, cfg: Config, sasl: SaslConfig) {
        self.sasl = Rc::new(sasl);
        self.config = Rc::new(cfg);
        // As dbus-daemon flushes its user database cache on reload.
        self.userdb.flush();
        self.users.set_budget(&self.config.limits);
        self.console_changed();
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.refresh_policy(id);
        }
        // dbus-daemon checks queue limits against the running configuration.
        let l = &self.config.limits;
        let limits = (l.max_outgoing_bytes, l.max_outgoing_unix_fds);
        for p in self.peers.values_mut() {
            p.out_limits = limits;
        }
    }
}

/// `:1.N`, formatted on the stack without the formatting machinery (once
/// per Hello).
fn unique_name(n: u64) -> Rc<str> {
    let mut buf = [0u8; 23];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= 3;
    buf[i..i + 3].copy_from_slice(b":1.");
    // ASCII digits after ":1.": always UTF-8.
    Rc::from(std::str::from_utf8(&buf[i..]).unwrap_or(":1.0"))
}

/// Why a connection gives up its names (see [`Bus::release_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// It is disconnecting.
    Disconnect,
    /// It becomes a monitor.
    BecomeMonitor,
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_as_format_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(&*super::unique_name(n), format!(":1.{n}"));
        }
    }
}
