//! The bus's state as plain data, for a re-executed busbar to take over
//! (doc/state-format.md). [`Bus::snapshot`] writes it out, [`Bus::restore`]
//! builds a bus from it. It is the broker's own state, field by field, with
//! the parts that are derived (indexes, counts, accounts, policies) left out
//! and rebuilt on restore.
//!
//! File descriptors travel by number: the old process clears FD_CLOEXEC on
//! every fd named here before it execs, and the new one takes ownership of
//! each number once (after checking that each is open and named once).

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::activation::{Held, Pending};
use super::bus::{Bus, BusStats};
use super::deadlines::Kind;
use super::matchrule::MatchRule;
use super::peer::{Charge, Inbound, OutMsg, Peer, PeerState, PeerStats, Shared};
use crate::transport::pool::Pooled;
use crate::transport::rxbuf::{MsgBytes, CHUNK_SIZE};
use crate::transport::sasl::{SaslServer, SaslSnapshot};
use crate::transport::stream::{PeerCreds, Stream};
use crate::wire::parsed::Parsed;

/// Byte strings as CBOR byte strings (not arrays of numbers).
mod bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::new();
            while let Some(b) = a.next_element::<u8>()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(V)
    }
}

/// A byte string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(#[serde(with = "bytes")] pub Vec<u8>);

/// A received message that is still alive somewhere (queued, held).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MsgState {
    /// The message as its sender sent it.
    pub bytes: Bytes,
    /// The fds it carries (numbers in the process).
    pub fds: Vec<RawFd>,
    /// The account (uid) queued copies are charged on behalf of.
    pub sender_uid: u32,
    /// The connection whose max_incoming_* counters it is charged to.
    pub charged_to: Option<u64>,
    /// For a message whose body is being spliced (format 1.1): `bytes` is
    /// its header and the values in front of the byte array, and this many
    /// bytes follow on the wire, through the body's pipe.
    pub rest: u64,
    /// That body (index in `BusState::bodies`).
    pub body: Option<u32>,
}

/// The rest of a message's body on its way from its sender's socket
/// through a pipe to its recipient (src/broker/splice.rs; format 1.1).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BodyState {
    /// The pipe's read end.
    pub pipe_read: RawFd,
    /// The pipe's write end.
    pub pipe_write: RawFd,
    /// The connection that sent it.
    pub sender: u64,
    /// The connection it is addressed to.
    pub recipient: u64,
    /// Bytes still in the sender's socket.
    pub to_read: u64,
    /// Bytes in the pipe.
    pub in_pipe: u64,
    /// Bytes read into memory past a full pipe and not yet written (they
    /// follow the pipe's).
    pub spill: Bytes,
    /// Whether the rest of the body goes to memory too.
    pub spilling: bool,
    /// Whether the sender waits for its recipient to read.
    pub parked: bool,
    /// Whether the sender went away before all of it was read.
    pub broken: bool,
}

/// One queued outgoing message.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OutState {
    /// The header the bus wrote (or the whole message).
    pub head: Bytes,
    /// The forwarded message whose body follows (index in `messages`).
    pub body: Option<u32>,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnState {
    /// SASL in progress (see `PeerSnap::sasl`).
    #[default]
    Authenticating,
    /// Authenticated, Hello not yet sent.
    WaitingHello,
    /// Has a unique name.
    Active,
    /// A monitor.
    Monitor,
}

/// One connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerSnap {
    /// Its id (and poll token).
    pub id: u64,
    /// Its socket.
    pub fd: RawFd,
    /// Whether the socket is TCP (else unix).
    pub tcp: bool,
    /// Credentials from the socket.
    pub creds: PeerCreds,
    /// uid after authentication.
    pub auth_uid: Option<u32>,
    /// Its groups.
    pub gids: Vec<u32>,
    /// Lifecycle state.
    pub state: ConnState,
    /// The handshake, while authenticating.
    pub sasl: Option<SaslSnapshot>,
    /// Its unique name.
    pub unique_name: Option<String>,
    /// Whether fd passing was negotiated.
    pub unix_fd: bool,
    /// Bytes read and not yet dispatched (a large message's part included).
    pub inbuf: Bytes,
    /// Fds received and not yet attached to a message.
    pub in_fds: Vec<RawFd>,
    /// The outgoing queue, front first.
    pub out: Vec<OutState>,
    /// Bytes of the front message already written.
    pub out_pos: u64,
    /// Its well-known names, in the order it asked for them.
    pub names: Vec<String>,
    /// Its match rules, in the order it added them.
    pub rules: Vec<MatchRule>,
    /// Time left for authentication and Hello.
    pub auth_deadline_ms: Option<u64>,
    /// Time left for its pending fds.
    pub pending_fd_deadline_ms: Option<u64>,
    /// Time left of a quota pause.
    pub quota_pause_ms: Option<u64>,
    /// Debug.Stats counters.
    pub stats: PeerStats,
    /// The body it is sending through a pipe (index in
    /// `BusState::bodies`; format 1.1).
    pub splice_in: Option<u32>,
}

/// A well-known name and its queue.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NameState {
    /// The name.
    pub name: String,
    /// (connection, flags), primary owner first.
    pub queue: Vec<(u64, u32)>,
}

/// A method call waiting for its reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplyState {
    /// Who called.
    pub caller: u64,
    /// The call's serial.
    pub serial: u32,
    /// Who owes the reply.
    pub callee: u64,
    /// Time left before NoReply (None: never).
    pub remaining_ms: Option<u64>,
}

/// A monitor and its rules.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorState {
    /// The connection.
    pub id: u64,
    /// Its rules.
    pub rules: Vec<MatchRule>,
}

/// What waits for a name being activated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HeldState {
    /// An auto-started call.
    Call {
        /// The caller.
        sender: u64,
        /// The call (index in `messages`).
        msg: u32,
        /// The header it will be forwarded with.
        head: Bytes,
    },
    /// A message of the bus's own.
    Driver {
        /// The message.
        out: Bytes,
    },
    /// A StartServiceByName.
    Start {
        /// The caller.
        sender: u64,
        /// Its serial.
        serial: u32,
    },
}

/// A name being activated.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingState {
    /// The name.
    pub name: String,
    /// What waits for it.
    pub held: Vec<HeldState>,
    /// Time left before the activation times out.
    pub remaining_ms: u64,
    /// The Exec line.
    pub exec: Option<String>,
    /// The SystemdService.
    pub systemd_service: Option<String>,
    /// The launched process.
    pub pid: Option<i32>,
}

/// The bus's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BusState {
    /// The addresses' GUID.
    pub guid: String,
    /// GetId's answer.
    pub id: String,
    /// The next unique name's number.
    pub next_unique: u64,
    /// The next connection id.
    pub next_id: u64,
    /// The last serial the bus used.
    pub serial: u32,
    /// Bus-wide Debug.Stats counters.
    pub stats: BusStats,
    /// --systemd-activation.
    pub systemd_activation: bool,
    /// The address clients connect to.
    pub address: String,
    /// Received messages still alive, referenced by index.
    pub messages: Vec<MsgState>,
    /// Every connection.
    pub peers: Vec<PeerSnap>,
    /// Well-known names.
    pub names: Vec<NameState>,
    /// Pending method calls.
    pub replies: Vec<ReplyState>,
    /// Monitors, in the order they became monitors.
    pub monitors: Vec<MonitorState>,
    /// Activations in progress.
    pub pending: Vec<PendingState>,
    /// The activation environment.
    pub env: Vec<(Bytes, Bytes)>,
    /// Bodies being spliced (format 1.1).
    pub bodies: Vec<BodyState>,
}

impl BusState {
    /// Every fd the state names (sockets, queued and pending fds).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut v = Vec::new();
        for p in &self.peers {
            v.push(p.fd);
            v.extend(&p.in_fds);
        }
        for m in &self.messages {
            v.extend(&m.fds);
        }
        for b in &self.bodies {
            v.push(b.pipe_read);
            v.push(b.pipe_write);
        }
        v
    }
}

fn remaining(at: Instant, now: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
}

fn after(now: Instant, ms: u64) -> Instant {
    now.checked_add(Duration::from_millis(ms))
        .unwrap_or(now + Duration::from_secs(86400 * 365))
}

/// Collects the received messages the state refers to, each once.
#[derive(Default)]
struct MsgTable {
    index: HashMap<*const Inbound, u32>,
    msgs: Vec<MsgState>,
    body_index: HashMap<*const super::splice::SpliceBody, u32>,
    bodies: Vec<BodyState>,
}

impl MsgTable {
    fn add(&mut self, m: &Shared, lives: &HashMap<*const super::peer::Live, u64>) -> u32 {
        let key: *const Inbound = &**m;
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let body = m.splice.as_ref().map(|b| self.body(b));
        let i = self.msgs.len() as u32;
        self.msgs.push(MsgState {
            bytes: Bytes(m.bytes().to_vec()),
            fds: m.fds.iter().map(|f| f.as_raw_fd()).collect(),
            sender_uid: m.sender_uid,
            charged_to: m
                .charge
                .as_ref()
                .and_then(|c| lives.get(&Rc::as_ptr(c.live())).copied()),
            rest: m.rest as u64,
            body,
        });
        self.index.insert(key, i);
        i
    }

    fn body(&mut self, b: &Rc<super::splice::SpliceBody>) -> u32 {
        let key = Rc::as_ptr(b);
        if let Some(&i) = self.body_index.get(&key) {
            return i;
        }
        let i = self.bodies.len() as u32;
        let s = b.save();
        self.bodies.push(BodyState {
            pipe_read: s.pipe.0,
            pipe_write: s.pipe.1,
            sender: s.sender,
            recipient: s.recipient,
            to_read: s.to_read as u64,
            in_pipe: s.in_pipe as u64,
            spill: Bytes(s.spill),
            spilling: s.spilling,
            parked: s.parked,
            broken: s.broken,
        });
        self.body_index.insert(key, i);
        i
    }

    fn out(&mut self, m: &OutMsg, lives: &HashMap<*const super::peer::Live, u64>) -> OutState {
        OutState {
            head: Bytes(m.head.to_vec()),
            body: m.body.as_ref().map(|b| self.add(b, lives)),
        }
    }
}

/// Puts the bytes a connection had read but not yet framed back: into its
/// receive chunk, or, for the start of a large message (more than a chunk
/// holds), into a buffer of its own as the framing would have. More than
/// a chunk that is not one message's start (io_uring's receives took more
/// than the chunk had room for: see transport::spill) fills the chunk, and
/// the rest waits in the connection's spill.
fn restore_input(p: &mut Peer, bytes: &[u8], max: usize) -> Result<(), String> {
    let whole = bytes.len() > CHUNK_SIZE
        && crate::wire::header::frame_len(bytes, max).is_ok_and(|t| t <= bytes.len());
    if bytes.len() <= CHUNK_SIZE || whole {
        let first = &bytes[..bytes.len().min(CHUNK_SIZE)];
        let at = p.inbuf.fill_from(first);
        if at < first.len() {
            return Err(corrupt("unread input does not fit"));
        }
        p.rx_spill.push(&bytes[at..], Vec::new());
        return Ok(());
    }
    let total = crate::wire::header::frame_len(bytes, max)
        .map_err(|e| corrupt(&format!("a half-read large message: {e}")))?;
    p.large_rx = Some(super::peer::LargeRx::new(bytes, total, &p.live));
    Ok(())
}

fn corrupt(what: &str) -> String {
    format!("the saved state is inconsistent: {what}")
}

impl Bus {
    /// The bus's state as plain data. Err when something cannot be carried
    /// over right now (the re-exec is then refused and may be retried).
    pub fn snapshot(&self) -> Result<BusState, String> {
        let now = Instant::now();
        let lives: HashMap<*const super::peer::Live, u64> = self
            .peers
            .values()
            .map(|p| (Rc::as_ptr(&p.live), p.id))
            .collect();
        let mut table = MsgTable::default();
        let mut ids: Vec<u64> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        let mut peers = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(p) = self.peers.get(&id) else {
                continue;
            };
            if p.closing {
                return Err(format!("connection {id} is being closed"));
            }
            if self.userdb.is_waiting(id) {
                return Err(format!("connection {id} waits for the user database"));
            }
            let (state, sasl) = match &p.state {
                PeerState::Authenticating(s) => (ConnState::Authenticating, Some(s.snapshot()?)),
                PeerState::WaitingHello => (ConnState::WaitingHello, None),
                PeerState::Active => (ConnState::Active, None),
                PeerState::Monitor => (ConnState::Monitor, None),
            };
            let mut inbuf = Vec::with_capacity(p.inbuf.len());
            if let Some(rx) = &p.large_rx {
                inbuf.extend_from_slice(rx.received());
            }
            inbuf.extend_from_slice(p.inbuf.data());
            for b in p.rx_spill.bytes() {
                inbuf.extend_from_slice(b);
            }
            let out = p.out.iter().map(|m| table.out(m, &lives)).collect();
            peers.push(PeerSnap {
                id,
                fd: p.stream.raw_fd(),
                tcp: !p.stream.can_pass_fds(),
                creds: p.creds,
                auth_uid: p.auth_uid,
                gids: p.gids().to_vec(),
                state,
                sasl,
                unique_name: p.unique_name.as_deref().map(str::to_string),
                unix_fd: p.unix_fd,
                inbuf: Bytes(inbuf),
                in_fds: p
                    .in_fds
                    .iter()
                    .map(|f| f.as_raw_fd())
                    .chain(p.rx_spill.raw_fds())
                    .collect(),
                out,
                out_pos: p.out_pos as u64,
                names: p.names.iter().map(|n| n.to_string()).collect(),
                rules: self.matches.rules_of(id).cloned().collect(),
                auth_deadline_ms: p.auth_deadline.map(|d| remaining(d, now)),
                pending_fd_deadline_ms: p.pending_fd_deadline.map(|d| remaining(d, now)),
                quota_pause_ms: p.quota_pause.map(|d| remaining(d, now)),
                stats: p.stats,
                splice_in: p.splice_in.as_ref().map(|b| table.body(b)),
            });
        }
        let names = self
            .names
            .entries()
            .map(|(n, queue)| NameState {
                name: n.to_string(),
                queue,
            })
            .collect();
        let replies = self
            .replies
            .entries()
            .map(|(caller, serial, callee, d)| ReplyState {
                caller,
                serial,
                callee,
                remaining_ms: d.map(|d| remaining(d, now)),
            })
            .collect();
        let monitors = self
            .monitors
            .iter()
            .map(|&id| MonitorState {
                id,
                rules: self.monitor_rules.get(&id).cloned().unwrap_or_default(),
            })
            .collect();
        let mut pending = Vec::new();
        for (name, p) in &self.activation.pending {
            let held = p
                .held
                .iter()
                .map(|h| match h {
                    Held::Call { sender, inb, out } => HeldState::Call {
                        sender: *sender,
                        msg: table.add(inb, &lives),
                        head: Bytes(out.head.to_vec()),
                    },
                    Held::Driver { out } => HeldState::Driver {
                        out: Bytes(out.head.to_vec()),
                    },
                    Held::Start { sender, serial } => HeldState::Start {
                        sender: *sender,
                        serial: *serial,
                    },
                })
                .collect();
            pending.push(PendingState {
                name: name.clone(),
                held,
                remaining_ms: remaining(p.deadline, now),
                exec: p.exec.clone(),
                systemd_service: p.systemd_service.clone(),
                pid: p.pid,
            });
        }
        use std::os::unix::ffi::OsStrExt;
        let env = self
            .activation
            .env
            .iter()
            .map(|(k, v)| (Bytes(k.as_bytes().to_vec()), Bytes(v.as_bytes().to_vec())))
            .collect();
        Ok(BusState {
            guid: self.guid.clone(),
            id: self.id.clone(),
            next_unique: self.next_unique,
            next_id: self.next_id,
            serial: self.serial,
            stats: self.stats,
            systemd_activation: self.systemd_activation,
            address: self.address.clone(),
            messages: table.msgs,
            bodies: table.bodies,
            peers,
            names,
            replies,
            monitors,
            pending,
            env,
        })
    }

    /// Builds a bus from a snapshot under the configuration `config` (read
    /// from disk again by the new process). Takes ownership of every fd the
    /// state names; Err (with nothing taken) when the state is inconsistent.
    pub fn restore(
        st: BusState,
        config: Rc<policy::Config>,
        sasl: Rc<crate::transport::sasl::SaslConfig>,
        mac: crate::mac::Mac,
    ) -> Result<Bus, String> {
        check(&st)?;
        let now = Instant::now();
        let mut bus = Bus::new(config, sasl, st.guid.clone(), st.id.clone());
        bus.mac = mac;
        bus.next_unique = st.next_unique;
        bus.next_id = st.next_id;
        bus.serial = st.serial;
        bus.systemd_activation = st.systemd_activation;
        bus.address = st.address;
        // Every fd is taken here, once, so that whatever fails below
        // closes them instead of leaking them.
        let mut fds: HashMap<RawFd, OwnedFd> = HashMap::new();
        for fd in st
            .peers
            .iter()
            .flat_map(|p| std::iter::once(p.fd).chain(p.in_fds.iter().copied()))
            .chain(st.messages.iter().flat_map(|m| m.fds.iter().copied()))
            .chain(st.bodies.iter().flat_map(|b| [b.pipe_read, b.pipe_write]))
        {
            // SAFETY: `check` verified that `fd` is open in this process
            // and that the state names it only once; the previous image
            // owned it and handed it over across exec, and nothing else
            // in this process has taken it (the restore runs before any
            // other fd is wrapped), so this is its only owner.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = nix::fcntl::fcntl(
                owned.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            fds.insert(fd, owned);
        }
        let mut take = |fd: RawFd| fds.remove(&fd).ok_or_else(|| corrupt("an fd named twice"));

        for ps in &st.peers {
            let sock = take(ps.fd)?;
            let stream = if ps.tcp {
                Stream::Tcp(mio::net::TcpStream::from_std(std::net::TcpStream::from(
                    sock,
                )))
            } else {
                Stream::Unix(mio::net::UnixStream::from_std(
                    std::os::unix::net::UnixStream::from(sock),
                ))
            };
            let state = match ps.state {
                ConnState::Authenticating => {
                    let s = ps
                        .sasl
                        .as_ref()
                        .ok_or_else(|| corrupt("a handshake without its state"))?;
                    PeerState::Authenticating(Box::new(SaslServer::restore(bus.sasl.clone(), s)?))
                }
                ConnState::WaitingHello => PeerState::WaitingHello,
                ConnState::Active => PeerState::Active,
                ConnState::Monitor => PeerState::Monitor,
            };
            let mut in_fds = VecDeque::with_capacity(ps.in_fds.len());
            for &f in &ps.in_fds {
                in_fds.push_back(take(f)?);
            }
            let unique_name: Option<Rc<str>> = ps.unique_name.as_deref().map(Rc::from);
            // The label is the socket's (SO_PEERSEC), read again; a peer
            // the modules cannot label now keeps no label, as it was
            // admitted already.
            let mac = bus.mac.peer(stream.peer_security_label()).unwrap_or(None);
            let mut peer = bus.new_peer(ps.id, stream, ps.creds, state, mac);
            peer.auth_uid = ps.auth_uid;
            peer.gids = ps.gids.clone().into();
            peer.unique_name = unique_name.clone();
            peer.unix_fd = ps.unix_fd;
            peer.in_fds = in_fds;
            peer.names = ps.names.iter().map(|n| Rc::from(n.as_str())).collect();
            peer.quota_pause = ps.quota_pause_ms.map(|ms| after(now, ms));
            restore_input(
                &mut peer,
                &ps.inbuf.0,
                bus.config.limits.max_message_size as usize,
            )?;
            match &unique_name {
                Some(u) => {
                    if ps.state == ConnState::Active {
                        bus.unique.insert(u.clone(), ps.id);
                    }
                    bus.completed += 1;
                    if let Some(uid) = ps.auth_uid {
                        bus.users.add_active(uid);
                    }
                }
                None => bus.incomplete += 1,
            }
            bus.peers.insert(ps.id, peer);
            if let Some(ms) = ps.auth_deadline_ms {
                let at = after(now, ms);
                if let Some(p) = bus.peers.get_mut(&ps.id) {
                    p.auth_deadline = Some(at);
                }
                bus.deadlines.arm(at, ps.id, Kind::Auth);
            }
            if let Some(ms) = ps.pending_fd_deadline_ms {
                let at = after(now, ms);
                if let Some(p) = bus.peers.get_mut(&ps.id) {
                    p.pending_fd_deadline = Some(at);
                }
                bus.deadlines.arm(at, ps.id, Kind::PendingFds);
            }
            for r in &ps.rules {
                bus.matches.insert(ps.id, r.clone());
            }
        }

        let mut bodies = Vec::with_capacity(st.bodies.len());
        for b in &st.bodies {
            let pipe =
                crate::transport::splice::Pipe::adopt(take(b.pipe_read)?, take(b.pipe_write)?)
                    .map_err(|e| corrupt(&format!("a spliced body's pipe: {e}")))?;
            let size = |v: u64| usize::try_from(v).map_err(|_| corrupt("a spliced body's size"));
            bodies.push(super::splice::SpliceBody::restored(
                pipe,
                super::splice::SavedBody {
                    pipe: (b.pipe_read, b.pipe_write),
                    sender: b.sender,
                    recipient: b.recipient,
                    to_read: size(b.to_read)?,
                    in_pipe: size(b.in_pipe)?,
                    spill: b.spill.0.clone(),
                    spilling: b.spilling,
                    parked: b.parked,
                    broken: b.broken,
                },
            ));
        }
        let body = |i: u32| {
            bodies
                .get(i as usize)
                .cloned()
                .ok_or_else(|| corrupt("a spliced body's index out of range"))
        };
        for ps in &st.peers {
            if let Some(i) = ps.splice_in {
                let b = body(i)?;
                if b.sender != ps.id {
                    return Err(corrupt("a spliced body's sender"));
                }
                if let Some(p) = bus.peers.get_mut(&ps.id) {
                    p.splice_in = Some(b);
                }
            }
        }

        let mut msgs: Vec<Shared> = Vec::with_capacity(st.messages.len());
        for m in &st.messages {
            let bytes = MsgBytes::Owned(m.bytes.0.clone());
            let (msg, splice) = match m.body {
                None => (
                    Parsed::parse(bytes, m.fds.len())
                        .map_err(|e| corrupt(&format!("a saved message does not parse: {e}")))?,
                    None,
                ),
                // The front of a message whose body is being spliced: its
                // header and what comes before the byte array, validated as
                // when it arrived.
                Some(i) => {
                    let (parsed, head_len) = Parsed::parse_prefix(bytes, m.fds.len())
                        .filter(|(_, n)| *n == m.bytes.0.len())
                        .ok_or_else(|| corrupt("a spliced message's front does not parse"))?;
                    let msg = parsed
                        .copied_prefix(head_len, |b| MsgBytes::Owned(b.to_vec()))
                        .ok_or_else(|| corrupt("a spliced message's front"))?;
                    (msg, Some(body(i)?))
                }
            };
            let rest = usize::try_from(m.rest).map_err(|_| corrupt("a message's length"))?;
            let whole = crate::wire::header::frame_len(&m.bytes.0, usize::MAX).ok();
            if (rest > 0) != splice.is_some() || whole != m.bytes.0.len().checked_add(rest) {
                return Err(corrupt("a spliced message's length"));
            }
            let mut mfds = Vec::with_capacity(m.fds.len());
            for &f in &m.fds {
                mfds.push(take(f)?);
            }
            let charge = m
                .charged_to
                .and_then(|id| bus.peers.get(&id))
                .map(|p| Charge::new(&p.live, (m.bytes.0.len() + rest) as u64, m.fds.len() as u64));
            msgs.push(Pooled::new(Inbound {
                msg,
                fds: mfds,
                charge,
                sender_uid: m.sender_uid,
                rest,
                splice,
            }));
        }
        let msg = |i: u32| {
            msgs.get(i as usize)
                .cloned()
                .ok_or_else(|| corrupt("a message index out of range"))
        };
        for ps in &st.peers {
            let mut queue = Vec::with_capacity(ps.out.len());
            for o in &ps.out {
                queue.push(OutMsg {
                    head: Pooled::new(o.head.0.clone()),
                    body: o.body.map(msg).transpose()?,
                });
            }
            let Some(p) = bus.peers.get_mut(&ps.id) else {
                continue;
            };
            for m in queue {
                p.enqueue_always(m);
            }
            let front = p.out.front().map_or(0, |m| m.len());
            let pos = usize::try_from(ps.out_pos).unwrap_or(usize::MAX);
            if pos > 0 && pos >= front {
                return Err(corrupt("a written position past its message"));
            }
            p.out_pos = pos;
            p.out_bytes -= pos;
            p.stats = ps.stats;
        }
        for n in &st.names {
            bus.names.restore(&n.name, &n.queue);
        }
        for r in &st.replies {
            let d = r.remaining_ms.map(|ms| after(now, ms));
            let _ = bus
                .replies
                .expect(r.caller, r.callee, r.serial, d, u64::MAX);
        }
        for m in &st.monitors {
            bus.monitors.push(m.id);
            bus.monitor_rules.insert(m.id, m.rules.clone());
        }
        for p in &st.pending {
            let mut held = Vec::with_capacity(p.held.len());
            for h in &p.held {
                held.push(match h {
                    HeldState::Call {
                        sender,
                        msg: i,
                        head,
                    } => {
                        let inb = msg(*i)?;
                        Held::Call {
                            sender: *sender,
                            out: OutMsg {
                                head: Pooled::new(head.0.clone()),
                                body: Some(inb.clone()),
                            },
                            inb,
                        }
                    }
                    HeldState::Driver { out } => Held::Driver {
                        out: OutMsg {
                            head: Pooled::new(out.0.clone()),
                            body: None,
                        },
                    },
                    HeldState::Start { sender, serial } => Held::Start {
                        sender: *sender,
                        serial: *serial,
                    },
                });
            }
            bus.activation.n_held += held.len();
            bus.activation.pending.insert(
                p.name.clone(),
                Pending {
                    held,
                    deadline: after(now, p.remaining_ms),
                    exec: p.exec.clone(),
                    systemd_service: p.systemd_service.clone(),
                    pid: p.pid,
                },
            );
        }
        use std::os::unix::ffi::OsStringExt;
        bus.activation.env = st
            .env
            .iter()
            .map(|(k, v)| {
                (
                    std::ffi::OsString::from_vec(k.0.clone()),
                    std::ffi::OsString::from_vec(v.0.clone()),
                )
            })
            .collect();
        let ids: Vec<u64> = bus.peers.keys().copied().collect();
        for id in ids {
            bus.refresh_policy(id);
        }
        bus.stats = st.stats;
        Ok(bus)
    }
}

/// Checks what must hold before any fd is taken: every fd named once and
/// open, every id referred to present, no id past the counter.
fn check(st: &BusState) -> Result<(), String> {
    let mut seen = HashSet::new();
    for fd in st.fds() {
        if fd < 3 || !seen.insert(fd) {
            return Err(corrupt(&format!("fd {fd} named twice or a standard fd")));
        }
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return Err(corrupt(&format!("fd {fd} is not open")));
        }
    }
    let mut ids = HashSet::new();
    for p in &st.peers {
        if p.id == 0 || p.id >= st.next_id || !ids.insert(p.id) {
            return Err(corrupt(&format!("connection id {}", p.id)));
        }
        if (p.state == ConnState::Authenticating) != p.sasl.is_some() {
            return Err(corrupt("a handshake state"));
        }
        if matches!(p.state, ConnState::Active | ConnState::Monitor) != p.unique_name.is_some() {
            return Err(corrupt("a unique name"));
        }
    }
    let known = |id: u64| ids.contains(&id);
    for n in &st.names {
        if !n.queue.iter().all(|&(id, _)| known(id)) {
            return Err(corrupt("a name owner"));
        }
    }
    for m in &st.monitors {
        if !st
            .peers
            .iter()
            .any(|p| p.id == m.id && p.state == ConnState::Monitor)
        {
            return Err(corrupt("a monitor"));
        }
    }
    Ok(())
}
