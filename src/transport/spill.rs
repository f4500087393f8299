//! Bytes already taken from a connection's socket that had no room to go
//! yet, with the fds that came with them. io_uring's multishot receives
//! bring whatever arrives, whether or not the connection's receive chunk
//! has room, or its input is wanted now (a large message read in place, a
//! turn's budget spent); what does not fit waits here, and the loop reads
//! it before the socket, as if it were still in the socket. With epoll it
//! stays empty.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Room a segment's buffer starts with: one io_uring receive's bytes at
/// most (src/daemon/bufring.rs), so a reused buffer never grows.
const SEGMENT_ROOM: usize = 16 * 1024;
/// Segment buffers kept for reuse, all connections together, so a flow
/// through the spill allocates nothing after the first: made all at once
/// when the spill is first used (their pages are touched only as they
/// fill). One connection's spill holds at most this many: the io_uring
/// backend cancels its receive past 64 KiB (4 segments), and one wait
/// completes at most 64 receives (its buffer ring's size).
const KEEP: usize = 72;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// Whether the pool was made.
    static MADE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A buffer for `data`, reused if one is free.
fn buffer_for(data: &[u8]) -> Vec<u8> {
    if !MADE.with(|m| m.replace(true)) {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            f.reserve(KEEP);
            while f.len() < KEEP {
                f.push(Vec::with_capacity(SEGMENT_ROOM));
            }
        });
    }
    let mut v = FREE
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(SEGMENT_ROOM));
    v.clear();
    v.extend_from_slice(data);
    v
}

/// Keeps an emptied buffer for reuse (unless enough are kept, or it grew
/// past the usual size).
fn recycle(v: Vec<u8>) {
    if v.capacity() <= SEGMENT_ROOM {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(v);
            }
        });
    }
}

/// One receive's worth: its bytes, and its fds, handed over with its
/// first byte (as recvmsg hands a unix stream's fds with the first byte
/// sent with them).
#[derive(Debug)]
struct Segment {
    data: Vec<u8>,
    /// Bytes of `data` already read.
    at: usize,
    fds: Vec<OwnedFd>,
}

/// What a connection's receives brought that the loop has not read yet.
#[derive(Debug, Default)]
pub struct Spill {
    segments: VecDeque<Segment>,
    /// Unread bytes, all segments together.
    bytes: usize,
}

impl Spill {
    /// Nothing unread.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && self.segments.is_empty()
    }

    /// Unread bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Keeps `data` (and `fds`, which came with its first byte) after what
    /// is here.
    pub fn push(&mut self, data: &[u8], fds: Vec<OwnedFd>) {
        if data.is_empty() && fds.is_empty() {
            return;
        }
        self.bytes += data.len();
        if self.segments.capacity() == 0 {
            self.segments.reserve(KEEP);
        }
        self.segments.push_back(Segment {
            data: buffer_for(data),
            at: 0,
            fds,
        });
    }

    /// Drops the front segment once it is read.
    fn pop_if_read(&mut self) {
        if self.segments.front().is_some_and(|s| s.at == s.data.len()) {
            if let Some(seg) = self.segments.pop_front() {
                recycle(seg.data);
            }
        }
    }

    /// Reads into `buf` as a recvmsg would: from one segment at most, with
    /// that segment's fds if this is its first byte. Returns the bytes
    /// read (0 only when empty or `buf` is).
    pub fn read(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> usize {
        let Some(seg) = self.segments.front_mut() else {
            return 0;
        };
        if buf.is_empty() {
            return 0;
        }
        fds.append(&mut seg.fds);
        let n = buf.len().min(seg.data.len() - seg.at);
        buf[..n].copy_from_slice(&seg.data[seg.at..seg.at + n]);
        seg.at += n;
        self.bytes -= n;
        self.pop_if_read();
        n
    }

    /// The front segment's unread bytes.
    pub fn front(&self) -> &[u8] {
        self.segments.front().map_or(&[], |s| &s.data[s.at..])
    }

    /// Drops the first `n` bytes of the front segment (at most all of
    /// them), handing its fds to `fds` if any were still held.
    pub fn consume(&mut self, n: usize, fds: &mut impl Extend<OwnedFd>) {
        let Some(seg) = self.segments.front_mut() else {
            return;
        };
        fds.extend(seg.fds.drain(..));
        let n = n.min(seg.data.len() - seg.at);
        seg.at += n;
        self.bytes -= n;
        self.pop_if_read();
    }

    /// The unread bytes in order (for the state a re-exec saves).
    pub fn bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(|s| &s.data[s.at..])
    }

    /// The fds not handed over yet, in order.
    pub fn raw_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.fds.iter().map(|f| f.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn reads_in_order_with_fds_at_their_first_byte() {
        let mut s = Spill::default();
        s.push(b"abc", Vec::new());
        s.push(b"de", vec![fd()]);
        s.push(b"f", Vec::new());
        assert_eq!(s.len(), 6);
        let mut buf = [0u8; 2];
        let mut fds = Vec::new();
        assert_eq!(s.read(&mut buf, &mut fds), 2);
        assert_eq!(&buf, b"ab");
        assert!(fds.is_empty());
        // A read never crosses into the next segment (whose fds come
        // with its first byte).
        assert_eq!(s.read(&mut buf, &mut fds), 1);
        assert_eq!(&buf[..1], b"c");
        assert!(fds.is_empty());
        assert_eq!(s.raw_fds().count(), 1);
        let mut big = [0u8; 16];
        assert_eq!(s.read(&mut big, &mut fds), 2);
        assert_eq!(&big[..2], b"de");
        assert_eq!(fds.len(), 1);
        assert_eq!(s.read(&mut big, &mut fds), 1);
        assert_eq!(&big[..1], b"f");
        assert!(s.is_empty());
        assert_eq!(s.read(&mut big, &mut fds), 0);
    }

    #[test]
    fn consumed_bytes_are_gone_and_their_fds_handed_over() {
        let mut s = Spill::default();
        s.push(b"xy", vec![fd()]);
        assert_eq!(s.front(), b"xy");
        let mut fds = Vec::new();
        s.consume(1, &mut fds);
        assert_eq!((s.front(), s.len(), fds.len()), (&b"y"[..], 1, 1));
        s.consume(5, &mut fds);
        assert!(s.is_empty());
        assert_eq!(s.front(), b"");
    }

    #[test]
    fn saved_bytes_are_the_unread_ones() {
        let mut s = Spill::default();
        s.push(b"hello ", Vec::new());
        s.push(b"world", vec![fd()]);
        let mut buf = [0u8; 3];
        s.read(&mut buf, &mut Vec::new());
        let all: Vec<u8> = s.bytes().flatten().copied().collect();
        assert_eq!(all, b"lo world");
        assert_eq!(s.len(), 8);
    }
}
