//! Connection lifecycle: a new socket, bytes in (SASL, then framing and
//! validation), and disconnection with everything it releases.

use std::collections::VecDeque;

use super::bus::Bus;
use super::names::NameEvent;
use super::peer::{loginfo, Charge, Inbound, OutMsg, Peer, PeerState, PeerStats};
use crate::driver::errors;
use crate::transport::sasl::{SaslServer, SaslStatus};
use crate::transport::stream::Stream;
use crate::wire::header::{frame_len, Header, FIXED_HEADER_LEN};

/// Supplementary groups of `uid` from the user database.
pub fn groups_of(uid: u32, gid: Option<u32>) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        if let Ok(name) = std::ffi::CString::new(u.name.clone()) {
            if let Ok(g) = nix::unistd::getgrouplist(&name, u.gid) {
                out.extend(g.into_iter().map(|g| g.as_raw()));
            }
        }
        out.push(u.gid.as_raw());
    }
    if let Some(g) = gid {
        out.push(g);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `uid` is logged in at a local console, as dbus-daemon decides
/// it on Linux (/run/console/USER, or a seat in systemd-logind).
pub fn at_console(uid: Option<u32>) -> bool {
    let Some(uid) = uid else { return false };
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        if std::path::Path::new("/run/console").join(&u.name).exists() {
            return true;
        }
    }
    std::fs::read_to_string(format!("/run/systemd/users/{uid}"))
        .map(|s| s.lines().any(|l| l.starts_with("SEATS=") && l.len() > 6))
        .unwrap_or(false)
}

/// Messages at least this large are read straight into their own buffer.
pub const LARGE_MESSAGE: usize = 64 * 1024;

impl Bus {
    /// Registers a newly accepted socket; returns its id.
    pub fn add_peer(&mut self, stream: Stream) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let creds = stream.peer_creds();
        let info = loginfo(&creds);
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
            inbuf: Vec::new(),
            large_rx: None,
            in_fds: VecDeque::new(),
            out: VecDeque::new(),
            write_interest: false,
            out_pos: 0,
            out_bytes: 0,
            out_fds: 0,
            names: Vec::new(),
            policy: policy::ConnectionPolicy::default(),
            auth_deadline: None,
            pending_fd_deadline: None,
            closing: false,
            stats: PeerStats::default(),
            loginfo: info,
            has_eavesdrop_rules: false,
            live: std::rc::Rc::default(),
            out_limits: (
                self.config.limits.max_outgoing_bytes,
                self.config.limits.max_outgoing_unix_fds,
            ),
        };
        self.peers.insert(id, peer);
        self.arm_auth_deadline(id);
        self.incomplete += 1;
        id
    }

    /// Recomputes the policy that applies to connection `id`.
    pub fn refresh_policy(&mut self, id: u64) {
        let Some(p) = self.peers.get(&id) else { return };
        let uid = p.auth_uid;
        let gids = p.gids.clone();
        let pol = self
            .config
            .policy
            .for_connection(uid, &gids, at_console(uid));
        if let Some(p) = self.peers.get_mut(&id) {
            p.policy = pol;
        }
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
                let (used, status) = sasl.feed(&p.inbuf, &mut out);
                p.inbuf.drain(..used);
                if !out.is_empty() {
                    p.enqueue_always(OutMsg {
                        head: std::rc::Rc::new(out),
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
            (Some(u), _) => groups_of(u, p.creds.gid.filter(|_| same_process_user)),
            (None, _) => Vec::new(),
        };
        let allowed = match uid {
            Some(u) => {
                let gids = groups_of(u, None);
                self.config.policy.allows_user(u, &gids)
            }
            None => self.config.allow_anonymous,
        };
        if !allowed {
            crate::log::warning(&format!(
                "Connection from uid {} was not authorized by the bus policy",
                uid.map_or("(none)".into(), |u| u.to_string())
            ));
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
        let mut pos = 0;
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
                p.inbuf.drain(..pos.min(p.inbuf.len()));
                return done;
            }
            let avail = p.inbuf.len() - pos;
            if avail < FIXED_HEADER_LEN {
                break;
            }
            let total = match frame_len(&p.inbuf[pos..pos + FIXED_HEADER_LEN], max) {
                Ok(t) => t,
                Err(e) => {
                    self.protocol_violation(id, &format!("invalid message: {e}"));
                    break;
                }
            };
            if avail < total {
                if total >= LARGE_MESSAGE {
                    let mut buf = super::peer::buffers::take(total);
                    buf[..avail].copy_from_slice(&p.inbuf[pos..]);
                    p.large_rx = Some((buf, avail));
                    pos = p.inbuf.len();
                }
                break;
            }
            let bytes = p.inbuf[pos..pos + total].to_vec();
            pos += total;
            done += 1;
            if !self.accept_message(id, bytes) {
                break;
            }
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.inbuf.drain(..pos.min(p.inbuf.len()));
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
            crate::log::warning(&format!(
                "Disconnecting {} ({}): {} unix fds pending, more than one message may carry (max_message_unix_fds={max})",
                p.name(),
                p.loginfo,
                p.in_fds.len()
            ));
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
        let Some((buf, _)) = p.large_rx.take() else {
            return;
        };
        self.accept_message(id, buf);
    }

    /// Logs why connection `id` broke the protocol and disconnects it.
    fn protocol_violation(&mut self, id: u64, why: &str) {
        if let Some(p) = self.peers.get(&id) {
            crate::log::warning(&format!(
                "Disconnecting {} ({}): {why}",
                p.name(),
                p.loginfo
            ));
        }
        self.close(id);
    }

    /// Validates one whole message and routes it. Returns false if the
    /// connection is being closed.
    fn accept_message(&mut self, id: u64, bytes: Vec<u8>) -> bool {
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
        let mut events = Vec::new();
        for n in &names {
            self.names.remove(n, id, &mut events);
        }
        if let Some(u) = unique.as_ref().filter(|_| !is_monitor) {
            events.push(NameEvent::OwnerChanged {
                name: u.clone(),
                old: Some(id),
                new: None,
            });
        }
        events.retain(|e| !matches!(e, NameEvent::Lost { peer, .. } | NameEvent::Acquired { peer, .. } if *peer == id));
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
        }
        self.peers.remove(&id)
    }
}
