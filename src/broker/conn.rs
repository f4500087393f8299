//! Connection lifecycle: a new socket, bytes in (SASL, then framing and
//! validation), and disconnection with everything it releases.

use std::collections::VecDeque;

use super::bus::Bus;
use super::errors;
use super::peer::{Charge, Inbound, OutMsg, Peer, PeerState, PeerStats};
use crate::transport::rxbuf::MsgBytes;
use crate::transport::sasl::{SaslServer, SaslStatus};
use crate::transport::stream::Stream;
use crate::wire::header::{frame_len, FIXED_HEADER_LEN};
use crate::wire::parsed::Parsed;

/// Messages at least this large are read straight into their own buffer.
pub const LARGE_MESSAGE: usize = 64 * 1024;

impl Bus {
    /// Registers a newly accepted socket; returns its id.
    pub fn add_peer(&mut self, stream: Stream) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let creds = stream.peer_creds();
        let sasl = SaslServer::new(self.sasl.clone(), creds.uid);
        // A peer a security module cannot label is dropped, as by
        // dbus-daemon's connection set-up.
        let (mac, refused) = match self.mac.peer(stream.peer_security_label()) {
            Ok(m) => (m, false),
            Err(_) => (None, true),
        };
        let peer = self.new_peer(
            id,
            stream,
            creds,
            PeerState::Authenticating(Box::new(sasl)),
            mac,
        );
        self.peers.insert(id, peer);
        if refused {
            self.to_close.push(id);
        }
        self.arm_auth_deadline(id);
        self.incomplete += 1;
        id
    }

    /// A connection in `state` with nothing queued, read or owned yet,
    /// under the configuration's outgoing limits (new ones, and the ones a
    /// re-executed image takes over, which then fills in what it saved).
    pub(super) fn new_peer(
        &mut self,
        id: u64,
        stream: Stream,
        creds: crate::transport::stream::PeerCreds,
        state: PeerState,
        mac: Option<Box<crate::mac::PeerMac>>,
    ) -> Peer {
        let account = self
            .users
            .account(creds.uid.unwrap_or(super::quota::NO_UID));
        Peer {
            id,
            stream,
            creds,
            auth_uid: None,
            gids: std::cell::OnceCell::new(),
            gids_from_socket: false,
            state,
            unique_name: None,
            unix_fd: false,
            inbuf: crate::transport::rxbuf::RxBuf::default(),
            large_rx: None,
            splice_in: None,
            splice_wait: false,
            splice_deadline: None,
            rx_spill: Default::default(),
            rx_ring: false,
            rx_release: false,
            in_fds: VecDeque::new(),
            out: VecDeque::new(),
            write_interest: false,
            out_pos: 0,
            out_detached: 0,
            out_spliced: 0,
            out_bytes: 0,
            out_fds: 0,
            names: Vec::new(),
            policy: policy::ConnectionPolicy::default(),
            auth_deadline: None,
            pending_fd_deadline: None,
            closing: false,
            stats: PeerStats::default(),
            loginfo_cache: std::cell::OnceCell::new(),
            live: std::rc::Rc::default(),
            out_limits: (
                self.config.limits.max_outgoing_bytes,
                self.config.limits.max_outgoing_unix_fds,
            ),
            account,
            quota_pause: None,
            mac,
        }
    }

    /// Whether the policy has at_console rules (either answer selects an
    /// empty set of rules when it has none).
    fn has_console_rules(&self) -> bool {
        let rules = self.config.policy.rules();
        !(rules.at_console.is_empty() && rules.not_at_console.is_empty())
    }

    /// Whether `uid` is logged in at a local console, as dbus-daemon
    /// decides it on Linux (/run/console/USER, or a seat in
    /// systemd-logind), answered from the state the console watch keeps.
    /// Only asked when the policy has at_console rules. The user's name
    /// comes from whatever answer the cache has (a connection being
    /// admitted waited for a fresh one first, see [`Bus::finish_auth`]).
    pub fn at_console(&mut self, uid: Option<u32>) -> bool {
        let Some(uid) = uid else { return false };
        if !self.has_console_rules() {
            return false;
        }
        let db = &mut self.userdb;
        self.console
            .at_console(uid, || db.known(uid).and_then(|i| i.name.clone()))
    }

    /// Recomputes the policy that applies to connection `id`.
    pub fn refresh_policy(&mut self, id: u64) {
        let Some(p) = self.peers.get(&id) else { return };
        let uid = p.auth_uid;
        let gids = if self.config.policy.uses_groups() {
            p.gids().to_vec()
        } else {
            Vec::new()
        };
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
    /// look at groups: only then are the user database's groups needed.
    fn connect_rules_need_groups(&self) -> bool {
        let rules = self.config.policy.rules();
        rules
            .default
            .iter()
            .chain(&rules.mandatory)
            .any(|r| matches!(r, policy::rules::Rule::Group { .. }))
    }

    /// Whether connection `id` waits for the user database (it is not
    /// read from until the answer comes).
    pub fn awaits_userdb(&self, id: u64) -> bool {
        self.userdb.is_waiting(id)
    }

    /// The user database answered: finishes admitting the connections that
    /// waited for it and returns them, for the loop to give each a turn
    /// (what they sent meanwhile is still buffered or in the socket).
    pub fn userdb_answered(&mut self) -> Vec<u64> {
        let mut ready = Vec::new();
        for id in self.userdb.take_answered() {
            if self.peers.get(&id).is_some_and(|p| !p.closing) && self.finish_auth(id) {
                ready.push(id);
            }
        }
        ready
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
            if p.closing || self.userdb.is_waiting(id) {
                return 0;
            }
            if let PeerState::Authenticating(sasl) = &mut p.state {
                // Room for the usual answer (OK and the GUID) at once.
                let mut out = Vec::with_capacity(64);
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
        self.finish_auth(id);
    }

    /// Decides whether the authenticated connection `id` may stay, and its
    /// policy. What this needs from the user database comes from the cache;
    /// on a miss the worker is asked, the connection waits (it is not read
    /// from, see [`Bus::process_input`]) and this returns false, to run
    /// again from the start when [`Bus::userdb_answered`] hands it back. The
    /// auth timeout still runs meanwhile, so a stuck user database costs
    /// only the connections that wait for it. True when decided.
    fn finish_auth(&mut self, id: u64) -> bool {
        let Some(p) = self.peers.get(&id) else {
            return true;
        };
        let uid = p.auth_uid;
        // Groups for the policy and GetConnectionCredentials come from the
        // socket (SO_PEERGROUPS plus the peer's gid), as in dbus-daemon
        // 1.14; whether a user may connect at all is decided from the user
        // database.
        let same_process_user = uid.is_some() && p.creds.uid == uid;
        let socket_gid = p.creds.gid.filter(|_| same_process_user);
        // Read from the socket when first needed (see [`Peer::gids`]):
        // most configurations have no group policy, and then only
        // GetConnectionCredentials asks. Read now while this kernel has
        // not answered SO_PEERGROUPS yet, so that an old kernel without it
        // falls back on the user database here, where waiting for it is
        // possible.
        let from_socket_later = same_process_user
            && Stream::peer_groups_known_to_work()
            && !self.config.policy.uses_groups();
        let socket_groups = if same_process_user && !from_socket_later {
            p.stream.peer_groups()
        } else {
            None
        };
        let gids = match (uid, socket_groups) {
            _ if from_socket_later => None,
            (Some(_), Some(mut g)) => {
                g.extend(socket_gid);
                g.sort_unstable();
                g.dedup();
                Some(g)
            }
            // No SO_PEERGROUPS (an old kernel), or a uid other than the
            // socket's: the user database says, through the cache.
            (Some(u), None) => match self.userdb.fresh_groups(u, socket_gid) {
                Some(g) => Some(g),
                None => {
                    self.userdb.wait_for(id, u);
                    return false;
                }
            },
            (None, _) => Some(Vec::new()),
        };
        if let Some(u) = uid {
            let needs_groups = self.connect_rules_need_groups();
            let needs_name = self.has_console_rules() && self.console.names_matter();
            if (needs_groups || needs_name) && self.userdb.fresh(u).is_none() {
                self.userdb.wait_for(id, u);
                return false;
            }
        }
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
            return true;
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.gids_from_socket = from_socket_later;
            p.gids = std::cell::OnceCell::new();
            if let Some(g) = gids {
                let _ = p.gids.set(g);
            }
        }
        self.refresh_policy(id);
        true
    }

    /// Whether the connect rules let `uid` in. The groups come from the
    /// cache, which [`Bus::finish_auth`] made sure holds a fresh answer
    /// when the rules look at groups.
    fn allows_user(&mut self, uid: u32) -> bool {
        let gids = if self.connect_rules_need_groups() {
            self.userdb
                .known(uid)
                .map(|i| i.gids.to_vec())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.config.policy.allows_user(uid, &gids)
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
            if p.closing || p.large_rx.is_some() || p.splice_in.is_some() {
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
                if total >= super::splice::threshold() {
                    if p.rx_ring {
                        // A receive armed on the socket could take the
                        // body's bytes: the loop takes it back and frames
                        // again.
                        p.rx_release = true;
                        break;
                    }
                    match self.try_splice(id, total) {
                        super::splice::Start::Started => break,
                        super::splice::Start::Wait => {
                            if let Some(p) = self.peers.get_mut(&id) {
                                p.splice_wait = true;
                            }
                            break;
                        }
                        super::splice::Start::No => {}
                    }
                }
                let Some(p) = self.peers.get_mut(&id) else {
                    return done;
                };
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
    pub(super) fn protocol_violation(&mut self, id: u64, why: &str) {
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
        let msg = match Parsed::parse(bytes, p.in_fds.len()) {
            Ok(m) => m,
            Err(e) => {
                self.protocol_violation(id, &format!("invalid message: {e}"));
                return false;
            }
        };
        let n = msg.header().unix_fds as usize;
        let len = msg.bytes().len() as u64;
        if n > max_fds || (n > 0 && !p.unix_fd) {
            self.protocol_violation(id, "too many or unexpected unix fds");
            return false;
        }
        let fds: Vec<_> = p.in_fds.drain(..n).collect();
        p.stats.in_msgs += 1;
        p.stats.in_bytes += len;
        p.stats.in_fds += n as u64;
        let charge = Charge::new(&p.live, len, n as u64);
        let sender_uid = p.account.uid;
        // Peaks of live bytes and fds, as dbus-daemon's PeakIncoming*.
        p.stats.peak_in_bytes = p.stats.peak_in_bytes.max(p.live.bytes.get());
        p.stats.peak_in_fds = p.stats.peak_in_fds.max(p.live.fds.get());
        self.dispatch(
            id,
            Inbound {
                msg,
                fds,
                charge: Some(charge),
                sender_uid,
                rest: 0,
                splice: None,
            },
        );
        self.peers.get(&id).is_some_and(|p| !p.closing)
    }

    /// Removes connection `id` and releases everything it held: names
    /// (with NameOwnerChanged), match rules, and pending calls (their callers
    /// get NoReply).
    pub fn remove_peer(&mut self, id: u64) -> Option<Peer> {
        self.disarm_deadlines(id);
        self.userdb.forget(id);
        self.splice_sender_gone(id);
        let p = self.peers.get_mut(&id)?;
        p.closing = true;
        let was_incomplete = p.unique_name.is_none();
        let is_monitor = matches!(p.state, PeerState::Monitor);
        // As dbus-daemon (bus_connection_disconnected): names go in the
        // reverse order they were requested, the unique name (taken at
        // Hello) last. For each name the departing connection was primary
        // owner of: NameLost addressed to it (only monitors see it, and only
        // if its receive policy allows it, as the socket is gone), then
        // NameOwnerChanged, then NameAcquired for the next queued owner.
        self.release_all(id, super::state::Release::Disconnect);
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
