//! The io_uring backend: "send-and-poll".
//!
//! Every watched fd has a multishot IORING_OP_POLL_ADD, which posts a
//! completion on every wake-up of the socket (the same edge-triggered
//! contract as epoll's EPOLLET, which the loop's turns rely on). A round's
//! writes are IORING_OP_SENDMSG entries (one per peer, MSG_DONTWAIT, so
//! each runs to completion, short or not, while the kernel takes in the
//! submission); they go to the kernel in the same io_uring_enter that
//! waits for the next events. With epoll the same round costs one sendmsg
//! per peer and an epoll_wait.
//!
//! The wait asks for one completion more than the sends submitted: the
//! sends' own completions (posted during submission) must not end it. A
//! send that the socket takes only in part must end it, though (the rest
//! waits for writability, which nothing would watch yet). Each send is
//! therefore sent with MSG_WAITALL and linked to a NOP whose success posts
//! nothing: a short send fails the link (reporting the bytes it wrote) and
//! the NOP's cancellation is the completion that ends the wait. Kernels
//! whose links behave otherwise (probed at start-up) get the sends
//! submitted without waiting, and the wait in a second io_uring_enter.
//!
//! Messages carrying fds go out with a plain sendmsg, as with epoll.
//!
//! Receives: a connection whose turn ended with its socket dry gets a
//! multishot IORING_OP_RECVMSG (IORING_RECV_MULTISHOT, IOSQE_BUFFER_SELECT
//! from a registered provided-buffer ring, src/daemon/bufring.rs) in place
//! of a readiness poll; it rides in the io_uring_enter that submits the
//! round's sends and waits, and stays armed: every arrival posts a
//! completion with the bytes (copied once, from the provided buffer into
//! the connection's receive chunk, where messages are sliced out as with
//! epoll, or into its spill when the chunk has no room or bytes wait
//! before them) and the SCM_RIGHTS fds (MSG_CMSG_CLOEXEC), so a call and
//! its reply cost no recvmsg syscall and no receive is prepared again per
//! message. src/daemon/multishot.rs says how the budgets, back-pressure,
//! large messages and splices keep seeing the bytes in the order epoll
//! would: the receive is cancelled when the connection is throttled, or
//! its turn ends in a state the loop reads itself (then a multishot poll
//! watches it and the loop reads or splices itself, as with epoll), and
//! a body to splice takes it back first.
//!
//! Where the multishot probe fails at start-up, or with
//! `BUSBAR_URING_MULTISHOT=off`, the receives are one-shot: armed only
//! when the loop would read that connection next anyway (a turn that
//! found the socket dry), never while its input is throttled, waits for
//! the user database or a pipe, or is a large message read in place or
//! spliced, and for at most [`bufring::SIZE`] bytes and no more than its
//! receive chunk has room for. A turn that would begin while a one-shot
//! receive is in flight (a wake-up from elsewhere) first cancels it and
//! waits for its completion; a re-exec does so for every receive, one-shot
//! or multishot, so all bytes taken from the sockets are in the receive
//! chunks and spills the state saves. A completion that fills its buffer
//! leaves the rest to the loop's recvmsg (the socket may hold more);
//! ENOBUFS (more completions in one wait than buffers) too, and a
//! multishot receive that ends that way is armed again at the end of the
//! next turn that finds the socket dry.
//!
//! Bodies are spliced with splice(2) here too, not IORING_OP_SPLICE:
//! bench/src/uring_splice.rs measured it losing to splice(2) at every size
//! from 64 KiB to 1 MiB (the kernel runs each splice entry in an io-wq
//! worker thread; bench/README.md, "IORING_OP_SPLICE: measured, not
//! used").
//!
//! This needs IORING_SETUP_DEFER_TASKRUN: receives then run only inside
//! this thread's io_uring_enter, so one without a completion has taken
//! nothing from its socket, and the loop's own reads cannot overtake it.
//! Without it, or without the buffer ring, or when the probe at start-up
//! fails, or with `BUSBAR_URING_RECV=off`, the receives are the loop's
//! own recvmsg calls, with multishot polls as before.
//!
//! Memory a send points at (iovecs, msghdr, the queued messages) stays
//! untouched until its completion is reaped: the loop calls
//! [`Uring::settle`] before anything may drop or change a queue or close a
//! socket, and every wait reaps all the sends it submitted before it
//! returns.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::broker::bus::Bus;
use crate::broker::idmap::IdHasher;
use crate::broker::peer::Flush;
use crate::transport::rxbuf::CHUNK_SIZE;

use super::bufring::{self, BufRing};
use super::multishot;

/// Slices per send: IOV_MAX (UIO_MAXIOV). More than epoll's flush puts in
/// one sendmsg, as a peer gets one send per round here (epoll's flush
/// loops until the queue is empty or the socket full).
const MAX_IOV: usize = 1024;

use super::backend::Event;

/// Submission queue entries (the completion queue has twice as many; a
/// kernel with IORING_FEAT_NODROP keeps any overflow).
const ENTRIES: u32 = 4096;

/// user_data: the kind in the top bits, a token or slot below.
const KIND_SHIFT: u32 = 60;
const VALUE_MASK: u64 = (1 << KIND_SHIFT) - 1;
/// Completions that need nothing done (cancellations, linked NOPs).
const KIND_IGNORE: u64 = 0;
/// A multishot readiness poll; the value is the token.
const KIND_POLL: u64 = 1;
/// A one-shot writability poll; the value is the token.
const KIND_WRITE: u64 = 2;
/// A send; the value is its slot.
const KIND_SEND: u64 = 3;
/// A connection's receive; the value is its id.
const KIND_RECV: u64 = 4;
/// A connection's multishot readiness poll while the loop reads it itself; the value is its id.
const KIND_RPOLL: u64 = 5;
/// IORING_ENTER_GETEVENTS (linux/io_uring.h), which the crate does not
/// export.
const ENTER_GETEVENTS: u32 = 1;
/// Tokens this close to usize::MAX (the loop's own fds and listeners)
/// are stored as their distance from it.
const HIGH_TOKENS: u64 = 1 << 20;

fn encode(kind: u64, token: usize) -> u64 {
    let t = token as u64;
    let v = if t > u64::MAX - HIGH_TOKENS {
        VALUE_MASK - (u64::MAX - t)
    } else {
        t & VALUE_MASK
    };
    (kind << KIND_SHIFT) | v
}

fn decode(user_data: u64) -> (u64, usize) {
    let kind = user_data >> KIND_SHIFT;
    let v = user_data & VALUE_MASK;
    let t = if v > VALUE_MASK - HIGH_TOKENS {
        u64::MAX - (VALUE_MASK - v)
    } else {
        v
    };
    (kind, t as usize)
}

/// Whether receives may go through the buffer ring: not with
/// `BUSBAR_URING_RECV=off` (for comparisons; see man/busbar.1).
pub(super) fn ring_receives_wanted() -> bool {
    !matches!(std::env::var("BUSBAR_URING_RECV").as_deref(), Ok("off"))
}

/// The readiness a poll completion's result (a poll mask) reports.
fn poll_event(token: usize, res: i32) -> Event {
    let m = res as i16;
    Event {
        token,
        readable: m & (libc::POLLIN | libc::POLLPRI) != 0,
        writable: false,
        read_closed: m & (libc::POLLRDHUP | libc::POLLHUP) != 0,
        error: m & libc::POLLERR != 0,
    }
}

/// What the readiness polls ask for (POLLERR and POLLHUP always come).
const POLL_IN: u32 = (libc::POLLIN | libc::POLLRDHUP) as u32;

/// One send's memory, boxed so its address holds while the list grows.
struct SendSlot {
    id: u64,
    bytes: usize,
    /// Grows to the largest batch seen (not while its send is in use).
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// Whether its completion was reaped.
    done: bool,
}

/// Bytes of gathered sends one round holds at most, all connections
/// together: one buffer, so the memory does not grow with the number of
/// connections that have output in a round (past it, sends go out from
/// their slices).
const GATHER_ROUND: usize = 256 * 1024;

/// IORING_RECVSEND_POLL_FIRST: the receive is armed after a turn found
/// the socket dry, so it waits for readiness before trying.
const RECV_POLL_FIRST: u16 = 1;
/// Control-message room: SCM_RIGHTS with 64 fds (as a plain recv takes).
pub(super) const CMSG_WORDS: usize = 34;

/// What the loop learns at the next read step of a connection's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RxEnd {
    /// Nothing known: the loop reads the socket itself.
    Open,
    /// The last receive was short: the socket was dry, and a new receive
    /// is armed when the turn ends.
    Dry,
    /// End of stream or an error.
    Closed,
}

/// A connection's receive: its msghdr and control buffer (which the
/// kernel writes until the completion), boxed so they never move.
pub(super) struct RxSlot {
    pub(super) msg: libc::msghdr,
    iov: libc::iovec,
    pub(super) cmsg: [u64; CMSG_WORDS],
    pub(super) fd: RawFd,
    /// Bytes the armed receive may bring.
    asked: usize,
    pub(super) recv_armed: bool,
    /// The armed receive is multishot (src/daemon/multishot.rs).
    pub(super) multi: bool,
    /// Its cancellation is on the way.
    pub(super) cancelling: bool,
    /// The connection's message and byte counts when its receive was
    /// last armed, and whether its messages since were large on average
    /// (see [`Uring::turn_drained`]).
    seen_msgs: u64,
    seen_bytes: u64,
    large: bool,
    poll_armed: bool,
    /// Bytes delivered since the connection's last turn began.
    pub(super) delivered: usize,
    pub(super) end: RxEnd,
    /// The connection is gone; the slot waits for its receive's
    /// completion.
    pub(super) closed: bool,
}

pub(super) struct Uring {
    ring: IoUring,
    /// Provided buffers (after `ring`: dropped after it). None: the loop
    /// does its own receives.
    bufs: Option<BufRing>,
    /// Connections whose receives go through the ring, by id.
    rx: RxSlots,
    /// The watched fds by token, to re-arm a multishot poll that ended.
    regs: HashMap<u64, RawFd, BuildHasherDefault<IdHasher>>,
    /// Send slots; the first `n_sends` are in use.
    /// Boxed: a queued send points at its slot's msghdr, which must not
    /// move when the list grows.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<SendSlot>>,
    n_sends: usize,
    /// The round's gathered sends (see [`crate::broker::peer::gathers`]):
    /// made at [`GATHER_ROUND`] bytes once, never grown, emptied when the
    /// round's sends are reaped.
    gathered: Vec<u8>,
    /// Peers with a send in use (at most one each, which keeps order).
    sending: HashSet<u64, BuildHasherDefault<IdHasher>>,
    /// A send did not cover its peer's whole queue: the rest goes out in
    /// the next round, which must not wait for an event first.
    more_to_send: bool,
    /// Short sends end the wait (the probe saw the linked NOP cancelled).
    linked: bool,
    /// Ring receives are multishot (the probe passed, and they are wanted).
    multishot: bool,
    /// Connections whose multishot receive is to be cancelled after a reap.
    cancels: Vec<u64>,
    /// The workers' eventfd.
    wake_fd: Option<OwnedFd>,
    /// Readiness reaped by [`Uring::settle`], for the next wait.
    stash: Vec<Event>,
    /// Polls to arm after a reap (kept to reuse their allocations).
    rearm: Vec<(RawFd, usize)>,
    writes: Vec<(RawFd, u64)>,
    /// Connections' polls to arm again after a reap.
    rpolls: Vec<squeue::Entry>,
}

impl RxSlot {
    pub(super) fn new(fd: RawFd) -> RxSlot {
        RxSlot {
            // SAFETY: an all-zero msghdr is a valid empty one.
            msg: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            cmsg: [0; CMSG_WORDS],
            fd,
            asked: 0,
            recv_armed: false,
            multi: false,
            cancelling: false,
            seen_msgs: 0,
            seen_bytes: 0,
            large: false,
            poll_armed: false,
            delivered: 0,
            end: RxEnd::Open,
            closed: false,
        }
    }

    /// The receive of at most `asked` bytes, from the buffer ring, with
    /// room for fds; its memory is this (boxed) slot's.
    fn entry(&mut self, user_data: u64) -> squeue::Entry {
        self.iov.iov_base = std::ptr::null_mut();
        self.iov.iov_len = self.asked;
        self.msg.msg_name = std::ptr::null_mut();
        self.msg.msg_namelen = 0;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.cmsg.as_mut_ptr().cast();
        self.msg.msg_controllen = std::mem::size_of_val(&self.cmsg) as _;
        self.msg.msg_flags = 0;
        opcode::RecvMsg::new(types::Fd(self.fd), &mut self.msg)
            .buf_group(bufring::GROUP)
            .ioprio(RECV_POLL_FIRST)
            .flags(libc::MSG_CMSG_CLOEXEC as u32)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data)
    }

    /// Takes the fds the completed receive brought (the kernel wrote the
    /// control messages and their length into this slot); true if some
    /// did not fit (MSG_CTRUNC).
    fn take_fds(&mut self, fds: &mut Vec<OwnedFd>) -> bool {
        // size_t with glibc, socklen_t with musl.
        #[allow(clippy::unnecessary_cast)]
        let len = (self.msg.msg_controllen as usize).min(std::mem::size_of_val(&self.cmsg));
        let mut bytes = [0u8; CMSG_WORDS * 8];
        for (b, w) in bytes.chunks_mut(8).zip(self.cmsg.iter()) {
            b.copy_from_slice(&w.to_ne_bytes());
        }
        multishot::fds_in(&bytes[..len], fds);
        self.msg.msg_controllen = 0;
        self.msg.msg_flags & libc::MSG_CTRUNC != 0
    }
}

fn sendmsg_flags(linked: bool) -> u32 {
    let mut f = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    if linked {
        f |= libc::MSG_WAITALL;
    }
    f as u32
}

impl Uring {
    /// Sets up a ring and checks that this kernel does what the backend
    /// relies on; an error says why not (the loop then uses epoll).
    pub fn new() -> Result<Uring, String> {
        let (ring, deferred) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(ENTRIES * 2)
            .build(ENTRIES)
        {
            Ok(r) => (r, true),
            Err(_) => (
                IoUring::builder()
                    .setup_cqsize(ENTRIES * 2)
                    .build(ENTRIES)
                    .map_err(|e| format!("io_uring_setup: {e}"))?,
                false,
            ),
        };
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err("the kernel's io_uring lacks EXT_ARG or NODROP".into());
        }
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
        for op in [
            opcode::PollAdd::CODE,
            opcode::SendMsg::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Nop::CODE,
        ] {
            if !probe.is_supported(op) {
                return Err(format!("io_uring opcode {op} is not supported"));
            }
        }
        let recv_ok =
            deferred && probe.is_supported(opcode::RecvMsg::CODE) && ring_receives_wanted();
        let mut u = Uring {
            ring,
            bufs: None,
            rx: HashMap::default(),
            regs: HashMap::default(),
            slots: Vec::new(),
            n_sends: 0,
            gathered: Vec::with_capacity(GATHER_ROUND),
            sending: HashSet::default(),
            more_to_send: false,
            linked: false,
            multishot: false,
            cancels: Vec::new(),
            wake_fd: None,
            stash: Vec::new(),
            rearm: Vec::new(),
            writes: Vec::new(),
            rpolls: Vec::new(),
        };
        u.probe_multishot()?;
        u.linked = u.probe_links().unwrap_or(false);
        if recv_ok {
            if let Ok(b) = BufRing::new(&u.ring) {
                u.bufs = Some(b);
                if !u.probe_recv().unwrap_or(false) {
                    u.bufs = None;
                } else if multishot::wanted() {
                    u.multishot = multishot::probe(&mut u).unwrap_or(false);
                }
            }
        }
        Ok(u)
    }

    /// Whether the receives go through the ring.
    pub fn ring_receives(&self) -> bool {
        self.bufs.is_some()
    }

    /// Whether the ring receives are multishot.
    #[cfg(test)]
    pub fn multishot(&self) -> bool {
        self.bufs.is_some() && self.multishot
    }

    /// Queues an entry (for the probes).
    pub(super) fn push_entry(&mut self, e: &squeue::Entry) {
        self.push(e);
    }

    /// Submits, waits up to 200 ms for a completion, and returns the
    /// result and flags of those tagged `user_data` (for the probes).
    pub(super) fn wait_completions(&mut self, user_data: u64) -> io::Result<Vec<(i32, u32)>> {
        let ts = types::Timespec::new().nsec(200_000_000);
        match self
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
        {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(e),
        }
        Ok(self
            .ring
            .completion()
            .filter(|c| c.user_data() == user_data)
            .map(|c| (c.result(), c.flags()))
            .collect())
    }

    /// The first `len` bytes of provided buffer `bid` (for the probes).
    pub(super) fn ring_buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        self.bufs.as_ref().map(|r| r.data(bid, len))
    }

    /// Gives provided buffer `bid` back (for the probes).
    pub(super) fn recycle_buffer(&mut self, bid: u16) {
        if let Some(r) = &mut self.bufs {
            r.recycle(bid);
        }
    }

    /// Whether a receive from the buffer ring waits for data on a
    /// non-blocking socket, then brings the bytes and an SCM_RIGHTS fd
    /// (close-on-exec).
    fn probe_recv(&mut self) -> io::Result<bool> {
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair()?;
        b.set_nonblocking(true)?;
        // Leaked (once, a few hundred bytes): the kernel may write its
        // msghdr until the receive completes, which an early return here
        // would not wait for.
        let slot: &'static mut RxSlot = Box::leak(Box::new(RxSlot::new(b.as_raw_fd())));
        slot.asked = 64;
        let e = slot.entry(1);
        self.push(&e);
        let ts = types::Timespec::new();
        let _ = self
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
        let early: Vec<(i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.result(), c.flags()))
            .collect();
        let waited = early.is_empty();
        let fd_sent = a.as_raw_fd();
        nix::sys::socket::sendmsg::<()>(
            a.as_raw_fd(),
            &[std::io::IoSlice::new(b"hello")],
            &[nix::sys::socket::ControlMessage::ScmRights(&[fd_sent])],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )?;
        let mut got = early;
        while got.is_empty() {
            self.ring.submit_and_wait(1)?;
            got.extend(self.ring.completion().map(|c| (c.result(), c.flags())));
        }
        let (res, flags) = got[0];
        let Some(bid) = cqueue::buffer_select(flags) else {
            return Ok(false);
        };
        let bytes_ok = res == 5
            && self
                .bufs
                .as_ref()
                .is_some_and(|r| r.data(bid, 5) == b"hello");
        if let Some(r) = &mut self.bufs {
            r.recycle(bid);
        }
        let mut fds = Vec::new();
        let ctrunc = slot.take_fds(&mut fds);
        let cloexec = fds.len() == 1
            && nix::fcntl::fcntl(fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
                .is_ok_and(|f| f & libc::FD_CLOEXEC != 0);
        Ok(waited && bytes_ok && !ctrunc && cloexec)
    }

    /// A multishot poll posts a completion per arrival, and goes on.
    fn probe_multishot(&mut self) -> Result<(), String> {
        let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        let entry = opcode::PollAdd::new(types::Fd(b.as_raw_fd()), POLL_IN)
            .multi(true)
            .build()
            .user_data(1);
        self.push(&entry);
        let mut seen = 0;
        for _ in 0..2 {
            io::Write::write_all(&mut &a, b"x").map_err(|e| e.to_string())?;
            self.ring
                .submit_and_wait(1)
                .map_err(|e| format!("io_uring_enter: {e}"))?;
            for c in self.ring.completion() {
                if c.user_data() == 1 && c.result() > 0 && cqueue::more(c.flags()) {
                    seen += 1;
                }
            }
        }
        self.push(&opcode::AsyncCancel::new(1).build().user_data(0));
        let _ = self.ring.submit_and_wait(2);
        self.ring.completion().for_each(drop);
        if seen == 2 {
            Ok(())
        } else {
            Err("multishot poll did not report each arrival".into())
        }
    }

    /// Whether a short MSG_WAITALL send cancels its linked NOP and reports
    /// the bytes it wrote, while a whole one posts nothing for the NOP.
    fn probe_links(&mut self) -> Result<bool, io::Error> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        let small = [7u8; 16];
        let big = vec![7u8; 4 << 20];
        let mut results = Vec::new();
        for buf in [&small[..], &big[..]] {
            let mut iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // SAFETY: an all-zero msghdr is a valid empty one.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            let send = opcode::SendMsg::new(types::Fd(a.as_raw_fd()), &msg)
                .flags(sendmsg_flags(true))
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(1);
            let nop = opcode::Nop::new()
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(2);
            self.push(&send);
            self.push(&nop);
            // No wait: a kernel that deferred either would hang a wait.
            self.ring.submit()?;
            // Give deferred task work its chance, without blocking.
            let ts = types::Timespec::new();
            let _ = self
                .ring
                .submitter()
                .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
            let mut got: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            while !got.iter().any(|&(u, _)| u == 1) {
                // Deferred (not expected with MSG_DONTWAIT): `iov`, `msg`
                // and the buffer must outlive it, so cancel it and wait.
                self.push(&opcode::AsyncCancel::new(1).build().user_data(3));
                self.ring.submit_and_wait(1)?;
                got.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            }
            got.retain(|&(u, _)| u != 3);
            results.push(got);
        }
        drop(b);
        let whole = results[0] == [(1, 16)];
        let short = results[1].len() == 2
            && results[1][0].0 == 1
            && results[1][0].1 > 0
            && (results[1][0].1 as usize) < big.len()
            && results[1][1] == (2, -libc::ECANCELED);
        Ok(whole && short)
    }

    /// Queues the cancellation of the entry of `kind` for token `id`.
    fn cancel(&mut self, kind: u64, id: u64) {
        let c = opcode::AsyncCancel::new(encode(kind, id as usize))
            .build()
            .user_data(encode(KIND_IGNORE, 0));
        self.push(&c);
    }

    /// Queues an entry, submitting what is queued first if the queue is
    /// full.
    fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: every entry queued here points only at memory that
            // outlives its completion: poll and cancel entries point at
            // nothing; send entries at a boxed slot and at queued messages
            // (or the round's gather buffer, which is neither grown nor
            // emptied before the round's sends are reaped) that are not
            // touched until the send is reaped (see the module comment).
            let r = unsafe { self.ring.submission().push(e) };
            if r.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    pub fn register(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        self.regs.insert(token as u64, fd);
        self.arm(fd, token);
        Ok(())
    }

    fn arm(&mut self, fd: RawFd, token: usize) {
        let e = opcode::PollAdd::new(types::Fd(fd), POLL_IN)
            .multi(true)
            .build()
            .user_data(encode(KIND_POLL, token));
        self.push(&e);
    }

    /// Watches connection `id`'s socket: with ring receives, a receive
    /// (`fresh`: nothing read from it yet) or nothing (a turn follows,
    /// whose end arms one); otherwise a multishot poll, as any fd.
    pub fn register_peer(&mut self, fd: RawFd, id: u64, fresh: bool) -> io::Result<()> {
        if self.bufs.is_none() {
            return self.register(fd, id as usize);
        }
        self.regs.insert(id, fd);
        let mut slot = Box::new(RxSlot::new(fd));
        if fresh {
            slot.asked = bufring::SIZE;
            slot.recv_armed = true;
            let e = slot.entry(encode(KIND_RECV, id as usize));
            self.rx.insert(id, slot);
            self.push(&e);
        } else {
            self.rx.insert(id, slot);
        }
        Ok(())
    }

    /// Connection `id`'s turn ended with nothing more to read for now:
    /// arms its receive when the loop would next read it anyway, else a
    /// multishot poll (see the module).
    pub fn turn_drained(&mut self, bus: &mut Bus, id: u64) {
        let waits = bus.awaits_userdb(id);
        let Some(slot) = self.rx.get_mut(&id) else {
            return;
        };
        let Some(p) = bus.peer_mut(id) else {
            return;
        };
        if p.closing {
            return;
        }
        let plain = p.large_rx.is_none() && p.splice_in.is_none() && !p.splice_wait && !waits;
        if slot.recv_armed {
            if !plain {
                // The loop reads this one itself for now: a multishot
                // receive's last completion says when to.
                self.pause(id);
            }
            return;
        }
        let room = CHUNK_SIZE.saturating_sub(p.inbuf.len()).min(bufring::SIZE);
        // A connection sending large messages (a chunk's worth or more on
        // average since its receive was last armed) gets one-shot
        // receives: a multishot one would take its bodies through the
        // ring's buffers and the spill (copied twice more, bench/README.md)
        // instead of reading them in place or splicing them.
        let (msgs, bytes) = (p.stats.in_msgs, p.stats.in_bytes);
        if let Some(avg) = bytes
            .saturating_sub(slot.seen_bytes)
            .checked_div(msgs.saturating_sub(slot.seen_msgs))
        {
            slot.large = avg >= CHUNK_SIZE as u64;
        }
        (slot.seen_msgs, slot.seen_bytes) = (msgs, bytes);
        let multi = plain && self.multishot && !slot.large;
        if multi || (plain && room > 0) {
            let cancel = std::mem::take(&mut slot.poll_armed);
            slot.recv_armed = true;
            let e = if multi {
                slot.multi = true;
                p.rx_ring = true;
                multishot::entry(slot, encode(KIND_RECV, id as usize))
            } else {
                slot.asked = room;
                slot.entry(encode(KIND_RECV, id as usize))
            };
            if cancel {
                // Its last completions may still come: a spare turn.
                self.cancel(KIND_RPOLL, id);
            }
            self.push(&e);
        } else if !slot.poll_armed {
            slot.poll_armed = true;
            let e = rpoll(slot.fd, id);
            self.push(&e);
        }
    }

    /// Bytes the ring delivered to `id` since its last turn began.
    pub fn take_delivered(&mut self, id: u64) -> usize {
        self.rx
            .get_mut(&id)
            .map_or(0, |s| std::mem::take(&mut s.delivered))
    }

    /// What the last receive said about the socket, forgotten once told;
    /// while a multishot receive is armed (and not being cancelled), Dry:
    /// it brings what arrives.
    pub fn rx_end(&mut self, id: u64) -> RxEnd {
        let Some(s) = self.rx.get_mut(&id) else {
            return RxEnd::Open;
        };
        match std::mem::replace(&mut s.end, RxEnd::Open) {
            RxEnd::Open if s.recv_armed && s.multi && !s.cancelling => RxEnd::Dry,
            end => end,
        }
    }

    /// Connection `id`'s framing wants its socket to itself (a body to
    /// splice): its receive is taken back, and what it brought is in the
    /// receive chunk or the spill when this returns.
    pub fn release(&mut self, bus: &mut Bus, id: u64) {
        if self.rx.get(&id).is_some_and(|s| s.recv_armed) {
            self.reclaim_all(bus, &[id]);
        }
    }

    /// Connection `id` is throttled, or read by the loop itself for now: a
    /// multishot receive is cancelled (it would bring bytes the loop is not
    /// to read yet).
    pub fn pause(&mut self, id: u64) {
        let Some(s) = self.rx.get_mut(&id) else {
            return;
        };
        if s.recv_armed && s.multi && !s.cancelling {
            s.cancelling = true;
            self.cancel(KIND_RECV, id);
        }
    }

    /// The loop is about to work on connection `id` outside the turn the
    /// receive's completion gives: a receive in flight is cancelled and
    /// its completion awaited (what it brought is then in the receive
    /// chunk), so the loop's own reads and splices cannot be overtaken.
    pub fn reclaim(&mut self, bus: &mut Bus, id: u64) {
        // A multishot receive stays (see src/daemon/multishot.rs).
        if !self.rx.get(&id).is_some_and(|s| s.recv_armed && !s.multi) {
            return;
        }
        self.reclaim_all(bus, &[id]);
    }

    /// Before a re-exec: every receive in flight is taken back (its bytes
    /// land in the receive chunks the state saves) and replaced by a
    /// multishot poll, which takes nothing from the socket.
    pub fn quiesce(&mut self, bus: &mut Bus) {
        let ids: Vec<u64> = self
            .rx
            .iter()
            .filter(|(_, s)| s.recv_armed && !s.closed)
            .map(|(&id, _)| id)
            .collect();
        self.reclaim_all(bus, &ids);
        for id in ids {
            if let Some(slot) = self.rx.get_mut(&id) {
                if !slot.closed && !slot.poll_armed && !slot.recv_armed {
                    slot.poll_armed = true;
                    let e = rpoll(slot.fd, id);
                    self.push(&e);
                }
            }
        }
        let _ = self.ring.submit();
    }

    fn reclaim_all(&mut self, bus: &mut Bus, ids: &[u64]) {
        // The sends go first (their completions are counted by `enter`).
        self.settle(bus);
        let mut events = std::mem::take(&mut self.stash);
        self.reap(bus, &mut events);
        for &id in ids {
            if self.rx.get(&id).is_some_and(|s| s.recv_armed) {
                self.cancel(KIND_RECV, id);
            }
        }
        while ids
            .iter()
            .any(|id| self.rx.get(id).is_some_and(|s| s.recv_armed))
        {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.reap(bus, &mut events);
        }
        self.stash = events;
    }

    /// Cancels the polls of `token` (they hold the file open), now: the fd
    /// is closed next, and its number may come back for another socket.
    pub fn deregister(&mut self, token: usize) {
        if self.regs.remove(&(token as u64)).is_none() {
            return;
        }
        if let Some(slot) = self.rx.get_mut(&(token as u64)) {
            let (recv, poll) = (slot.recv_armed, slot.poll_armed);
            if recv {
                // Its memory stays until the completion says so.
                slot.closed = true;
            } else {
                self.rx.remove(&(token as u64));
            }
            for (armed, kind) in [(recv, KIND_RECV), (poll, KIND_RPOLL), (true, KIND_WRITE)] {
                if armed {
                    self.cancel(kind, token as u64);
                }
            }
            let _ = self.ring.submit();
            return;
        }
        for kind in [KIND_POLL, KIND_WRITE] {
            self.cancel(kind, token as u64);
        }
        let _ = self.ring.submit();
    }

    pub fn waker(
        &mut self,
        token: usize,
    ) -> Result<std::sync::Arc<dyn Fn() + Send + Sync>, String> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a
        // new descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "Failed to create a waker: {}",
                io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = owned.as_raw_fd();
        self.register(raw, token).map_err(|e| e.to_string())?;
        self.wake_fd = Some(owned);
        Ok(std::sync::Arc::new(move || {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to the eventfd, which
            // lives as long as the loop (the workers stop notifying when
            // the process exits).
            let _ = unsafe { libc::write(raw, (&one as *const u64).cast(), 8) };
        }))
    }

    /// Resets the eventfd, so it never fills.
    pub fn woken(&mut self) {
        if let Some(fd) = &self.wake_fd {
            let mut n: u64 = 0;
            // SAFETY: reads at most 8 bytes into a live u64.
            let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        }
    }

    /// Arms a one-shot writability poll for peer `id`.
    fn want_write(&mut self, fd: RawFd, id: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
            .build()
            .user_data(encode(KIND_WRITE, id as usize));
        self.push(&e);
    }

    pub fn flush_peer(&mut self, bus: &mut Bus, id: u64) {
        if self.sending.contains(&id) {
            // Its completion marks it dirty again if more is queued.
            return;
        }
        let Some(p) = bus.peer_mut(id) else {
            return;
        };
        if p.out.is_empty() {
            return;
        }
        let fd = p.stream.raw_fd();
        if p.out_spliced > 0 || p.out.front().is_some_and(|m| m.n_fds() > 0) {
            // A message with fds, or a queue with a spliced body (whose
            // rest is written from its pipe): a plain sendmsg, as with
            // epoll.
            match p.flush() {
                Ok(Flush::Done | Flush::Waiting) => {}
                Ok(Flush::Blocked) => {
                    p.detach_queued();
                    if !p.write_interest {
                        p.write_interest = true;
                        self.want_write(fd, id);
                    }
                }
                Err(_) => bus.close(id),
            }
            return;
        }
        if self.n_sends == self.slots.len() {
            self.slots.push(Box::new(SendSlot {
                id: 0,
                bytes: 0,
                iov: Vec::new(),
                // SAFETY: an all-zero msghdr is a valid empty one.
                msg: unsafe { std::mem::zeroed() },
                done: true,
            }));
        }
        let idx = self.n_sends;
        let slot = &mut self.slots[idx];
        slot.iov.clear();
        let mut no_fds = Vec::new();
        let iov = &mut slot.iov;
        let batch = p.next_batch_with(MAX_IOV, &mut no_fds, |s| {
            iov.push(libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
        });
        let g = &mut self.gathered;
        if crate::broker::peer::gathers(&batch) && g.capacity() - g.len() >= batch.bytes {
            // As a plain sendmsg does: the same slices, copied into the
            // round's gather buffer. It never grows (a send that does not
            // fit in what is left goes out from its slices), so what is in
            // it stays where the send points until the round's sends are
            // reaped and it is emptied.
            let start = g.len();
            p.next_batch_with(MAX_IOV, &mut no_fds, |s| g.extend_from_slice(s));
            slot.iov.clear();
            slot.iov.push(libc::iovec {
                iov_base: g[start..].as_ptr() as *mut libc::c_void,
                iov_len: g.len() - start,
            });
        }
        slot.msg.msg_iov = slot.iov.as_mut_ptr();
        slot.msg.msg_iovlen = slot.iov.len() as _;
        slot.id = id;
        slot.bytes = batch.bytes;
        slot.done = false;
        let mut e = opcode::SendMsg::new(types::Fd(fd), &slot.msg)
            .flags(sendmsg_flags(self.linked))
            .build()
            .user_data(encode(KIND_SEND, idx));
        if self.linked {
            e = e.flags(squeue::Flags::IO_LINK);
        }
        self.n_sends += 1;
        self.sending.insert(id);
        if !batch.whole_queue {
            self.more_to_send = true;
        }
        self.push(&e);
        if self.linked {
            let nop = opcode::Nop::new()
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(encode(KIND_IGNORE, 0));
            self.push(&nop);
        }
    }

    /// Submits the queued sends and reaps their completions, without
    /// waiting for anything else.
    pub fn settle(&mut self, bus: &mut Bus) {
        if self.n_sends == 0 {
            return;
        }
        // Readiness reaped on the way is not lost: it is kept for the
        // next wait.
        let mut events = std::mem::take(&mut self.stash);
        let _ = self.enter(bus, &mut events, Some(Duration::ZERO));
        self.stash = events;
    }

    pub fn wait(
        &mut self,
        bus: &mut Bus,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if !self.stash.is_empty() {
            events.append(&mut self.stash);
            return self.enter(bus, events, Some(Duration::ZERO));
        }
        self.enter(bus, events, timeout)
    }

    /// One io_uring_enter: submits everything queued and waits for the
    /// sends plus one more completion (or `timeout`); then reaps. Loops
    /// until every send is reaped.
    fn enter(
        &mut self,
        bus: &mut Bus,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let sends = self.n_sends;
        let block = self.linked && !self.more_to_send || sends == 0;
        let timeout = if block { timeout } else { Some(Duration::ZERO) };
        let r = match timeout {
            Some(d) if d.is_zero() && sends > 0 => self.ring.submit_and_wait(sends),
            // A look without waiting: GETEVENTS with nothing to wait for
            // runs the deferred task work (receives, polls) and returns.
            // A zero timespec instead arms a timer and goes to sleep on it
            // (a context switch per look; bench/README.md, "Multishot
            // receives").
            Some(d) if d.is_zero() => {
                let queued = self.ring.submission().len() as u32;
                // SAFETY: io_uring_enter on this ring with the entries
                // queued (each pointing only at memory that outlives its
                // completion, see `push`), no minimum and no argument.
                unsafe {
                    self.ring
                        .submitter()
                        .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
                }
            }
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(sends + 1, &args)
            }
            None => self.ring.submit_and_wait(sends + 1),
        };
        let r = match r {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            // CQ overflow not flushed yet, or no memory for the moment:
            // reaping makes room, the next round tries again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(0),
            r => r,
        };
        self.reap(bus, events);
        while self.slots[..self.n_sends].iter().any(|s| !s.done) {
            // Not seen yet (never, with MSG_DONTWAIT): their memory must
            // stay untouched until they are.
            let left = self.slots[..self.n_sends]
                .iter()
                .filter(|s| !s.done)
                .count();
            let _ = self.ring.submit_and_wait(left);
            self.reap(bus, events);
        }
        self.n_sends = 0;
        self.gathered.clear();
        self.more_to_send = false;
        r.map(drop)
    }

    fn reap(&mut self, bus: &mut Bus, events: &mut Vec<Event>) {
        let mut rearm = std::mem::take(&mut self.rearm);
        let mut writes = std::mem::take(&mut self.writes);
        let mut rpolls = std::mem::take(&mut self.rpolls);
        for c in self.ring.completion() {
            let (kind, token) = decode(c.user_data());
            let res = c.result();
            match kind {
                KIND_POLL => {
                    let Some(&fd) = self.regs.get(&(token as u64)) else {
                        continue;
                    };
                    if !cqueue::more(c.flags()) {
                        rearm.push((fd, token));
                    }
                    if res < 0 {
                        continue;
                    }
                    events.push(poll_event(token, res));
                }
                KIND_WRITE => {
                    let id = token as u64;
                    if !self.regs.contains_key(&(token as u64)) {
                        continue;
                    }
                    if let Some(p) = bus.peer_mut(id) {
                        p.write_interest = false;
                    }
                    events.push(Event {
                        token,
                        writable: true,
                        ..Event::default()
                    });
                }
                KIND_SEND => {
                    let Some(slot) = self.slots.get_mut(token) else {
                        continue;
                    };
                    slot.done = true;
                    let (id, bytes) = (slot.id, slot.bytes);
                    self.sending.remove(&id);
                    let Some(p) = bus.peer_mut(id) else {
                        continue;
                    };
                    let fd = p.stream.raw_fd();
                    let blocked = if res >= 0 {
                        let n = res as usize;
                        p.sent(n);
                        n < bytes
                    } else if res == -libc::EAGAIN {
                        true
                    } else {
                        bus.close(id);
                        continue;
                    };
                    if blocked {
                        p.detach_queued();
                        if !p.write_interest {
                            p.write_interest = true;
                            writes.push((fd, id));
                        }
                    } else if !p.out.is_empty() {
                        bus.mark_dirty(id);
                    }
                }
                KIND_RPOLL => {
                    let id = token as u64;
                    let Some(slot) = self.rx.get_mut(&id) else {
                        continue;
                    };
                    if res == -libc::ECANCELED {
                        // The end of one that was cancelled (already
                        // counted as not armed).
                        continue;
                    }
                    if !cqueue::more(c.flags()) && slot.poll_armed && !slot.recv_armed {
                        // It ended (an error, an overflow): watch again.
                        let e = rpoll(slot.fd, id);
                        rpolls.push(e);
                    }
                    if res < 0 {
                        continue;
                    }
                    events.push(poll_event(token, res));
                }
                KIND_RECV => {
                    let cqe = Cqe {
                        token,
                        res,
                        flags: c.flags(),
                    };
                    let id = token as u64;
                    match self.rx.get_mut(&id) {
                        Some(slot) if slot.multi => {
                            let (bufs, cancels) = (&mut self.bufs, &mut self.cancels);
                            if multishot::received(slot, bufs, bus, events, cqe, cancels) {
                                self.rx.remove(&id);
                            }
                        }
                        _ => received(&mut self.rx, &mut self.bufs, bus, events, cqe),
                    }
                }
                _ => {
                    // Nothing of ours takes a buffer here; were one
                    // taken, it goes back.
                    if let (Some(b), Some(r)) = (cqueue::buffer_select(c.flags()), &mut self.bufs) {
                        r.recycle(b);
                    }
                }
            }
        }
        for &(fd, token) in &rearm {
            self.arm(fd, token);
        }
        let mut cancels = std::mem::take(&mut self.cancels);
        for id in cancels.drain(..) {
            self.cancel(KIND_RECV, id);
        }
        self.cancels = cancels;
        for e in rpolls.drain(..) {
            self.push(&e);
        }
        self.rpolls = rpolls;
        for &(fd, id) in &writes {
            self.want_write(fd, id);
        }
        rearm.clear();
        writes.clear();
        self.rearm = rearm;
        self.writes = writes;
    }
}

/// A connection's multishot readiness poll (while the loop reads it
/// itself: a large message, a spliced body, a wait).
fn rpoll(fd: RawFd, id: u64) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), POLL_IN)
        .multi(true)
        .build()
        .user_data(encode(KIND_RPOLL, id as usize))
}

type RxSlots = HashMap<u64, Box<RxSlot>, BuildHasherDefault<IdHasher>>;

/// A receive's completion: the connection's id (its token), the result and
/// the flags.
#[derive(Clone, Copy)]
pub(super) struct Cqe {
    pub token: usize,
    pub res: i32,
    pub flags: u32,
}

/// A receive of connection `token` completed with `res`: its bytes go to
/// the connection's receive chunk, its fds to the connection's, and the
/// loop is told it is readable.
fn received(
    rx: &mut RxSlots,
    bufs: &mut Option<BufRing>,
    bus: &mut Bus,
    events: &mut Vec<Event>,
    cqe: Cqe,
) {
    let Cqe { token, res, flags } = cqe;
    let id = token as u64;
    let bid = cqueue::buffer_select(flags);
    let Some(slot) = rx.get_mut(&id) else {
        if let (Some(b), Some(r)) = (bid, bufs.as_mut()) {
            r.recycle(b);
        }
        return;
    };
    slot.recv_armed = false;
    let mut fds = Vec::new();
    let ctrunc = res >= 0 && slot.take_fds(&mut fds);
    if slot.closed {
        rx.remove(&id);
        if let (Some(b), Some(r)) = (bid, bufs.as_mut()) {
            r.recycle(b);
        }
        return;
    }
    let asked = slot.asked;
    let mut ev = Event {
        token,
        readable: true,
        ..Event::default()
    };
    if res < 0 {
        match -res {
            // Taken back (see `reclaim`): nothing was read.
            libc::ECANCELED => return,
            // No buffer left, or interrupted: the loop reads itself.
            libc::ENOBUFS | libc::EAGAIN | libc::EINTR => {}
            _ => {
                slot.end = RxEnd::Closed;
                ev.error = true;
            }
        }
        events.push(ev);
        return;
    }
    let n = res as usize;
    if n == 0 {
        slot.end = RxEnd::Closed;
        ev.read_closed = true;
        events.push(ev);
        if let (Some(b), Some(r)) = (bid, bufs.as_mut()) {
            r.recycle(b);
        }
        return;
    }
    let Some(b) = bid else {
        slot.end = RxEnd::Closed;
        events.push(ev);
        return;
    };
    let Some(ring) = bufs.as_mut() else {
        return;
    };
    let data = ring.data(b, n);
    let mut lost = ctrunc || data.len() < n;
    match bus.peer_mut(id) {
        Some(p) if !lost && !p.closing && !p.rx_spill.is_empty() => {
            // Behind bytes a multishot receive kept aside (not expected:
            // one-shot receives are armed only on a fresh connection when
            // multishot ones are used).
            p.rx_spill.push(data, fds);
        }
        Some(p) if !lost && !p.closing && p.large_rx.is_none() && p.splice_in.is_none() => {
            let off = p.inbuf.fill_from(data);
            // Never: a receive asks for no more than the chunk holds.
            lost |= off < data.len();
            let had_fds = !fds.is_empty();
            p.in_fds.extend(fds);
            slot.delivered += n;
            if n < asked && !had_fds {
                slot.end = RxEnd::Dry;
            }
        }
        Some(p) if !p.closing => lost = true,
        _ => {}
    }
    ring.recycle(b);
    if lost {
        // Too many fds in one read (as a plain recvmsg's MSG_CTRUNC),
        // or bytes that had nowhere to go: the stream cannot go on.
        slot.end = RxEnd::Closed;
        ev.error = true;
    }
    events.push(ev);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_user_data() {
        for t in [
            0,
            1,
            42,
            1 << 40,
            usize::MAX - 1,
            usize::MAX - 4096,
            usize::MAX - 5000,
        ] {
            for kind in [KIND_POLL, KIND_WRITE, KIND_SEND, KIND_RECV, KIND_RPOLL] {
                assert_eq!(decode(encode(kind, t)), (kind, t), "token {t:#x}");
            }
        }
    }

    /// The probe passes unless io_uring is disabled by the sysctl (then
    /// the backend must refuse, so the loop uses epoll) or, outside CI, by
    /// a seccomp filter. Whether the wait is combined with the sends
    /// depends on the kernel's link semantics: said, not asserted.
    #[test]
    fn probe() {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim() != "0")
            .unwrap_or(false);
        match Uring::new() {
            Ok(u) => {
                assert!(!disabled, "io_uring is disabled, yet the probe passed");
                eprintln!("sends and wait in one io_uring_enter: {}", u.linked);
                eprintln!("receives through the ring: {}", u.ring_receives());
                eprintln!("multishot receives: {}", u.multishot());
            }
            Err(e) => assert!(
                disabled || std::env::var_os("CI").is_none(),
                "io_uring probe failed under CI: {e}"
            ),
        }
    }
}
