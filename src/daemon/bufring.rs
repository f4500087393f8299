//! A ring of provided buffers for io_uring receives
//! (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer when data
//! arrives, so an idle connection with a receive in flight holds no
//! memory; the buffer is given back as soon as its bytes are copied out.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group the receives name.
pub(super) const GROUP: u16 = 0;
/// Buffers in the ring (a power of two). One is taken per receive that
/// completes and given back when its completion is reaped, so this bounds
/// the receives one wait can complete; beyond it a receive fails with
/// ENOBUFS and the loop reads that connection itself.
const COUNT: u16 = 64;
/// Bytes per buffer: what one receive brings at most.
pub(super) const SIZE: usize = 16 * 1024;

pub(super) struct BufRing {
    /// COUNT entries, page-aligned (mmap), shared with the kernel; the
    /// tail is in the first entry's last two bytes.
    ring: NonNull<BufRingEntry>,
    ring_len: usize,
    /// COUNT * SIZE bytes the kernel writes into (a buffer only while it
    /// is in the ring, i.e. not between its completion and its recycle).
    bufs: NonNull<u8>,
    /// The next tail to publish.
    tail: u16,
}

impl BufRing {
    /// Maps the ring and the buffers and registers them with `ring`.
    pub fn new(ring: &IoUring) -> io::Result<BufRing> {
        let ring_len = (COUNT as usize * std::mem::size_of::<BufRingEntry>()).max(4096);
        let bufs_len = COUNT as usize * SIZE;
        let map = |len: usize| -> io::Result<NonNull<u8>> {
            // SAFETY: an anonymous private mapping takes no pointers; the
            // result is checked before use.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))
        };
        let r = map(ring_len)?;
        let bufs = match map(bufs_len) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: `r` was just mapped with `ring_len` bytes.
                unsafe { libc::munmap(r.as_ptr().cast(), ring_len) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring: r.cast(),
            ring_len,
            bufs,
            tail: 0,
        };
        // SAFETY: the ring memory is mapped for `ring_len` bytes (at least
        // COUNT entries), page-aligned, and lives as long as `br`, which
        // the owner drops only after the io_uring (see `Uring`'s field
        // order), so the registration never outlives it.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                br.ring.as_ptr() as u64,
                COUNT,
                GROUP,
                0,
            )?;
        }
        for bid in 0..COUNT {
            br.put(bid);
        }
        br.publish();
        Ok(br)
    }

    /// The first `len` bytes of buffer `bid`, which a completion just
    /// handed over (so the kernel no longer writes it until
    /// [`BufRing::recycle`]).
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= COUNT {
            return &[];
        }
        let len = len.min(SIZE);
        // SAFETY: buffer `bid` lies inside the COUNT * SIZE mapped bytes;
        // a completion gave it back to user space, so nothing writes it
        // while this shared borrow (tied to `&self`, and the loop recycles
        // it only through `&mut self`) lives.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(bid as usize * SIZE), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if bid < COUNT {
            self.put(bid);
            self.publish();
        }
    }

    fn put(&mut self, bid: u16) {
        let idx = (self.tail & (COUNT - 1)) as usize;
        // SAFETY: `idx` < COUNT, inside the mapped ring; the kernel reads
        // entries only up to the published tail, and this one is past it
        // until `publish`.
        let e = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: as above, bufs + bid * SIZE is inside the mapping.
        let addr = unsafe { self.bufs.as_ptr().add(bid as usize * SIZE) };
        e.set_addr(addr as u64);
        e.set_len(SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries put so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the u16 at byte 14 of the page-aligned ring
        // (struct io_uring_buf_ring), aligned for a u16 and shared with the
        // kernel, which only reads it: an atomic release store orders the
        // entries' writes before it.
        let tail = unsafe { &*(self.ring.as_ptr().cast::<u8>().add(14).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both were mapped in `new` with these lengths and are
        // unmapped once; the io_uring that used them is gone (dropped
        // first), and pages the kernel had pinned stay valid for it.
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), self.ring_len);
            libc::munmap(self.bufs.as_ptr().cast(), COUNT as usize * SIZE);
        }
    }
}
