//! Connection lifecycle: a new socket, bytes in (SASL, then framing and
//! validation), and disconnection with everything it releases.

use std::collections::VecDeque;

use super::bus::Bus;
use super::names::NameEvent;
use super::peer::{Charge, Inbound, OutMsg, Peer, PeerState, PeerStats};
use crate::driver::errors;
use crate::transport::rxbuf::MsgBytes;
use crate::transport::sasl::{SaslServer, SaslStatus};
use crate::transport::stream::Stream;
use crate::wire::header::{frame_len, Header, FIXED_HEADER_LEN};

/// Messages at least this large are read straight into their own buffer.
pub const LARGE_MESSAGE: usize = 64 * 1024;

impl Bus {
    /// Registers a newly accepted socket; returns its id.
    pub fn add_peer(&mut self, stream: Stream) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let creds = stream.peer_creds();
        let account = self
            .users
            .account(creds.uid.unwrap_or(super::quota::NO_UID));
        let sasl = SaslServer::new(self.sasl.clone(), creds.uid);
        let peer = Peer {
            id,
            stream,
            creds,
            auth_uid: None,
            gids: Vec::new(),
            state: PeerState::Authenticating(Box::new(sasl)),
            unique_name: None,
            unix_fd: false,
            inbuf: crate::transport::rxbuf::RxBuf::default(),
            large_rx: None,
            in_fds: VecDeque::new(),
            out: VecDeque::new(),
            write_interest: false,
            out_pos: 0,
            out_detached: 0,
            out_bytes: 0,
            out_fds: 0,
            names: Vec::new(),
            policy: policy::ConnectionPolicy::default(),
            auth_deadline: None,
            pending_fd_deadline: None,
            closing: false,
            stats: PeerStats::default(),
            loginfo_cache: std::cell::OnceCell::new(),
            has_eavesdrop_rules: false,
            live: std::rc::Rc::default(),
            out_limits: (
                self.config.limits.max_outgoing_bytes,
                self.config.limits.max_outgoing_unix_fds,
            ),
            account,
            quota_pause: None,
        };
        self.peers.insert(id, peer);
        self.arm_auth_deadline(id);
        self.incomplete += 1;
        id
    }

    /// Whether `uid` is logged in at a local console, as dbus-daemon
    /// decides it on Linux (/run/console/USER, or a seat in
    /// systemd-logind), answered from the state the console watch keeps.
    /// Only asked when the policy has at_console rules.
    pub fn at_console(&mut self, uid: Option<u32>) -> bool {
        let Some(uid) = uid else { return false };
        let rules = self.config.policy.rules();
        if rules.at_console.is_empty() && rules.not_at_console.is_empty() {
            // Either answer selects an empty set of rules.
            return false;
        }
        let db = &mut self.userdb;
        self.console.at_console(uid, || db.get(uid).name.clone())
    }

    /// Recomputes the policy that applies to connection `id`.
    pub fn refresh_policy(&mut self, id: u64) {
        let Some(p) = self.peers.get(&id) else { return };
        let uid = p.auth_uid;
        let gids = p.gids.clone();
        let console = self.at_console(uid);
        let pol = self.config.policy.for_connection(uid, &gids, console);
        if let Some(p) = self.peers.get_mut(&id) {
            p.policy = pol;
        }
    }

    /// The keyring worker answered: the connections whose handshake waits
    /// for it, for the loop to give a turn. Only connections still
    /// authenticating are looked at, and this runs only when the worker
    /// wakes the loop.
    pub fn keyring_waiters(&self) -> Vec<u64> {
        self.peers
            .values()
            .filter(|p| matches!(&p.state, PeerState::Authenticating(s) if s.waiting_for_keyring()))
            .map(|p| p.id)
            .collect()
    }

    /// Whether the connect rules (`<allow user=..>`, `<deny group=..>`)
    /// let `uid` in. The user database's groups are looked up (through the
    /// cache) only when a group rule is there to look at them.
    fn allows_user(&mut self, uid: u32) -> bool {
        let rules = self.config.policy.rules();
        let needs_groups = rules
            .default
            .iter()
            .chain(&rules.mandatory)
            .any(|r| matches!(r, policy::rules::Rule::Group { .. }));
        let gids = if needs_groups {
            self.userdb.groups_with(uid, None)
        } else {
            Vec::new()
        };
        self.config.policy.allows_user(uid, &gids)
    }

    /// Processes what is buffered for connection `id`: SASL lines, then at
    /// most `budget` whole messages (the rest waits for the connection's
    /// next turn, so that one sender cannot hold the loop). Returns how many
    /// messages were dispatched.
    pub fn process_input(&mut self, id: u64, budget: usize) -> usize {
        loop {
            let Some(p) = self.peers.get_mut(&id) else {
                return 0;
            };
            if p.closing {
                return 0;
            }
            if let PeerState::Authenticating(sasl) = &mut p.state {
                let mut out = Vec::new();
                let (used, status) = sasl.feed(p.inbuf.data(), &mut out);
                p.inbuf.consume(used);
                if !out.is_empty() {
                    p.enqueue_always(OutMsg {
                        head: crate::transport::pool::Pooled::new(out),
                        body: None,
                    });
                    self.dirty.push(id);
                }
                match status {
                    SaslStatus::Continue => {
                        // Fds sent during authentication are bounded too.
                        self.check_pending_fds(id);
                        return 0;
                    }
                    SaslStatus::Disconnect => {
                        self.close(id);
                        return 0;
                    }
                    SaslStatus::Authenticated { uid, unix_fd } => {
                        self.authenticated(id, uid, unix_fd);
                        continue;
                    }
                }
            }
            return self.frame_messages(id, budget);
        }
    }

    fn authenticated(&mut self, id: u64, uid: Option<u32>, unix_fd: bool) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.state = PeerState::WaitingHello;
        p.auth_uid = uid;
        p.unix_fd = unix_fd && p.stream.can_pass_fds();
        // Groups for the policy and GetConnectionCredentials come from the
        // socket (SO_PEERGROUPS plus the peer's gid), as in dbus-daemon
        // 1.14; whether a user may connect at all is decided from the user
        // database.
        let same_process_user = uid.is_some() && p.creds.uid == uid;
        p.gids = match (uid, p.stream.peer_groups()) {
            (Some(_), Some(mut g)) if same_process_user => {
                g.extend(p.creds.gid);
                g.sort_unstable();
                g.dedup();
                g
            }
            // No SO_PEERGROUPS (an old kernel), or a uid other than the
            // socket's: the user database says, through the cache.
            (Some(u), _) => {
                let extra = p.creds.gid.filter(|_| same_process_user);
                self.userdb.groups_with(u, extra)
            }
            (None, _) => Vec::new(),
        };
        let allowed = match uid {
            Some(u) => self.allows_user(u),
            None => self.config.allow_anonymous,
        };
        if !allowed {
            let who = self.peers.get(&id).map(|p| p.who()).unwrap_or_default();
            crate::log::peer_warning(
                crate::log::Kind::ConnectionRefused,
                &who,
                &format!(
                    "Connection from uid {} was not authorized by the bus policy",
                    uid.map_or("(none)".into(), |u| u.to_string())
                ),
            );
            self.close(id);
            return;
        }
        self.refresh_policy(id);
    }

    /// Splits buffered bytes into messages, validates and routes them. A
    /// large message that is not complete yet moves to a buffer of its own
    /// (`large_rx`) so the rest of it is read straight into place. Stops
    /// after `budget` messages; returns how many it dispatched.
    fn frame_messages(&mut self, id: u64, budget: usize) -> usize {
        let max = self.config.limits.max_message_size as usize;
        let mut done = 0;
        loop {
            let Some(p) = self.peers.get_mut(&id) else {
                return done;
            };
            if p.closing || p.large_rx.is_some() {
                break;
            }
            if done == budget {
                // Whole messages are left: their fds are not pending, so
                // the pending-fd checks wait until they are dispatched.
                return done;
            }
            let avail = p.inbuf.len();
            if avail < FIXED_HEADER_LEN {
                break;
            }
            let total = match frame_len(&p.inbuf.data()[..FIXED_HEADER_LEN], max) {
                Ok(t) => t,
                Err(e) => {
                    self.protocol_violation(id, &format!("invalid message: {e}"));
                    break;
                }
            };
            if avail < total {
                if total >= LARGE_MESSAGE {
                    p.large_rx = Some(super::peer::LargeRx::new(p.inbuf.data(), total, &p.live));
                    p.inbuf.consume(avail);
                }
                break;
            }
            // A slice of the receive chunk: no copy.
            let bytes = p.inbuf.take(total);
            done += 1;
            if !self.accept_message(id, bytes) {
                break;
            }
        }
        self.check_pending_fds(id);
        done
    }

    /// After bytes were read and complete messages taken: fds left over
    /// belong to a message that is not complete yet. They may wait until
    /// pending_fd_timeout (from when fds started pending), and there may be
    /// no more of them than one message can carry: libdbus reads fds into a
    /// buffer of max_message_unix_fds and drops a connection that sends
    /// more, so neither can a peer here pin an unbounded number of fds.
    /// The timeout starts when fds start waiting and stops when none is
    /// left, as dbus-daemon's pending_unix_fds timeout does.
    pub fn check_pending_fds(&mut self, id: u64) {
        let max = self.config.limits.max_message_unix_fds;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.closing {
            return;
        }
        if p.in_fds.is_empty() {
            self.set_fds_pending(id, false);
            return;
        }
        let n = p.in_fds.len();
        self.set_fds_pending(id, true);
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        if n as u64 > max {
            crate::log::peer_warning(
                crate::log::Kind::LimitReached,
                &p.who(),
                &format!(
                    "Disconnecting {} ({}): {n} unix fds pending, more than one message may carry (max_message_unix_fds={max})",
                    p.name(),
                    p.loginfo(),
                ),
            );
            self.close(id);
        }
    }

    /// The large message being read into its own buffer is complete:
    /// dispatches it (what follows it in `inbuf` waits for
    /// [`Bus::process_input`]).
    pub fn finish_large_message(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(rx) = p.large_rx.take() else {
            return;
        };
        self.accept_message(id, rx.into_bytes().into());
    }

    /// Logs why connection `id` broke the protocol and disconnects it.
    fn protocol_violation(&mut self, id: u64, why: &str) {
        if let Some(p) = self.peers.get(&id) {
            crate::log::peer_warning(
                crate::log::Kind::ProtocolViolation,
                &p.who(),
                &format!("Disconnecting {} ({}): {why}", p.name(), p.loginfo()),
            );
        }
        self.close(id);
    }

    /// Validates one whole message and routes it. Returns false if the
    /// connection is being closed.
    fn accept_message(&mut self, id: u64, bytes: MsgBytes) -> bool {
        let max_fds = self.config.limits.max_message_unix_fds as usize;
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        let header = match Header::parse(&bytes, p.in_fds.len()) {
            Ok(h) => h,
            Err(e) => {
                self.protocol_violation(id, &format!("invalid message: {e}"));
                return false;
            }
        };
        let n = header.unix_fds as usize;
        if n > max_fds || (n > 0 && !p.unix_fd) {
            self.protocol_violation(id, "too many or unexpected unix fds");
            return false;
        }
        let fds: Vec<_> = p.in_fds.drain(..n).collect();
        p.stats.in_msgs += 1;
        p.stats.in_bytes += bytes.len() as u64;
        p.stats.in_fds += n as u64;
        let charge = Charge::new(&p.live, bytes.len() as u64, n as u64);
        let sender_uid = p.account.uid;
        // Peaks of live bytes and fds, as dbus-daemon's PeakIncoming*.
        p.stats.peak_in_bytes = p.stats.peak_in_bytes.max(p.live.bytes.get());
        p.stats.peak_in_fds = p.stats.peak_in_fds.max(p.live.fds.get());
        self.dispatch(
            id,
            Inbound {
                bytes,
                header,
                fds,
                charge: Some(charge),
                sender_uid,
            },
        );
        self.peers.get(&id).is_some_and(|p| !p.closing)
    }

    /// Removes connection `id` and releases everything it held: names
    /// (with NameOwnerChanged), match rules, and pending calls (their callers
    /// get NoReply).
    pub fn remove_peer(&mut self, id: u64) -> Option<Peer> {
        self.disarm_deadlines(id);
        let p = self.peers.get_mut(&id)?;
        p.closing = true;
        let rules = self.matches.remove_peer(id);
        self.match_rules -= rules;
        let names = std::mem::take(&mut p.names);
        let was_incomplete = p.unique_name.is_none();
        let unique = p.unique_name.clone();
        let is_monitor = matches!(p.state, PeerState::Monitor);
        // As dbus-daemon (bus_connection_disconnected): names go in the
        // reverse order they were requested, the unique name (taken at
        // Hello) last. For each name the departing connection was primary
        // owner of: NameLost addressed to it (only monitors see it, and only
        // if its receive policy allows it, as the socket is gone), then
        // NameOwnerChanged, then NameAcquired for the next queued owner.
        let mut events = Vec::new();
        for n in names.iter().rev() {
            self.names.remove(n, id, &mut events);
        }
        if let Some(u) = unique.as_ref().filter(|_| !is_monitor) {
            events.push(NameEvent::Lost {
                peer: id,
                name: u.clone(),
            });
            events.push(NameEvent::OwnerChanged {
                name: u.clone(),
                old: Some(id),
                new: None,
            });
        }
        self.emit_name_events(events);
        if let Some(u) = &unique {
            if self.unique.get(u) == Some(&id) {
                self.unique.remove(u);
            }
        }
        for (caller, serial) in self.replies.peer_gone(id) {
            self.send_error_serial(
                caller,
                serial,
                errors::NO_REPLY,
                "Message recipient disconnected from message bus without replying",
            );
        }
        if is_monitor {
            self.monitors.retain(|m| *m != id);
            self.monitor_rules.remove(&id);
        }
        crate::activation::peer_gone(self, id);
        if was_incomplete {
            self.incomplete = self.incomplete.saturating_sub(1);
        } else {
            self.completed = self.completed.saturating_sub(1);
            if let Some(uid) = self.peers.get(&id).and_then(|p| p.auth_uid) {
                self.users.remove_active(uid);
            }
        }
        self.peers.remove(&id)
    }
}
