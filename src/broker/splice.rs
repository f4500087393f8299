//! Large bodies that never enter user space: when the body of a large
//! unicast message ends with a byte array (its signature's last complete
//! type is `ay`: `ay`, `say`, `a{sv}ay`, ...), the bus reads and validates
//! the header, the values before the array and the array's length
//! ([`Parsed::parse_prefix`]), routes the message on that, and then moves
//! the array's contents from the sender's socket through a pipe into the
//! recipient's socket with splice(2) (src/transport/splice.rs). Those
//! contents need no validation, so nothing is skipped that the copying
//! path checks.
//!
//! - Where: only with a destination that is a connection (not the driver,
//!   not a name waiting for activation, not the sender itself), with no
//!   monitor and no `eavesdrop='true'` rule anywhere (so the message has
//!   exactly one recipient), and from [`threshold`] bytes on. Everything
//!   else takes the copying path ([`super::peer::LargeRx`]).
//! - Routing, policy, quotas, max_message_size, the live-bytes and queue
//!   limits and reply tracking all run on the header, as for any message;
//!   the message is charged at its full length.
//! - Order: the recipient's queue holds the message (its header and the
//!   array's length in memory, the rest to come from the pipe); nothing
//!   behind it is written until its last byte is (see
//!   [`super::peer::Peer::flush`]). The sender's next messages are not read
//!   until the rest of this body has left its socket.
//! - Back-pressure: the pipe takes what its slots hold (from a unix
//!   socket, ~16 KiB a slot, so ~4 MiB with pipe-max-size 1 MiB). Should it
//!   fill up, the rest of the body is read into memory ("spilled", as the
//!   copying path would hold all of it) and written after the pipe's
//!   bytes, while the bus holds less than [`SPILL_BUDGET`] of spilled bytes
//!   in all; past that the body stays in the sender's socket and only that
//!   sender waits (its turn ends; the recipient's progress wakes it).
//! - Patience: dbus-daemon reads whatever a sender writes (within the
//!   limits), so its senders never wait for their recipients: a client
//!   that writes large messages to a peer that reads only once its own
//!   write finished (or to itself, single-threaded) does not deadlock, and
//!   its own next call is answered while its bodies sit at a recipient
//!   that does not read. A sender therefore waits (for spill room, or for
//!   one of its pipes, below) at most [`PATIENCE`]; then it is "copying":
//!   the rest of its body is spilled and its next large messages take the
//!   copying path, until none of its bodies is left in a pipe. Either way
//!   the memory is what the copying path holds, charged at the message's
//!   full length when it was routed (max_outgoing_bytes, the users'
//!   quotas). Nothing blocks the loop; a stalled recipient stalls no other
//!   connection.
//! - Refused (no recipient took it) or the recipient went away: the rest is
//!   still read from the sender, and thrown away, so the sender's next
//!   message is framed where it starts. As with dbus-daemon, the message is
//!   just lost.
//! - The sender went away before the whole body arrived: dbus-daemon never
//!   routes an incomplete message, so a recipient that has not been written
//!   any of it yet simply never sees it. A recipient that already got part
//!   of it cannot be given anything else on that stream (it would read the
//!   next message as the rest of this one), so it is disconnected.
//! - Pipes: at most [`PIPES_PER_SENDER`] bodies of one sender are in pipes
//!   at once (each stays in its pipe until its recipient has read it); its
//!   next large message then waits in its socket, and reading from it
//!   resumes when one of them is through (or after [`PATIENCE`], above).
//!   This wait is what keeps 64 x 1 MiB calls in flight within a few MiB
//!   of memory: the bodies wait in the sender's socket. Bus-wide at most
//!   [`crate::transport::splice::MAX_LIVE_PIPES`]; past that the copying
//!   path is used.
//! - Re-exec: a body in flight is carried over as it stands
//!   ([`SavedBody`]): its pipe's two ends are handed to the new image with
//!   the sockets, and so are the counts (bytes still in the sender's
//!   socket, bytes in the pipe) and what was spilled and not yet written.
//!   The recipient's queue keeps the message at the position written so
//!   far, and the sender's next turn pulls the rest as before. So neither
//!   a stream of large messages nor a sender that stopped half way through
//!   one holds a re-exec up.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::bus::{Bus, DBUS_NAME};
use super::peer::{Charge, Inbound};
use crate::transport::rxbuf::MsgBytes;
use crate::transport::splice::Pipe;
use crate::transport::stream::Stream;
use crate::wire::parsed::Parsed;

/// Messages this large or larger are spliced when they can be. Measured
/// (bench/README.md, "Large bodies with splice(2)"; libdbus clients, 64
/// calls in flight, one CPU): at 64 KiB splicing costs the daemon 5% more
/// CPU per message than copying and the whole run 12% more CPU per call
/// (the recipient gets each body in more pieces); at 256 KiB it halves the
/// daemon's CPU (27 vs 52 us) for the same overall rate; at 1 MiB it halves
/// it too (114 vs 234 us) and peak RSS falls from 68 to 6 MiB. So splicing
/// starts at 256 KiB. `BUSBAR_SPLICE_MIN=<bytes>` overrides it (`off`
/// disables splicing), for benchmarks and tests.
pub const DEFAULT_THRESHOLD: usize = 256 * 1024;

/// The size from which bodies are spliced.
pub fn threshold() -> usize {
    static T: OnceLock<usize> = OnceLock::new();
    *T.get_or_init(|| match std::env::var("BUSBAR_SPLICE_MIN") {
        Ok(v) if v == "off" => usize::MAX,
        Ok(v) => v.parse().unwrap_or(DEFAULT_THRESHOLD),
        Err(_) => DEFAULT_THRESHOLD,
    })
}

thread_local! {
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
    static WAKE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Spilled bytes held now, all bodies together.
    static SPILLED: Cell<usize> = const { Cell::new(0) };
    /// Senders waiting for [`SPILLED`] to go down.
    static OVER_BUDGET: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Bodies in pipes, by sender.
    static PIPES_OF: RefCell<std::collections::HashMap<u64, usize>> =
        RefCell::new(std::collections::HashMap::new());
    /// Senders that waited [`PATIENCE`] in vain: they copy until none of
    /// their bodies is in a pipe.
    static COPYING: RefCell<std::collections::HashSet<u64>> =
        RefCell::new(std::collections::HashSet::new());
}

/// How long a sender waits for its recipients at most (see the module).
/// Long next to a recipient's read of a 1 MiB body (~0.1-1 ms), short
/// next to a method call's timeout.
pub const PATIENCE: Duration = Duration::from_millis(100);

/// Whether sender `id` ran out of [`PATIENCE`] (see the module).
fn copying(id: u64) -> bool {
    COPYING.with(|c| c.borrow().contains(&id))
}

/// Connection `id` is gone: it copies no more.
pub(super) fn forget_sender(id: u64) {
    COPYING.with(|c| c.borrow_mut().remove(&id));
}

/// Bodies being spliced now.
pub fn in_flight() -> usize {
    IN_FLIGHT.with(Cell::get)
}

/// Bodies of one sender in pipes at once, at most (see the module).
pub const PIPES_PER_SENDER: usize = 8;

/// Spilled bytes the bus holds at most, all bodies together (see the
/// module).
pub const SPILL_BUDGET: usize = 4 * 1024 * 1024;

/// Gives sender `id` a turn after the loop's next flush.
pub fn wake(id: u64) {
    WAKE.with(|w| w.borrow_mut().push(id));
}

/// Senders whose recipient went away: the loop gives them a turn to throw
/// the rest of their body away (their socket, edge-triggered, may not say
/// so again).
pub fn take_wakes(into: &mut Vec<u64>) {
    WAKE.with(|w| into.append(&mut w.borrow_mut()));
}

/// The rest of one message's body on its way through a pipe. Held by its
/// sender (while bytes are still to be read) and by the recipient's queued
/// copy (while bytes are still to be written).
#[derive(Debug)]
pub struct SpliceBody {
    pipe: Option<Pipe>,
    /// The connection that sent it.
    pub sender: u64,
    /// The connection it is addressed to.
    pub recipient: u64,
    /// Bytes still in the sender's socket.
    to_read: Cell<usize>,
    /// Bytes in the pipe.
    in_pipe: Cell<usize>,
    /// The sender went away before all of it was read.
    broken: Cell<bool>,
    /// Bytes read into memory because the pipe was full (they follow the
    /// pipe's; once there are any, the rest of the body comes here too).
    /// Its length is the room (initialized, a reused buffer, so spilling
    /// costs no zeroing), `spill_len` the bytes in it.
    spill: std::cell::RefCell<Vec<u8>>,
    /// Bytes in `spill`.
    spill_len: Cell<usize>,
    /// Of `spill`, bytes written to the recipient.
    spill_sent: Cell<usize>,
    /// Whether the rest of the body goes to `spill` (once it started).
    spilling: Cell<bool>,
    /// The sender waits for the pipe to drain (or spill room).
    parked: Cell<bool>,
}

impl SpliceBody {
    fn new(pipe: Pipe, sender: u64, recipient: u64, to_read: usize, in_pipe: usize) -> Self {
        IN_FLIGHT.with(|c| c.set(c.get() + 1));
        PIPES_OF.with(|m| *m.borrow_mut().entry(sender).or_insert(0) += 1);
        SpliceBody {
            pipe: Some(pipe),
            sender,
            recipient,
            to_read: Cell::new(to_read),
            in_pipe: Cell::new(in_pipe),
            broken: Cell::new(false),
            spill: std::cell::RefCell::new(Vec::new()),
            spill_sent: Cell::new(0),
            spill_len: Cell::new(0),
            spilling: Cell::new(false),
            parked: Cell::new(false),
        }
    }

    fn pipe(&self) -> &Pipe {
        // Only Drop takes it.
        self.pipe.as_ref().expect("pipe present until drop")
    }

    /// Whether the sender went away before the whole body was read.
    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// Bytes ready for the recipient (in the pipe, then spilled).
    pub fn available(&self) -> usize {
        self.in_pipe.get() + self.spill_len.get() - self.spill_sent.get()
    }

    fn spilling(&self) -> bool {
        self.spilling.get()
    }

    /// Frees what was spilled and written; wakes the senders that waited
    /// for spill room.
    fn release_spill(&self) {
        let mut spill = self.spill.borrow_mut();
        let n = self.spill_len.replace(0);
        super::peer::buffers::give_back(std::mem::take(&mut *spill));
        self.spill_sent.set(0);
        SPILLED.with(|c| c.set(c.get().saturating_sub(n)));
        OVER_BUDGET.with(|o| {
            for id in o.borrow_mut().drain(..) {
                wake(id);
            }
        });
    }

    /// Writes at most `len` of the ready bytes into the recipient's socket
    /// (the pipe's first).
    pub fn write_to(&self, to: &Stream, len: usize) -> io::Result<usize> {
        let n = if self.in_pipe.get() > 0 {
            let n = self
                .pipe()
                .drain_to(to.raw_fd(), len.min(self.in_pipe.get()))?;
            self.in_pipe.set(self.in_pipe.get() - n);
            n
        } else {
            let spill = self.spill.borrow();
            let from = self.spill_sent.get();
            let end = self.spill_len.get().min(from + len);
            let n = to.send(&[IoSlice::new(&spill[from..end])], &[])?;
            self.spill_sent.set(from + n);
            let all = from + n == self.spill_len.get();
            drop(spill);
            if all {
                self.release_spill();
            }
            n
        };
        if n > 0 && self.parked.replace(false) {
            wake(self.sender);
        }
        Ok(n)
    }
}

impl Drop for SpliceBody {
    fn drop(&mut self) {
        IN_FLIGHT.with(|c| c.set(c.get().saturating_sub(1)));
        let was = PIPES_OF.with(|m| {
            let mut m = m.borrow_mut();
            let n = m.get(&self.sender).copied().unwrap_or(0);
            if n <= 1 {
                m.remove(&self.sender);
                forget_sender(self.sender);
            } else {
                m.insert(self.sender, n - 1);
            }
            n
        });
        if was == PIPES_PER_SENDER {
            // It may wait to start its next body.
            wake(self.sender);
        }
        if !self.spill.borrow().is_empty() {
            self.release_spill();
        }
        if let Some(p) = self.pipe.take() {
            if self.in_pipe.get() == 0 && self.to_read.get() == 0 && !self.broken.get() {
                p.give_back();
            } else {
                p.discard();
            }
        }
    }
}

/// A body in flight as a re-exec saves it (src/broker/snapshot.rs writes
/// it out as `BodyState`).
#[derive(Debug)]
pub struct SavedBody {
    /// The pipe's read and write ends.
    pub pipe: (std::os::fd::RawFd, std::os::fd::RawFd),
    /// The connection that sent it.
    pub sender: u64,
    /// The connection it is addressed to.
    pub recipient: u64,
    /// Bytes still in the sender's socket.
    pub to_read: usize,
    /// Bytes in the pipe.
    pub in_pipe: usize,
    /// Spilled bytes not yet written to the recipient (they follow the
    /// pipe's).
    pub spill: Vec<u8>,
    /// Whether the rest of the body goes to the spill.
    pub spilling: bool,
    /// Whether the sender waits for the pipe to drain.
    pub parked: bool,
    /// Whether the sender went away before all of it was read.
    pub broken: bool,
}

impl SpliceBody {
    /// Its state, for a re-exec (the pipe stays open and in use here: a
    /// re-exec that fails goes on with it).
    pub fn save(&self) -> SavedBody {
        let spill = self.spill.borrow();
        SavedBody {
            pipe: self.pipe().raw_fds(),
            sender: self.sender,
            recipient: self.recipient,
            to_read: self.to_read.get(),
            in_pipe: self.in_pipe.get(),
            spill: spill[self.spill_sent.get()..self.spill_len.get()].to_vec(),
            spilling: self.spilling.get(),
            parked: self.parked.get(),
            broken: self.broken.get(),
        }
    }

    /// A body carried over by a re-exec, in `pipe` (adopted from the fds
    /// `saved` names).
    pub fn restored(pipe: Pipe, saved: SavedBody) -> Rc<SpliceBody> {
        let b = SpliceBody::new(
            pipe,
            saved.sender,
            saved.recipient,
            saved.to_read,
            saved.in_pipe,
        );
        let n = saved.spill.len();
        if n > 0 {
            let mut spill = super::peer::buffers::take(n);
            spill.copy_from_slice(&saved.spill);
            *b.spill.borrow_mut() = spill;
            b.spill_len.set(n);
            SPILLED.with(|c| c.set(c.get() + n));
        }
        b.spilling.set(saved.spilling);
        b.parked.set(saved.parked);
        b.broken.set(saved.broken);
        Rc::new(b)
    }
}

/// What [`Bus::try_splice`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// Not spliced: the copying path takes it.
    No,
    /// Routed; its rest is being spliced.
    Started,
    /// Its sender has [`PIPES_PER_SENDER`] bodies in pipes: not read on
    /// until one is through.
    Wait,
}

/// What [`Bus::splice_pull`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pull {
    /// The body's rest has left the sender's socket: read on.
    Done,
    /// Nothing more now (the socket is dry, or the pipe full).
    Wait,
    /// The sender is gone (or going).
    Gone,
}

impl Bus {
    /// A large message of `total` bytes has started arriving from `id` and
    /// its beginning is in `inbuf`: if its body can be spliced (see the
    /// module), routes it now and starts moving the rest (the buffered
    /// bytes are then used up).
    pub(super) fn try_splice(&mut self, id: u64, total: usize) -> Start {
        if total < threshold() || !self.monitors.is_empty() || self.matches.has_eavesdrop_rules() {
            return Start::No;
        }
        if PIPES_OF.with(|m| m.borrow().get(&id).copied().unwrap_or(0)) >= PIPES_PER_SENDER {
            if copying(id) {
                return Start::No;
            }
            self.splice_wait_starts(id);
            return Start::Wait;
        }
        if self.try_start(id, total) {
            self.splice_wait_ends(id);
            Start::Started
        } else {
            Start::No
        }
    }

    /// Writes the first `n` bytes of connection `id`'s spill into `pipe`
    /// (which has room for them, with what it holds). The spill's fds go
    /// with the connection's others. False (the connection is closed)
    /// when the pipe did not take them all.
    fn spill_into(&mut self, id: u64, pipe: &Pipe, mut n: usize) -> bool {
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        while n > 0 {
            let front = p.rx_spill.front();
            let k = front.len().min(n);
            if k == 0 || !matches!(pipe.write(&front[..k]), Ok(w) if w == k) {
                // Not expected: an empty pipe takes its capacity.
                self.protocol_violation(id, "a large body could not be moved to its pipe");
                return false;
            }
            p.rx_spill.consume(k, &mut p.in_fds);
            n -= k;
        }
        true
    }

    fn try_start(&mut self, id: u64, total: usize) -> bool {
        let Some(p) = self.peers.get(&id) else {
            return false;
        };
        if !p.is_active() {
            return false;
        }
        let prefix = p.inbuf.data();
        let Some((parsed, head_len)) = Parsed::parse_prefix(prefix, p.in_fds.len()) else {
            return false;
        };
        let Some(r) = parsed
            .view()
            .destination()
            .filter(|d| *d != DBUS_NAME)
            .and_then(|d| self.lookup(d))
            .filter(|&r| r != id)
        else {
            return false;
        };
        let read = prefix.len().min(total);
        let rest = total - head_len;
        // The part kept in memory: a few hundred bytes in front of a
        // large body.
        let Some(msg) = parsed.copied_prefix(head_len, |b| MsgBytes::Owned(b.to_vec())) else {
            return false;
        };
        // Bytes of the body that a receive already took from the socket
        // beyond the receive chunk (io_uring: transport::spill).
        let spilled = p.rx_spill.len().min(total - read);
        let Some(pipe) = Pipe::take(rest) else {
            return false;
        };
        // The part of the array already read goes into the pipe first.
        let early = &prefix[head_len..read];
        if early.len() + spilled > pipe.capacity() {
            pipe.give_back();
            return false;
        }
        if !early.is_empty() {
            match pipe.write(early) {
                Ok(n) if n == early.len() => {}
                _ => {
                    pipe.discard();
                    return false;
                }
            }
        }
        let early_len = early.len() + spilled;
        if spilled > 0 && !self.spill_into(id, &pipe, spilled) {
            pipe.discard();
            return true;
        }
        let job = Rc::new(SpliceBody::new(pipe, id, r, rest - early_len, early_len));
        let max_fds = self.config.limits.max_message_unix_fds as usize;
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        p.inbuf.consume(read);
        let n = msg.header().unix_fds as usize;
        if n > max_fds || (n > 0 && !p.unix_fd) {
            self.protocol_violation(id, "too many or unexpected unix fds");
            return true;
        }
        let fds: Vec<_> = p.in_fds.drain(..n).collect();
        p.stats.in_msgs += 1;
        p.stats.in_bytes += total as u64;
        p.stats.in_fds += n as u64;
        let charge = Charge::new(&p.live, total as u64, n as u64);
        p.stats.peak_in_bytes = p.stats.peak_in_bytes.max(p.live.bytes.get());
        p.stats.peak_in_fds = p.stats.peak_in_fds.max(p.live.fds.get());
        let sender_uid = p.account.uid;
        p.splice_in = Some(job.clone());
        self.dispatch(
            id,
            Inbound {
                msg,
                fds,
                charge: Some(charge),
                sender_uid,
                rest,
                splice: Some(job.clone()),
            },
        );
        if Rc::strong_count(&job) > 2 {
            self.dirty.push(r);
        }
        true
    }

    /// Moves what it can of the body `id` is sending from its socket into
    /// the pipe (or, when nobody will receive it, throws it away).
    pub fn splice_pull(&mut self, id: u64) -> Pull {
        let Some(p) = self.peers.get_mut(&id) else {
            return Pull::Gone;
        };
        let Some(job) = p.splice_in.clone() else {
            return Pull::Done;
        };
        let fd = p.stream.raw_fd();
        loop {
            // Only the sender's handle and this one left: refused, or the
            // recipient is gone.
            let unwanted = Rc::strong_count(&job) <= 2;
            if unwanted && job.in_pipe.get() > 0 {
                match job.pipe().drain_away(job.in_pipe.get()) {
                    Ok(n) => job.in_pipe.set(job.in_pipe.get() - n),
                    Err(_) => {
                        self.splice_sender_failed(id);
                        return Pull::Gone;
                    }
                }
            }
            let to_read = job.to_read.get();
            if to_read == 0 {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.splice_in = None;
                }
                return Pull::Done;
            }
            let r = if job.spilling() && !unwanted {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                job.pipe().fill_from(fd, to_read)
            };
            match r {
                Ok(0) => {
                    // End of stream in the middle of the body.
                    self.splice_sender_failed(id);
                    return Pull::Gone;
                }
                Ok(n) => {
                    job.to_read.set(to_read - n);
                    job.in_pipe.set(job.in_pipe.get() + n);
                    self.splice_wait_ends(id);
                    if !unwanted {
                        self.dirty.push(job.recipient);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if unwanted {
                        return Pull::Wait;
                    }
                    // The socket is dry, or the pipe is full: then the
                    // rest goes to memory (see the module).
                    match self.spill(id, &job) {
                        Ok(0) => {
                            self.splice_sender_failed(id);
                            return Pull::Gone;
                        }
                        Ok(_) => {
                            self.splice_wait_ends(id);
                            self.dirty.push(job.recipient);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // Woken by the recipient's progress (or the
                            // socket, if it was only dry).
                            job.parked.set(true);
                            return Pull::Wait;
                        }
                        Err(_) => {
                            self.splice_sender_failed(id);
                            return Pull::Gone;
                        }
                    }
                }
                Err(_) => {
                    self.splice_sender_failed(id);
                    return Pull::Gone;
                }
            }
        }
    }

    /// Reads what the sender's socket has of the body into memory.
    fn spill(&mut self, id: u64, job: &SpliceBody) -> io::Result<usize> {
        const STEP: usize = 256 * 1024;
        if !self.peers.contains_key(&id) {
            return Ok(0);
        }
        let held = SPILLED.with(Cell::get);
        let room = if copying(id) {
            STEP
        } else if held >= SPILL_BUDGET {
            OVER_BUDGET.with(|o| o.borrow_mut().push(id));
            self.splice_wait_starts(id);
            return Err(io::ErrorKind::WouldBlock.into());
        } else {
            SPILL_BUDGET - held
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return Ok(0);
        };
        let mut spill = job.spill.borrow_mut();
        let start = job.spill_len.get();
        let want = job.to_read.get().min(STEP).min(room);
        if spill.is_empty() {
            *spill = super::peer::buffers::take(want.max(super::peer::FIRST_STEP));
        } else if spill.len() < start + want {
            spill.resize(start + want, 0);
        }
        let want = want.min(spill.len() - start);
        let mut fds = Vec::new();
        // Never past the body: what follows is the next message.
        let r = p.stream.recv(&mut spill[start..start + want], &mut fds);
        p.in_fds.extend(fds);
        let n = r?;
        job.spill_len.set(start + n);
        SPILLED.with(|c| c.set(c.get() + n));
        if n > 0 {
            job.spilling.set(true);
        }
        job.to_read.set(job.to_read.get() - n);
        Ok(n)
    }

    /// Sender `id` starts waiting for its recipients (unless it already
    /// does): it gets [`PATIENCE`].
    fn splice_wait_starts(&mut self, id: u64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.splice_deadline.is_none() {
            let at = Instant::now() + PATIENCE;
            p.splice_deadline = Some(at);
            self.deadlines
                .arm(at, id, super::deadlines::Kind::SpliceWait);
        }
    }

    /// Sender `id` got on (or is leaving): its wait is over.
    pub(super) fn splice_wait_ends(&mut self, id: u64) {
        if let Some(at) = self
            .peers
            .get_mut(&id)
            .and_then(|p| p.splice_deadline.take())
        {
            self.deadlines
                .disarm(at, id, super::deadlines::Kind::SpliceWait);
        }
    }

    /// Sender `id` waited [`PATIENCE`] in vain: it copies from now on (see
    /// the module), starting with the turn this gives it.
    pub(super) fn splice_patience_over(&mut self, id: u64) {
        // Whatever it waited for, one of its bodies is in a pipe; when the
        // last is through, it stops copying.
        if PIPES_OF.with(|m| m.borrow().contains_key(&id)) {
            COPYING.with(|c| c.borrow_mut().insert(id));
        }
        wake(id);
    }

    /// The sender of a body being spliced broke off: it is disconnected,
    /// and its recipient is flushed (see the module for what it gets).
    fn splice_sender_failed(&mut self, id: u64) {
        self.close(id);
        self.splice_sender_gone(id);
    }

    /// Connection `id` is going away: a body it was still sending cannot
    /// be completed.
    pub(super) fn splice_sender_gone(&mut self, id: u64) {
        let Some(job) = self.peers.get_mut(&id).and_then(|p| p.splice_in.take()) else {
            return;
        };
        if job.to_read.get() > 0 {
            job.broken.set(true);
            self.dirty.push(job.recipient);
        }
    }
}
