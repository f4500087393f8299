//! Receive buffers that messages are sliced out of.
//!
//! A connection reads into a [`Chunk`], a fixed-size buffer shared through
//! [`Pooled`]: every complete message framed in it becomes a [`MsgBytes`]
//! that holds a handle on the chunk and a range, with no copy. The chunk's
//! bytes below its *frozen* mark never change again (messages point only
//! there); bytes above it are written by the one [`RxBuf`] that owns the
//! chunk. When every byte read has been framed and no message still holds
//! the chunk, the next read starts again at its beginning, so a connection
//! that sends one message per write keeps reusing the same few kilobytes.
//! Otherwise, once little room is left, the unframed tail (part of one
//! message, smaller than [`CHUNK_SIZE`]) moves to a fresh chunk taken from
//! the pool; the old chunk goes back to the pool when its last message is
//! written.
//!
//! The state a connection carries between reads is plain data: the bytes
//! of [`RxBuf::data`] (received, not yet framed).

use std::cell::Cell;
use std::ops::{Deref, Range};
use std::ptr::NonNull;
use std::thread::LocalKey;

use super::pool::{FreeList, Pooled, Recycle};

/// Size of a receive chunk. A message at least this large is received into
/// a buffer of its own instead (see `broker::peer::LargeRx`), so the tail
/// of a message always fits in a fresh chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Below this much room, a chunk that can be compacted is left for a fresh
/// one before the next read.
const MIN_ROOM: usize = 4096;

/// A receive buffer: `CHUNK_SIZE` bytes, of which those below `frozen` are
/// immutable.
pub struct Chunk {
    ptr: NonNull<u8>,
    frozen: Cell<usize>,
}

impl Default for Chunk {
    fn default() -> Self {
        let b: Box<[u8]> = vec![0u8; CHUNK_SIZE].into_boxed_slice();
        Chunk {
            // Box::into_raw of a boxed slice is never null.
            ptr: NonNull::from(Box::leak(b)).cast(),
            frozen: Cell::new(0),
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), CHUNK_SIZE);
        // SAFETY: `ptr` came from Box::leak of a boxed slice of exactly
        // CHUNK_SIZE bytes in `default` and is freed only here, once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk(frozen={})", self.frozen.get())
    }
}

impl Chunk {
    /// The frozen bytes in `r`, or None past the frozen mark.
    fn frozen_slice(&self, r: Range<usize>) -> Option<&[u8]> {
        if r.start > r.end || r.end > self.frozen.get() {
            return None;
        }
        // SAFETY: the buffer holds CHUNK_SIZE initialized bytes for the
        // chunk's lifetime; `r` lies below the frozen mark, which only
        // grows while the chunk is shared, and no byte below it is ever
        // written again (the writer only writes above it, and resetting
        // the mark needs the only handle, see `RxBuf::make_room`), so a
        // shared slice there is never aliased by a mutable one.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(r.start), r.end - r.start) })
    }
}

// Chunks never move between threads (Pooled is !Send).
thread_local! {
    static CHUNKS: FreeList<Chunk> = FreeList::default();
}

impl Recycle for Chunk {
    /// A few chunks are kept (512 KiB); idle connections hold none.
    const KEEP: usize = 8;
    fn recycle(&mut self) {
        self.frozen.set(0);
    }
    fn free_list() -> &'static LocalKey<FreeList<Self>> {
        &CHUNKS
    }
}

/// The bytes of one received message: a range of a shared chunk, or a
/// buffer of its own (a large message).
#[derive(Debug, Default)]
pub enum MsgBytes {
    /// No bytes (a recycled message).
    #[default]
    Empty,
    /// Bytes `range` of `chunk` (frozen).
    Chunk {
        /// The chunk.
        chunk: Pooled<Chunk>,
        /// Where the message lies in it.
        range: Range<usize>,
    },
    /// A buffer of its own.
    Owned(Vec<u8>),
}

impl Deref for MsgBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            MsgBytes::Empty => &[],
            // The range was frozen when the message was framed.
            MsgBytes::Chunk { chunk, range } => chunk.frozen_slice(range.clone()).unwrap_or(&[]),
            MsgBytes::Owned(v) => v,
        }
    }
}

// SAFETY: deref returns `[]` for Empty; for Owned, the Vec's buffer, which
// changes only through `&mut`; for Chunk, the chunk's bytes in `range`
// once `range` lies below the chunk's frozen mark, `[]` before. The mark
// only grows while the chunk is shared (this value holds a handle; it is
// reset only in `recycle`, when no handle is left), and bytes below it
// are never written again (see `Chunk::frozen_slice`). So once a deref has
// returned bytes, every later one returns the same bytes.
unsafe impl crate::wire::parsed::StableBytes for MsgBytes {}

impl From<Vec<u8>> for MsgBytes {
    fn from(v: Vec<u8>) -> Self {
        MsgBytes::Owned(v)
    }
}

/// A connection's receive buffer: bytes read, not yet framed, in a chunk.
#[derive(Debug, Default)]
pub struct RxBuf {
    chunk: Option<Pooled<Chunk>>,
    /// First byte not yet framed.
    start: usize,
}

impl RxBuf {
    /// The bytes received and not yet taken.
    pub fn data(&self) -> &[u8] {
        match &self.chunk {
            Some(c) => c.frozen_slice(self.start..c.frozen.get()).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Number of bytes received and not yet taken.
    pub fn len(&self) -> usize {
        self.chunk
            .as_ref()
            .map_or(0, |c| c.frozen.get() - self.start)
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Takes the first `n` buffered bytes as a message (no copy).
    pub fn take(&mut self, n: usize) -> MsgBytes {
        let n = n.min(self.len());
        let Some(c) = &self.chunk else {
            return MsgBytes::Empty;
        };
        let range = self.start..self.start + n;
        self.start += n;
        MsgBytes::Chunk {
            chunk: c.clone(),
            range,
        }
    }

    /// Reads into the room after the buffered bytes: `read` gets at most
    /// `max` bytes of room and returns how many it filled.
    pub fn fill<E>(
        &mut self,
        max: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let c = self.make_room();
        let from = c.frozen.get();
        let room = (CHUNK_SIZE - from).min(max);
        // SAFETY: bytes from the frozen mark on are never handed out
        // (slices stop below the mark) and only this RxBuf, which owns the
        // chunk's writing end and is borrowed mutably here, writes them; the
        // buffer holds CHUNK_SIZE initialized bytes and from + room <=
        // CHUNK_SIZE.
        let buf = unsafe { std::slice::from_raw_parts_mut(c.ptr.as_ptr().add(from), room) };
        let n = read(buf)?.min(room);
        c.frozen.set(from + n);
        Ok(n)
    }

    /// Copies as much of `data` as the chunk has room for after the
    /// buffered bytes (bytes another reader already took from the socket);
    /// returns how many.
    pub fn fill_from(&mut self, data: &[u8]) -> usize {
        let mut off = 0;
        while off < data.len() {
            let got = self.fill(data.len() - off, |buf| {
                let k = buf.len();
                buf.copy_from_slice(&data[off..off + k]);
                Ok::<usize, ()>(k)
            });
            match got {
                Ok(k) if k > 0 => off += k,
                _ => break,
            }
        }
        off
    }

    /// Releases the chunk if nothing is buffered and no message holds it
    /// (an idle connection then holds no receive memory). A chunk that
    /// messages still hold is kept, so the next reads pack in after them
    /// instead of pinning another chunk.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && self.chunk.as_ref().is_some_and(Pooled::is_unique) {
            self.chunk = None;
            self.start = 0;
        }
    }

    /// The chunk to read into next, with room for at least one byte.
    fn make_room(&mut self) -> &Pooled<Chunk> {
        let len = self.len();
        let reset = match &mut self.chunk {
            None => false,
            Some(c) => {
                let room = CHUNK_SIZE - c.frozen.get();
                if len == 0 && Pooled::is_unique(c) {
                    // Nothing buffered and no message holds the chunk:
                    // start again at its beginning.
                    if let Some(m) = Pooled::get_mut(c) {
                        m.frozen.set(0);
                    }
                    self.start = 0;
                    false
                } else {
                    room < MIN_ROOM && (self.start > 0 || room == 0)
                }
            }
        };
        if self.chunk.is_none() || reset {
            let fresh = Pooled::reuse(|c: &mut Chunk| c.frozen.set(0));
            if let Some(old) = &self.chunk {
                let tail = self.data();
                // SAFETY: `fresh` came from the pool or was just made, so
                // this is its only handle and nothing reads it; `tail` is at
                // most CHUNK_SIZE bytes (a whole chunk's unframed part) and
                // lives in another chunk (`old` is still held).
                unsafe {
                    debug_assert!(!Pooled::ptr_eq(old, &fresh));
                    std::ptr::copy_nonoverlapping(tail.as_ptr(), fresh.ptr.as_ptr(), tail.len());
                }
                fresh.frozen.set(tail.len());
            }
            self.chunk = Some(fresh);
            self.start = 0;
        }
        // Set just above.
        self.chunk.get_or_insert_with(|| Pooled::reuse(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rx: &mut RxBuf, b: &[u8]) {
        let n = rx
            .fill::<()>(b.len(), |buf| {
                buf[..b.len()].copy_from_slice(b);
                Ok(b.len())
            })
            .unwrap();
        assert_eq!(n, b.len());
    }

    #[test]
    fn messages_are_slices_and_the_chunk_is_reused() {
        let mut rx = RxBuf::default();
        put(&mut rx, b"hello world");
        let m = rx.take(5);
        assert_eq!(&m[..], b"hello");
        assert_eq!(rx.data(), b" world");
        rx.consume(6);
        assert!(rx.is_empty());
        // A message still holds the chunk: the next read goes after it.
        put(&mut rx, b"abc");
        assert_eq!(&m[..], b"hello");
        assert_eq!(rx.data(), b"abc");
        let n = rx.take(3);
        drop(m);
        drop(n);
        // Nothing holds it now: the next read starts at its beginning.
        put(&mut rx, b"xy");
        assert_eq!(rx.data(), b"xy");
        let MsgBytes::Chunk { range, .. } = rx.take(2) else {
            panic!("not a slice");
        };
        assert_eq!(range, 0..2);
    }

    #[test]
    fn a_tail_moves_to_a_fresh_chunk_when_room_runs_out() {
        let mut rx = RxBuf::default();
        let big = vec![7u8; CHUNK_SIZE - 100];
        put(&mut rx, &big);
        let held = rx.take(CHUNK_SIZE - 200);
        // 100 bytes of an unfinished message stay buffered.
        assert_eq!(rx.len(), 100);
        put(&mut rx, b"more");
        assert_eq!(rx.len(), 104);
        assert_eq!(&rx.data()[100..], b"more");
        assert_eq!(held.len(), CHUNK_SIZE - 200);
        assert!(held.iter().all(|&b| b == 7));
    }
}
