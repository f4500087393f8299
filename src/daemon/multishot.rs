//! io_uring's multishot receives (IORING_RECV_MULTISHOT with provided
//! buffers): one IORING_OP_RECVMSG armed on a connection's socket brings
//! every arrival, each in a buffer of the ring laid out as
//! `io_uring_recvmsg_out`, the control messages (SCM_RIGHTS) and the
//! bytes, until it is cancelled or ends (no buffer left, an error, end of
//! stream). Nothing is armed again per message.
//!
//! The loop decides what it reads and when (turn budgets, back-pressure,
//! large messages read in place, splices); a multishot receive takes what
//! arrives regardless. So a completion's bytes go to the connection's
//! receive chunk only while nothing is waiting before them and the chunk
//! has room; otherwise to its spill (transport::spill), which the loop
//! reads before the socket. Bytes are never reordered: with
//! IORING_SETUP_DEFER_TASKRUN the receive runs only inside this thread's
//! io_uring_enter, every completion is reaped before a turn reads, and
//! the loop's own reads take the spill first. The spill is bounded: past
//! [`SPILL_CAP`] the receive is cancelled, and so it is when fds arrive
//! (they wait in the spill, read one recvmsg's worth at a time, so the
//! fd limits hold a sender back as with epoll), when the connection is
//! throttled, or its turn ends in a state the loop reads
//! itself (a large message, a splice, a wait). A body that could be
//! spliced takes the receive back first (`Peer::rx_release`), and what
//! of it is in the spill already goes into its pipe first. A connection
//! whose messages are a receive chunk or more on average gets one-shot
//! receives instead (`Uring::turn_drained`): a multishot one takes up to
//! half a megabyte of each body through the ring's buffers and the spill
//! before the loop sees its header (bench/README.md).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types};

use crate::broker::bus::Bus;
use crate::transport::rxbuf::CHUNK_SIZE;

use super::backend::Event;
use super::bufring::{self, BufRing};
use super::uring::{Cqe, RxEnd, RxSlot, CMSG_WORDS};

/// Spilled bytes past which a connection's multishot receive is cancelled
/// (the loop then reads the socket itself once the spill is read).
pub(super) const SPILL_CAP: usize = CHUNK_SIZE;

/// Whether multishot receives may be used: not with
/// `BUSBAR_URING_MULTISHOT=off` (one-shot receives then, for comparisons;
/// see man/busbar.1).
pub(super) fn wanted() -> bool {
    !matches!(
        std::env::var("BUSBAR_URING_MULTISHOT").as_deref(),
        Ok("off")
    )
}

/// The multishot receive for `slot`'s socket; its msghdr (the slot's,
/// boxed) only says how much room each buffer keeps for control messages.
pub(super) fn entry(slot: &mut RxSlot, user_data: u64) -> squeue::Entry {
    slot.msg.msg_name = std::ptr::null_mut();
    slot.msg.msg_namelen = 0;
    slot.msg.msg_iov = std::ptr::null_mut();
    slot.msg.msg_iovlen = 0;
    slot.msg.msg_control = std::ptr::null_mut();
    slot.msg.msg_controllen = std::mem::size_of_val(&slot.cmsg) as _;
    slot.msg.msg_flags = 0;
    opcode::RecvMsgMulti::new(types::Fd(slot.fd), &slot.msg, bufring::GROUP)
        .flags(libc::MSG_CMSG_CLOEXEC as u32)
        .build()
        .user_data(user_data)
}

/// sizeof(struct io_uring_recvmsg_out): four u32s (name, control and
/// payload lengths, flags) in front of each buffer's fields.
const RECVMSG_OUT_LEN: usize = 16;

/// What one completion of a multishot receive said.
pub(super) struct Arrival<'a> {
    pub payload: &'a [u8],
    /// The control messages did not fit (more fds than one read takes).
    pub ctrunc: bool,
}

/// Reads buffer `data` (the completion's `res` bytes) as laid out for
/// `msg`.
pub(super) fn parse<'a>(
    data: &'a [u8],
    msg: &libc::msghdr,
    fds: &mut Vec<OwnedFd>,
) -> Option<Arrival<'a>> {
    let out = types::RecvMsgOut::parse(data, msg).ok()?;
    let ctrunc = out.is_control_data_truncated() || out.flags() & libc::MSG_CTRUNC as u32 != 0;
    fds_in(out.control_data(), fds);
    // The payload follows the header and the name and control fields
    // (their lengths are the msghdr's).
    // size_t with glibc, socklen_t with musl.
    #[allow(clippy::unnecessary_cast)]
    let start = RECVMSG_OUT_LEN + msg.msg_namelen as usize + msg.msg_controllen as usize;
    let len = out.payload_data().len();
    Some(Arrival {
        payload: data.get(start..start + len)?,
        ctrunc,
    })
}

/// Takes the fds of the SCM_RIGHTS messages in `control` (control
/// messages as the kernel wrote them, at most [`CMSG_WORDS`] words).
pub(super) fn fds_in(control: &[u8], fds: &mut Vec<OwnedFd>) {
    let mut words = [0u64; CMSG_WORDS];
    let len = control.len().min(std::mem::size_of_val(&words));
    for (w, b) in words.iter_mut().zip(control[..len].chunks(8)) {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        *w = u64::from_ne_bytes(a);
    }
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = words.as_mut_ptr().cast();
    msg.msg_controllen = len as _;
    // SAFETY: `msg` describes `words`, of which the first `len` bytes are
    // control messages the kernel wrote (copied here, aligned as cmsghdr
    // needs); the CMSG_* macros only step through those bytes, bounded by
    // msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let end = (words.as_ptr() as usize + len).saturating_sub(data as usize);
                let bytes = ((*c).cmsg_len as usize)
                    .saturating_sub(libc::CMSG_LEN(0) as usize)
                    .min(end);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(
                        data.add(i * std::mem::size_of::<RawFd>()).cast::<RawFd>(),
                    );
                    // The kernel installed this descriptor for us with
                    // this SCM_RIGHTS message; nothing else owns it.
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
}

/// A completion of connection `token`'s multishot receive: its bytes go
/// to the receive chunk or the spill, its fds with them, and the loop is
/// told the connection is readable. Returns whether the slot can go (the
/// connection is gone and this was the receive's last completion); pushes
/// the id to `cancels` when its spill grew past [`SPILL_CAP`].
pub(super) fn received(
    slot: &mut RxSlot,
    bufs: &mut Option<BufRing>,
    bus: &mut Bus,
    events: &mut Vec<Event>,
    cqe: Cqe,
    cancels: &mut Vec<u64>,
) -> bool {
    let Cqe { token, res, flags } = cqe;
    let id = token as u64;
    let more = cqueue::more(flags);
    let bid = cqueue::buffer_select(flags);
    if !more {
        slot.recv_armed = false;
        slot.multi = false;
        slot.cancelling = false;
        if let Some(p) = bus.peer_mut(id) {
            p.rx_ring = false;
        }
    }
    let mut ev = Event {
        token,
        readable: true,
        ..Event::default()
    };
    let (Some(b), Some(ring)) = (bid, bufs.as_mut()) else {
        if slot.closed {
            return !more;
        }
        if res < 0 {
            match -res {
                // Ended (taken back, no buffer left, interrupted): the loop
                // reads the socket itself, from the next turn on.
                libc::ECANCELED | libc::ENOBUFS | libc::EAGAIN | libc::EINTR => {}
                _ => {
                    slot.end = RxEnd::Closed;
                    ev.error = true;
                }
            }
        } else if res == 0 {
            slot.end = RxEnd::Closed;
            ev.read_closed = true;
        }
        if !more || slot.end == RxEnd::Closed {
            events.push(ev);
        }
        return false;
    };
    if slot.closed {
        ring.recycle(b);
        return !more;
    }
    let mut fds = Vec::new();
    let data = ring.data(b, res.max(0) as usize);
    let Some(arrival) = parse(data, &slot.msg, &mut fds) else {
        ring.recycle(b);
        slot.end = RxEnd::Closed;
        ev.error = true;
        events.push(ev);
        return false;
    };
    let payload = arrival.payload;
    if payload.is_empty() && !arrival.ctrunc {
        // End of stream.
        ring.recycle(b);
        slot.end = RxEnd::Closed;
        ev.read_closed = true;
        events.push(ev);
        return false;
    }
    match bus.peer_mut(id) {
        Some(p) if !p.closing && !arrival.ctrunc => {
            let mut off = 0;
            // Bytes with fds wait in the spill, and the receive ends: the
            // loop reads them one read at a time, as a recvmsg brings
            // them, so max_incoming_unix_fds holds the sender back as
            // with epoll (the fds are not taken in ahead of it).
            let has_fds = !fds.is_empty();
            if has_fds && more && !slot.cancelling {
                slot.cancelling = true;
                cancels.push(id);
            }
            if !has_fds && p.rx_spill.is_empty() && p.large_rx.is_none() && p.splice_in.is_none() {
                off = p.inbuf.fill_from(payload);
            }
            if off > 0 {
                p.in_fds.extend(fds);
                slot.delivered += off;
                p.rx_spill.push(&payload[off..], Vec::new());
            } else {
                p.rx_spill.push(payload, fds);
            }
            if more && !slot.cancelling && p.rx_spill.len() > SPILL_CAP {
                slot.cancelling = true;
                cancels.push(id);
            }
        }
        Some(p) if !p.closing => {
            // Too many fds in one read (as a plain recvmsg's MSG_CTRUNC):
            // the stream cannot go on.
            slot.end = RxEnd::Closed;
            ev.error = true;
        }
        _ => {}
    }
    ring.recycle(b);
    events.push(ev);
    false
}

/// One completion the probe saw: the bytes, how many fds came (all
/// close-on-exec), and whether the receive goes on.
struct Seen {
    payload: Vec<u8>,
    fds: usize,
    cloexec: bool,
    more: bool,
}

/// Whether a multishot receive from the buffer ring brings each arrival
/// in its own completion, with its fd (close-on-exec), and says when the
/// stream ended.
pub(super) fn probe(u: &mut super::uring::Uring) -> std::io::Result<bool> {
    use std::os::unix::net::UnixStream;
    let (a, b) = UnixStream::pair()?;
    b.set_nonblocking(true)?;
    // Leaked (once, a few hundred bytes): the kernel may read its msghdr
    // until the receive ends, which an early return would not wait for.
    let slot: &'static mut RxSlot = Box::leak(Box::new(RxSlot::new(b.as_raw_fd())));
    let e = entry(slot, 1);
    u.push_entry(&e);
    let mut seen: Vec<Seen> = Vec::new();
    let collect = |u: &mut super::uring::Uring, seen: &mut Vec<Seen>| -> std::io::Result<()> {
        for (res, flags) in u.wait_completions(1)? {
            let more = cqueue::more(flags);
            let mut fds = Vec::new();
            let payload = match cqueue::buffer_select(flags) {
                Some(bid) => {
                    let p = u
                        .ring_buffer(bid, res.max(0) as usize)
                        .and_then(|d| parse(d, &slot.msg, &mut fds).map(|a| a.payload.to_vec()))
                        .unwrap_or_default();
                    u.recycle_buffer(bid);
                    p
                }
                None => Vec::new(),
            };
            let cloexec = fds.iter().all(|f| {
                nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
                    .is_ok_and(|fl| fl & libc::FD_CLOEXEC != 0)
            });
            seen.push(Seen {
                payload,
                fds: fds.len(),
                cloexec,
                more,
            });
        }
        Ok(())
    };
    let fd_sent = a.as_raw_fd();
    for (i, part) in [&b"one"[..], b"two"].into_iter().enumerate() {
        let cm = [fd_sent];
        let with_fd = [nix::sys::socket::ControlMessage::ScmRights(&cm)];
        let cmsgs: &[nix::sys::socket::ControlMessage] = if i == 0 { &with_fd } else { &[] };
        nix::sys::socket::sendmsg::<()>(
            a.as_raw_fd(),
            &[std::io::IoSlice::new(part)],
            cmsgs,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )?;
        for _ in 0..10 {
            if seen.len() > i {
                break;
            }
            collect(u, &mut seen)?;
        }
    }
    drop(a);
    // The end of the stream, then the end of the receive (cancelled if it
    // goes on).
    for tries in 0..10 {
        if seen.last().is_some_and(|s| !s.more) {
            break;
        }
        if tries == 3 {
            u.push_entry(&opcode::AsyncCancel::new(1).build().user_data(0));
        }
        collect(u, &mut seen)?;
    }
    let ended = seen.last().is_some_and(|s| !s.more);
    let first = seen.first();
    let ok = seen.len() >= 3
        && first.is_some_and(|s| s.payload == b"one" && s.fds == 1 && s.cloexec && s.more)
        && seen[1].payload == b"two"
        && seen[1].fds == 0
        && seen[1].more
        && seen[2].payload.is_empty()
        && ended;
    if !ended {
        // Still armed: its memory must outlive it (leaked above); the
        // backend is not used.
        return Ok(false);
    }
    Ok(ok)
}
