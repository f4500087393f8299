//! One connection: its socket, authentication state, buffers and the queue
//! of messages waiting to be written.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use crate::transport::pool::{FreeList, Pooled, Recycle};
use crate::transport::rxbuf::{MsgBytes, RxBuf};
use crate::transport::sasl::SaslServer;
use crate::transport::stream::{PeerCreds, Stream};
use crate::wire::parsed::Parsed;

/// A message as received: validated bytes and the fds that came with it.
/// Shared (reference-counted, in a reused slot) by every recipient.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The whole message as the peer sent it (a slice of the connection's
    /// receive chunk, or a buffer of its own for a large message), with
    /// the header parsed from it.
    pub msg: Parsed<MsgBytes>,
    /// The fds it carries.
    pub fds: Vec<OwnedFd>,
    /// What it costs its sender while it is alive (queued for a
    /// recipient, held for activation, ...).
    pub charge: Option<Charge>,
    /// The account (uid) of the connection that sent it, which queued
    /// copies are charged on behalf of (see [`super::quota`]).
    pub sender_uid: u32,
    /// Bytes of the body past `bytes`, which are not in memory: they come
    /// through `splice` (see [`super::splice`]). 0 for other messages.
    pub rest: usize,
    /// The pipe the rest of the body comes through.
    pub splice: Option<Rc<super::splice::SpliceBody>>,
}

/// Bytes and fds of the messages a connection sent that are still alive
/// somewhere in the bus: dbus-daemon's `live_messages` counter, which
/// max_incoming_bytes and max_incoming_unix_fds bound. While a connection is
/// at either limit the bus stops reading from it (back-pressure, not
/// disconnection) until recipients drain its messages.
#[derive(Debug, Default)]
pub struct Live {
    /// Bytes of live messages.
    pub bytes: Cell<u64>,
    /// Fds of live messages.
    pub fds: Cell<u64>,
    /// Of `bytes`, those of a message still being received.
    pub partial: Cell<u64>,
}

impl Live {
    /// Whether reading from the connection must wait (dbus-daemon reads
    /// while both counts are below their limits).
    ///
    /// `bytes` includes the part of a large message received so far (see
    /// [`LargeRx`]), which dbus-daemon does not count. So that a message
    /// larger than max_incoming_bytes can still arrive, as it can with
    /// dbus-daemon, those bytes alone never stop the reading: only together
    /// with complete messages that are still alive.
    pub fn at_limit(&self, max_bytes: u64, max_fds: u64) -> bool {
        let bytes = self.bytes.get();
        (bytes >= max_bytes && bytes > self.partial.get()) || self.fds.get() >= max_fds
    }
}

/// One message's share of its sender's [`Live`] counter, given back when
/// the message is dropped.
#[derive(Debug)]
pub struct Charge {
    live: Rc<Live>,
    bytes: u64,
    fds: u64,
}

impl Charge {
    /// The counter this charge is on.
    pub fn live(&self) -> &Rc<Live> {
        &self.live
    }

    /// Charges `bytes` and `fds` to `live`.
    pub fn new(live: &Rc<Live>, bytes: u64, fds: u64) -> Charge {
        live.bytes.set(live.bytes.get() + bytes);
        live.fds.set(live.fds.get() + fds);
        Charge {
            live: live.clone(),
            bytes,
            fds,
        }
    }
}

impl Charge {
    /// The same charge once more (for a copy of the message).
    pub fn again(&self) -> Charge {
        Charge::new(&self.live, self.bytes, self.fds)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let l = &self.live;
        l.bytes.set(l.bytes.get().saturating_sub(self.bytes));
        l.fds.set(l.fds.get().saturating_sub(self.fds));
    }
}

/// The bytes so far of a large message that is still arriving, in a buffer
/// of its own that grows as they come (never by more than [`MAX_STEP`] at a
/// time), so a peer that announces a large message and sends nothing more
/// pins a small buffer, not the size it announced. What arrived is charged
/// to the sender's [`Live`] counter.
#[derive(Debug)]
pub struct LargeRx {
    /// Received bytes, then zeroed room for more: `buf.len()` is the end of
    /// the room.
    buf: Vec<u8>,
    /// Bytes received.
    filled: usize,
    /// The message's length from its fixed header.
    total: usize,
    live: Rc<Live>,
}

/// The first buffer of a large message holds at most this much.
pub const FIRST_STEP: usize = 64 * 1024;
/// A large message's buffer grows by at most this much at once.
pub const MAX_STEP: usize = 4 * 1024 * 1024;

impl LargeRx {
    /// Starts a message of `total` bytes whose first bytes are `prefix`.
    pub fn new(prefix: &[u8], total: usize, live: &Rc<Live>) -> LargeRx {
        let filled = prefix.len().min(total);
        let room = total.min(filled.max(FIRST_STEP));
        let mut buf = buffers::take(room);
        buf[..filled].copy_from_slice(&prefix[..filled]);
        let mut rx = LargeRx {
            buf,
            filled: 0,
            total,
            live: live.clone(),
        };
        rx.advance(filled);
        rx
    }

    /// Room for the next bytes (never empty while the message is not
    /// complete): the buffer grows here, by at most [`MAX_STEP`].
    pub fn spare(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() && self.filled < self.total {
            let step = self.buf.len().clamp(FIRST_STEP, MAX_STEP);
            let room = self.total.min(self.buf.len() + step);
            self.buf.reserve_exact(room - self.buf.len());
            self.buf.resize(room, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Records that `n` more bytes arrived in [`LargeRx::spare`]; returns
    /// whether the message is complete.
    pub fn advance(&mut self, n: usize) -> bool {
        let n = n.min(self.buf.len() - self.filled);
        self.filled += n;
        let l = &self.live;
        l.bytes.set(l.bytes.get() + n as u64);
        l.partial.set(l.partial.get() + n as u64);
        self.filled == self.total
    }

    /// The bytes received so far.
    pub fn received(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Bytes received so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The message, once complete (its charge is given back: the complete
    /// message is charged on its own).
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.buf);
        b.truncate(self.filled);
        b
    }
}

impl Drop for LargeRx {
    fn drop(&mut self) {
        let l = &self.live;
        let n = self.filled as u64;
        l.bytes.set(l.bytes.get().saturating_sub(n));
        l.partial.set(l.partial.get().saturating_sub(n));
        if !self.buf.is_empty() {
            buffers::give_back(std::mem::take(&mut self.buf));
        }
    }
}

impl Inbound {
    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.msg.bytes()[self.msg.header().body_start..]
    }

    /// The header.
    pub fn header(&self) -> &crate::wire::header::Header {
        self.msg.header()
    }

    /// The bytes (only the start of a message whose body is spliced).
    pub fn bytes(&self) -> &[u8] {
        self.msg.bytes()
    }

    /// The message as policy and match rules read it.
    pub fn view(&self) -> super::security::View<'_> {
        super::security::View(self.msg.view())
    }
}

impl Inbound {
    /// A copy in a buffer of its own, if this one lies in a shared receive
    /// chunk and carries no fds (see [`Peer::detach_queued`]). The copy is
    /// charged to the sender as the original is.
    pub fn detached(&self) -> Option<Shared> {
        if !matches!(self.msg.raw(), MsgBytes::Chunk { .. })
            || !self.fds.is_empty()
            || self.splice.is_some()
        {
            return None;
        }
        let msg = self.msg.copied(|b| MsgBytes::Owned(b.to_vec()))?;
        Some(Shared::new(Inbound {
            msg,
            fds: Vec::new(),
            charge: self.charge.as_ref().map(Charge::again),
            sender_uid: self.sender_uid,
            rest: 0,
            splice: None,
        }))
    }

    /// Gives a large message's buffer back for reuse.
    fn release_bytes(&mut self) {
        if let MsgBytes::Owned(b) = self.msg.take_bytes() {
            buffers::give_back(b);
        }
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.release_bytes();
    }
}

thread_local! {
    static INBOUND: FreeList<Inbound> = FreeList::default();
}

impl Recycle for Inbound {
    fn recycle(&mut self) {
        self.release_bytes();
        // Closes the fds nobody took and gives the charge back.
        self.fds.clear();
        self.charge = None;
        self.rest = 0;
        self.splice = None;
    }
    fn free_list() -> &'static std::thread::LocalKey<FreeList<Self>> {
        &INBOUND
    }
}

/// A received message as the bus shares it among its recipients.
pub type Shared = Pooled<Inbound>;

/// A few large message buffers kept for reuse, so that reading a large
/// message costs neither fresh pages nor zeroing. Bounded in count and size.
pub mod buffers {
    use std::cell::RefCell;

    /// Buffers kept at most: as many as 64 calls of 64 KiB in flight
    /// use (with 8 kept, most of them were fresh, zeroed pages: the
    /// memset alone was 4.6% of the daemon's samples under that load,
    /// bench/README.md).
    const KEEP: usize = 72;
    /// Bytes kept at most, all buffers together.
    const KEEP_BYTES: usize = 8 * 1024 * 1024;
    /// Largest buffer kept.
    const MAX_KEPT: usize = 4 * 1024 * 1024;
    /// Smallest buffer worth keeping.
    const MIN_KEPT: usize = 64 * 1024;

    thread_local! {
        static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
        /// The capacity of the buffers in POOL.
        static KEPT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A buffer of exactly `len` bytes (contents unspecified but
    /// initialized), reusing a kept one when possible.
    pub fn take(len: usize) -> Vec<u8> {
        let reused = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|b| b.capacity() >= len)?;
            let b = p.swap_remove(i);
            KEPT.with(|k| k.set(k.get().saturating_sub(b.capacity())));
            Some(b)
        });
        match reused {
            Some(mut b) => {
                // Only bytes past the old length get zeroed.
                b.resize(len, 0);
                b
            }
            None => vec![0u8; len],
        }
    }

    /// Returns a buffer for reuse (small or huge ones are simply freed).
    pub fn give_back(b: Vec<u8>) {
        let cap = b.capacity();
        if !(MIN_KEPT..=MAX_KEPT).contains(&cap) {
            return;
        }
        if KEPT.with(|k| k.get()) + cap > KEEP_BYTES {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                KEPT.with(|k| k.set(k.get() + cap));
                p.push(b);
            }
        });
    }
}

/// One queued outgoing message: a header the bus wrote, and optionally the
/// body (and fds) of a received message, shared with other recipients.
#[derive(Debug, Clone)]
pub struct OutMsg {
    /// The header (or, for messages the bus made, the whole message).
    pub head: Pooled<Vec<u8>>,
    /// The forwarded message whose body follows `head`.
    pub body: Option<Shared>,
}

impl OutMsg {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |b| b.body().len() + b.rest)
    }
    /// Bytes in memory (the head and the body as far as it was read).
    fn mem_len(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |b| b.body().len())
    }
    /// The pipe the rest of the body comes through, for a spliced body.
    fn splice(&self) -> Option<&Rc<super::splice::SpliceBody>> {
        self.body.as_ref().and_then(|b| b.splice.as_ref())
    }
    /// Whether it is empty (never, for a real message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of fds attached.
    pub fn n_fds(&self) -> usize {
        self.body.as_ref().map_or(0, |b| b.fds.len())
    }

    /// The user a queued copy is charged on behalf of: the sender of a
    /// forwarded message, or `holder` itself for the bus's own messages.
    fn actor(&self, holder: u32) -> u32 {
        self.body.as_ref().map_or(holder, |b| b.sender_uid)
    }
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum PeerState {
    /// SASL handshake in progress.
    Authenticating(Box<SaslServer>),
    /// Authenticated; only Hello may be sent.
    WaitingHello,
    /// Registered with a unique name.
    Active,
    /// Became a monitor: receives copies, may send nothing.
    Monitor,
}

/// Per-connection counters for Debug.Stats.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PeerStats {
    /// Bytes received.
    pub in_bytes: u64,
    /// Bytes sent.
    pub out_bytes: u64,
    /// Messages received.
    pub in_msgs: u64,
    /// Peak queued outgoing bytes.
    pub peak_out_bytes: u64,
    /// Fds received.
    pub in_fds: u64,
    /// Peak bytes buffered on input.
    pub peak_in_bytes: u64,
    /// Peak fds buffered on input.
    pub peak_in_fds: u64,
    /// Messages queued for sending.
    pub out_msgs: u64,
    /// Fds sent.
    pub out_fds: u64,
    /// Peak fds queued on output.
    pub peak_out_fds: u64,
    /// Peak match rules.
    pub peak_match_rules: u64,
    /// Peak names.
    pub peak_bus_names: u64,
}

/// A connection.
#[derive(Debug)]
pub struct Peer {
    /// Stable id (also the poll token).
    pub id: u64,
    /// The socket.
    pub stream: Stream,
    /// Credentials from the socket.
    pub creds: PeerCreds,
    /// uid after authentication (None for ANONYMOUS or not yet).
    pub auth_uid: Option<u32>,
    /// The groups the policy and GetConnectionCredentials see (see
    /// [`Peer::gids`]): set when the connection is admitted, or left to be
    /// read from the socket on first use when `gids_from_socket`.
    pub gids: std::cell::OnceCell<Vec<u32>>,
    /// `gids` is the socket's SO_PEERGROUPS plus its gid, read when first
    /// needed (most configurations never need them).
    pub gids_from_socket: bool,
    /// Lifecycle state.
    pub state: PeerState,
    /// The unique name, once Hello was called.
    pub unique_name: Option<Rc<str>>,
    /// Whether fd passing was negotiated.
    pub unix_fd: bool,
    /// Bytes read but not yet framed.
    pub inbuf: RxBuf,
    /// A large message being read into its own buffer.
    pub large_rx: Option<LargeRx>,
    /// A large message whose body's rest is being spliced from this
    /// connection's socket (see [`super::splice`]): nothing else is read
    /// until it is.
    pub splice_in: Option<Rc<super::splice::SpliceBody>>,
    /// Its next message waits to be spliced until one of its bodies in
    /// pipes is through: not read from meanwhile.
    pub splice_wait: bool,
    /// It waits for its recipients (one of its pipes, or spill room) until
    /// then at the latest (see [`super::splice::PATIENCE`]).
    pub splice_deadline: Option<std::time::Instant>,
    /// Bytes (and fds) a receive of the io_uring backend took from the
    /// socket that had no room yet: read before the socket.
    pub rx_spill: crate::transport::spill::Spill,
    /// A multishot receive of the io_uring backend is armed on the socket:
    /// it may take the socket's bytes at the next wait, so nothing may be
    /// spliced from it meanwhile.
    pub rx_ring: bool,
    /// The framing wants the socket to itself (a body to splice): the loop
    /// takes the receive back, then frames again.
    pub rx_release: bool,
    /// Fds received but not yet attached to a message.
    pub in_fds: VecDeque<OwnedFd>,
    /// Outgoing queue.
    pub out: VecDeque<OutMsg>,
    /// Whether the socket is watched for writability (only while blocked).
    pub write_interest: bool,
    /// Bytes of the front message already written.
    pub out_pos: usize,
    /// How many messages at the front of `out` were looked at by
    /// [`Peer::detach_queued`].
    pub out_detached: usize,
    /// How many queued messages have a spliced body (the io_uring backend
    /// leaves such a queue to [`Peer::flush`]).
    pub out_spliced: usize,
    /// Bytes queued in `out` (minus `out_pos`).
    pub out_bytes: usize,
    /// Fds queued in `out`.
    pub out_fds: usize,
    /// Well-known names this connection owns or is queued for.
    pub names: Vec<Rc<str>>,
    /// The policy that applies to this connection.
    pub policy: policy::ConnectionPolicy,
    /// Deadline for authentication + Hello, as armed in `Bus::deadlines`
    /// (set through the Bus, which keeps the two in step).
    pub auth_deadline: Option<Instant>,
    /// When fds waiting for the rest of their message time out, as armed
    /// in `Bus::deadlines`.
    pub pending_fd_deadline: Option<Instant>,
    /// Set when the connection must be dropped after its queue is flushed
    /// (or at once).
    pub closing: bool,
    /// Counters.
    pub stats: PeerStats,
    /// `uid=.. pid=.. comm=".."` for log lines and errors, made on first
    /// use (it reads /proc, which accepting a connection must not).
    pub loginfo_cache: std::cell::OnceCell<String>,
    /// Its messages still alive in the bus (max_incoming_bytes/_unix_fds).
    pub live: Rc<Live>,
    /// max_outgoing_bytes and max_outgoing_unix_fds: past either, nothing
    /// more is queued (see [`Peer::enqueue`]).
    pub out_limits: (u64, u64),
    /// The account of the connection's uid, charged with everything queued
    /// in `out` (see [`super::quota`]).
    pub account: Rc<super::quota::Account>,
    /// Set when a message of this connection was refused because its own
    /// user is over its share: reading waits until then, or until the
    /// user's queued messages drain below the share.
    pub quota_pause: Option<Instant>,
    /// Security labels (SO_PEERSEC and what the security modules made of
    /// it); None without a label.
    pub mac: Option<Box<crate::mac::PeerMac>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Whatever is still queued goes with the connection.
        let holder = self.account.uid;
        for m in &self.out {
            self.account
                .release(m.actor(holder), m.len() as u64, m.n_fds() as u64);
            if let Some(job) = m.splice() {
                // Its sender may wait for room in the pipe: it must go on
                // to throw the rest away.
                super::splice::wake(job.sender);
            }
        }
    }
}

/// Outcome of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was written.
    Done,
    /// The socket is full; wait for writability.
    Blocked,
    /// The front message's body is being spliced and its pipe is empty:
    /// its sender's side flushes this connection again when there is more.
    Waiting,
}

/// At most this many iovecs per sendmsg (IOV_MAX is 1024 on Linux); they
/// live on the stack, so a flush allocates nothing.
pub const MAX_IOV: usize = 128;

/// Queues of at most this many messages (two slices each, head and body)
/// are written from an array of `2 * SHORT_QUEUE` slices, which holds all
/// of them: the same sendmsg as with [`MAX_IOV`].
const SHORT_QUEUE: usize = 4;

/// A sendmsg of several slices averaging at most `GATHER_SLICE_MAX` bytes,
/// `GATHER_MAX` bytes in all at most, is copied into one buffer and written
/// from it (see [`Peer::send_batch`]). Slices of a few hundred bytes cost
/// the kernel more one by one (a user copy each, with its checks) than
/// one copy of them all does here.
const GATHER_MAX: usize = 64 * 1024;
const GATHER_SLICE_MAX: usize = 512;

/// Whether `batch` is written from one gathered copy (see [`GATHER_MAX`]).
pub fn gathers(batch: &Batch) -> bool {
    batch.n_iov > 1 && batch.bytes <= GATHER_MAX && batch.bytes <= batch.n_iov * GATHER_SLICE_MAX
}

thread_local! {
    /// The buffer a gathered sendmsg is written from (made at its full
    /// size once, so it never grows).
    static GATHER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(GATHER_MAX));
}

/// What [`Peer::next_batch`] put in one sendmsg.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// Slices used.
    pub n_iov: usize,
    /// Bytes in them.
    pub bytes: usize,
    /// Whether they are all that is queued.
    pub whole_queue: bool,
}

impl Peer {
    /// The connection's groups, for the policy and
    /// GetConnectionCredentials: those `Bus::finish_auth` found, or, when
    /// it left them to the socket, SO_PEERGROUPS plus the socket's gid,
    /// read now. The kernel keeps the peer's credentials from connect time
    /// on the socket, so reading them later gives what reading them at
    /// authentication would have (dbus-daemon 1.14 reads them then); the
    /// kernel answered SO_PEERGROUPS before, so it answers now. Empty for a
    /// connection that is not admitted yet.
    pub fn gids(&self) -> &[u32] {
        self.gids.get_or_init(|| {
            if !self.gids_from_socket {
                return Vec::new();
            }
            let mut g = self.stream.peer_groups().unwrap_or_default();
            g.extend(self.creds.gid);
            g.sort_unstable();
            g.dedup();
            g
        })
    }

    /// Whether the outgoing queue is over max_outgoing_bytes or
    /// max_outgoing_unix_fds (dbus-daemon's test: strictly more than the
    /// limit, so a queue may hold the limit plus one message).
    pub fn queue_full(&self) -> bool {
        self.out_bytes as u64 > self.out_limits.0 || self.out_fds as u64 > self.out_limits.1
    }

    /// Queues a message for writing, unless the queue is full: then the
    /// message is dropped and false returned. Forwarded messages were
    /// already refused with LimitsExceeded by the security check; what
    /// reaches this point over the limit is the bus's own traffic (driver
    /// replies, errors, signals, monitor copies), which dbus-daemon silently
    /// drops for a full queue too. So a peer that never reads costs at most
    /// its limit plus one message.
    pub fn enqueue(&mut self, m: OutMsg) -> bool {
        if self.queue_full() {
            return false;
        }
        self.enqueue_always(m);
        true
    }

    /// Queues a message whatever the queue holds (SASL replies, which
    /// dbus-daemon keeps outside the message queue).
    pub fn enqueue_always(&mut self, m: OutMsg) {
        self.account
            .charge(m.actor(self.account.uid), m.len() as u64, m.n_fds() as u64);
        self.out_bytes += m.len();
        self.out_fds += m.n_fds();
        self.stats.out_msgs += 1;
        self.stats.out_fds += m.n_fds() as u64;
        self.stats.peak_out_fds = self.stats.peak_out_fds.max(self.out_fds as u64);
        if m.splice().is_some() {
            self.out_spliced += 1;
        }
        self.out.push_back(m);
        let queued = self.out_bytes as u64;
        if queued > self.stats.peak_out_bytes {
            self.stats.peak_out_bytes = queued;
        }
    }

    /// Writes as much of the queue as the socket takes. A message carrying
    /// fds starts its own sendmsg so its fds travel with its first byte. A
    /// spliced body (see [`super::splice`]) is written from its pipe once
    /// its head is out, and nothing behind it is written before it is.
    pub fn flush(&mut self) -> io::Result<Flush> {
        while let Some(front) = self.out.front() {
            if let Some(job) = front.splice() {
                if job.is_broken() {
                    if self.out_pos > 0 {
                        // Part of it is out: the stream cannot go on.
                        return Err(io::Error::other("a spliced body's sender went away"));
                    }
                    self.drop_front();
                    continue;
                }
                if self.out_pos >= front.mem_len() {
                    let left = front.len() - self.out_pos;
                    if job.available() == 0 {
                        return Ok(Flush::Waiting);
                    }
                    let n = match job.write_to(&self.stream, left) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Flush::Blocked)
                        }
                        Err(e) => return Err(e),
                    };
                    self.sent(n);
                    continue;
                }
            }
            // A short queue (a handshake's answers, a reply and a signal)
            // needs a few slices: an array of MAX_IOV would cost its 2 KiB
            // of initialisation at every flush.
            let r = if self.out.len() <= SHORT_QUEUE {
                self.send_batch::<{ 2 * SHORT_QUEUE }>()
            } else {
                self.send_batch::<MAX_IOV>()
            };
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.sent(n);
        }
        Ok(Flush::Done)
    }

    /// Writes the next sendmsg's worth of the queue, gathered into at most
    /// `N` slices.
    fn send_batch<const N: usize>(&self) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); N];
        let mut fds: Vec<RawFd> = Vec::new();
        let batch = self.next_batch(&mut iov, &mut fds);
        let iov = &iov[..batch.n_iov];
        if gathers(&batch) {
            // Small slices (headers, and the small bodies behind them):
            // one copy into one buffer here costs less than the kernel's
            // copy of each slice on its own (see bench/README.md).
            return GATHER.with(|g| {
                let mut g = g.borrow_mut();
                g.clear();
                for s in iov {
                    g.extend_from_slice(s);
                }
                self.stream.send(&[IoSlice::new(&g)], &fds)
            });
        }
        self.stream.send(iov, &fds)
    }

    /// The next sendmsg's worth of the queue (as many slices as `iov`
    /// holds): its slices in `iov`, and the fds that go with its first
    /// byte appended to `fds` (a message carrying fds starts a batch of its
    /// own).
    pub fn next_batch<'a>(&'a self, iov: &mut [IoSlice<'a>], fds: &mut Vec<RawFd>) -> Batch {
        let mut n = 0;
        let max = iov.len();
        self.next_batch_with(max, fds, |s| {
            iov[n] = IoSlice::new(s);
            n += 1;
        })
    }

    /// [`Peer::next_batch`] with the slices (at most `max_iov`) handed to
    /// `push` in order.
    pub fn next_batch_with<'a>(
        &'a self,
        max_iov: usize,
        fds: &mut Vec<RawFd>,
        mut push: impl FnMut(&'a [u8]),
    ) -> Batch {
        let mut n_iov = 0;
        let mut bytes = 0;
        let mut skip = self.out_pos;
        for (i, m) in self.out.iter().enumerate() {
            if n_iov + 2 > max_iov {
                break;
            }
            let nf = m.n_fds();
            if nf > 0 {
                if i > 0 {
                    break;
                }
                if skip == 0 {
                    if let Some(b) = &m.body {
                        fds.extend(b.fds.iter().map(|f| f.as_raw_fd()));
                    }
                }
            }
            let head: &[u8] = &m.head;
            let body: &[u8] = m.body.as_ref().map_or(&[][..], |b| b.body());
            if skip < head.len() {
                push(&head[skip..]);
                n_iov += 1;
                bytes += head.len() - skip;
                if !body.is_empty() {
                    push(body);
                    n_iov += 1;
                    bytes += body.len();
                }
            } else if skip - head.len() < body.len() {
                push(&body[skip - head.len()..]);
                n_iov += 1;
                bytes += body.len() - (skip - head.len());
            }
            skip = 0;
            if m.splice().is_some() {
                // The rest comes from its pipe, before anything else.
                break;
            }
        }
        Batch {
            n_iov,
            bytes,
            whole_queue: bytes == self.out_bytes,
        }
    }

    /// `n` more bytes from the front of the queue were written: counts
    /// them, and the messages written whole leave it (and release what
    /// they were charged).
    pub fn sent(&mut self, n: usize) {
        self.stats.out_bytes += n as u64;
        self.out_bytes -= n;
        let mut left = n;
        while left > 0 {
            let Some(front) = self.out.front() else { break };
            let remaining = front.len() - self.out_pos;
            if left >= remaining {
                left -= remaining;
                self.out_bytes += remaining;
                self.drop_front();
            } else {
                self.out_pos += left;
                left = 0;
            }
        }
    }

    /// Takes the front message off the queue (written, or never to be)
    /// and gives back what it was charged.
    fn drop_front(&mut self) {
        let Some(front) = self.out.pop_front() else {
            return;
        };
        if front.splice().is_some() {
            self.out_spliced -= 1;
        }
        self.out_bytes -= front.len() - self.out_pos;
        self.out_fds -= front.n_fds();
        let holder = self.account.uid;
        self.account.release(
            front.actor(holder),
            front.len() as u64,
            front.n_fds() as u64,
        );
        self.out_detached = self.out_detached.saturating_sub(1);
        self.out_pos = 0;
    }

    /// Gives the queued messages that still point into a sender's receive
    /// chunk a copy of their own. The loop calls this when the socket is
    /// full: a recipient that does not read would otherwise keep whole
    /// chunks alive for the few bytes of its messages in them (the bus
    /// charges queues by message bytes, so the chunks must not outlive the
    /// round by much). Each message is looked at once; messages with fds
    /// stay where they are (bounded by the fd limits).
    pub fn detach_queued(&mut self) {
        let from = self.out_detached.min(self.out.len());
        for m in self.out.iter_mut().skip(from) {
            if let Some(own) = m.body.as_ref().and_then(|b| b.detached()) {
                m.body = Some(own);
            }
        }
        self.out_detached = self.out.len();
    }

    /// The unique name, or "(inactive)".
    pub fn name(&self) -> &str {
        self.unique_name.as_deref().unwrap_or(":not.active.yet")
    }

    /// The peer as log lines describe it: uid and pid from the socket
    /// credentials, and the unique name once it has one.
    pub fn who(&self) -> crate::log::Who<'_> {
        crate::log::Who {
            uid: self.creds.uid,
            pid: self.creds.pid,
            name: self.unique_name.as_deref(),
        }
    }

    /// Whether Hello has completed (and it is not a monitor).
    pub fn is_active(&self) -> bool {
        matches!(self.state, PeerState::Active)
    }

    /// dbus-daemon's `uid=.. pid=.. comm=".."` description of the peer.
    /// dbus-daemon builds it when the connection is set up; busbar builds
    /// it the first time a log line or an error needs it, so the command
    /// line of a process that has already exited reads as empty.
    pub fn loginfo(&self) -> &str {
        self.loginfo_cache.get_or_init(|| loginfo(&self.creds))
    }

    /// Whether reading from this connection waits for its user's queued
    /// messages to drain (see [`Peer::quota_pause`]).
    pub fn quota_paused(&self, now: Instant) -> bool {
        self.quota_pause.is_some_and(|until| now < until) && self.account.over_share()
    }
}

/// Builds dbus-daemon's `uid=.. pid=.. comm=".."` description.
pub fn loginfo(creds: &PeerCreds) -> String {
    let mut s = String::new();
    if let Some(uid) = creds.uid {
        s.push_str(&format!("uid={uid}"));
    }
    if let Some(pid) = creds.pid {
        if !s.is_empty() {
            s.push(' ');
        }
        let comm = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                // dbus-daemon reads at most 50 bytes of the command line
                // (MAX_LOG_COMMAND_LEN in bus/connection.c).
                let b: Vec<u8> = b.into_iter().take(50).collect();
                // As dbus-daemon: a final NUL is dropped, every other NUL
                // becomes a space and every other byte outside printable
                // ASCII a '?'.
                let b = b.strip_suffix(b"\0").unwrap_or(&b);
                b.iter()
                    .map(|&c| match c {
                        0 => ' ',
                        0x20..=0x7e => c as char,
                        _ => '?',
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        s.push_str(&format!("pid={pid} comm=\"{comm}\""));
    }
    s
}
