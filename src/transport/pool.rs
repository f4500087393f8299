//! Reference-counted values whose allocations are reused.
//!
//! [`Pooled<T>`] is a single-threaded reference-counted handle, like `Rc`,
//! except that when the last handle goes the value is *recycled* (cleared
//! in place, see [`Recycle`]) and its slot kept on a per-type free list of
//! the thread, so the next [`Pooled::new`] or [`Pooled::reuse`] takes it
//! without asking the allocator. That is what lets the hot path (a message
//! read, its header rewritten, the message queued for one or many
//! recipients, written, dropped) run without an allocation per message.
//!
//! Each free list keeps at most [`Recycle::KEEP`] slots; beyond that the
//! slot is freed as an `Rc` would be.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::thread::LocalKey;

/// A type whose values can be kept for reuse.
pub trait Recycle: Default + 'static {
    /// Free slots kept per thread.
    const KEEP: usize = 256;
    /// Clears the value for its next use, releasing whatever it must not
    /// keep (fds, charges, references to other buffers); it may keep its own
    /// capacity.
    fn recycle(&mut self);
    /// The thread's free list of this type.
    fn free_list() -> &'static LocalKey<FreeList<Self>>;
}

/// The free slots of one type on one thread.
pub struct FreeList<T: Recycle> {
    slots: RefCell<Vec<NonNull<Slot<T>>>>,
}

impl<T: Recycle> Default for FreeList<T> {
    fn default() -> Self {
        FreeList {
            slots: RefCell::new(Vec::new()),
        }
    }
}

impl<T: Recycle> Drop for FreeList<T> {
    fn drop(&mut self) {
        for p in self.slots.get_mut().drain(..) {
            // SAFETY: every pointer on the free list came from
            // Box::into_raw in `alloc_slot`, has no handle left (it was put
            // here when its count reached zero) and is on the list once, so
            // it is rebuilt into its Box exactly once.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

/// A value and its reference count.
struct Slot<T> {
    refs: Cell<usize>,
    value: T,
}

/// A shared, immutable, reference-counted value whose slot is reused.
/// Not `Send`: the count is a plain `Cell`, and slots return to the free
/// list of the thread that drops them.
pub struct Pooled<T: Recycle> {
    ptr: NonNull<Slot<T>>,
    _owns: PhantomData<Slot<T>>,
}

fn alloc_slot<T: Recycle>(value: T) -> NonNull<Slot<T>> {
    let b = Box::new(Slot {
        refs: Cell::new(1),
        value,
    });
    NonNull::from(Box::leak(b))
}

/// A free slot of this thread, if any.
fn take_free<T: Recycle>() -> Option<NonNull<Slot<T>>> {
    T::free_list()
        .try_with(|l| l.slots.borrow_mut().pop())
        .ok()
        .flatten()
}

impl<T: Recycle> Pooled<T> {
    /// Shares `value` (in a reused slot when one is free; the slot's old
    /// value is dropped).
    pub fn new(value: T) -> Pooled<T> {
        match take_free::<T>() {
            Some(ptr) => {
                // SAFETY: a slot on the free list has no handle and no
                // borrow (its count reached zero), so this is the only
                // access to it; it stays allocated until freed by us.
                unsafe {
                    let slot = &mut *ptr.as_ptr();
                    slot.value = value;
                    slot.refs.set(1);
                }
                Pooled {
                    ptr,
                    _owns: PhantomData,
                }
            }
            None => Pooled {
                ptr: alloc_slot(value),
                _owns: PhantomData,
            },
        }
    }

    /// Shares a value that `fill` sets up in a recycled value (keeping its
    /// capacity), or in `T::default()` when no slot is free.
    pub fn reuse(fill: impl FnOnce(&mut T)) -> Pooled<T> {
        let ptr = take_free::<T>().unwrap_or_else(|| alloc_slot(T::default()));
        // SAFETY: the slot was just taken off the free list or allocated:
        // no handle or borrow refers to it, so this exclusive borrow is
        // the only one; it ends before the handle is made.
        unsafe {
            let slot = &mut *ptr.as_ptr();
            slot.refs.set(1);
            fill(&mut slot.value);
        }
        Pooled {
            ptr,
            _owns: PhantomData,
        }
    }

    /// Whether this is the only handle.
    pub fn is_unique(this: &Pooled<T>) -> bool {
        this.slot().refs.get() == 1
    }

    /// The value, mutably, when this is the only handle.
    pub fn get_mut(this: &mut Pooled<T>) -> Option<&mut T> {
        if Pooled::is_unique(this) {
            // SAFETY: this handle is the only one and it is borrowed
            // mutably for the lifetime of the result, so no other
            // reference to the value can exist meanwhile.
            Some(unsafe { &mut (*this.ptr.as_ptr()).value })
        } else {
            None
        }
    }

    /// Whether two handles share one value.
    pub fn ptr_eq(a: &Pooled<T>, b: &Pooled<T>) -> bool {
        a.ptr == b.ptr
    }

    fn slot(&self) -> &Slot<T> {
        // SAFETY: while a handle exists its count is at least one, so the
        // slot is allocated and initialized; only shared access is handed
        // out through a shared handle.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Recycle> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.slot().value
    }
}

impl<T: Recycle> Clone for Pooled<T> {
    fn clone(&self) -> Self {
        let r = &self.slot().refs;
        r.set(r.get() + 1);
        Pooled {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: Recycle> Drop for Pooled<T> {
    fn drop(&mut self) {
        let r = &self.slot().refs;
        let n = r.get() - 1;
        r.set(n);
        if n > 0 {
            return;
        }
        // SAFETY: the count reached zero, so this was the last handle and
        // no borrow of the value is alive (borrows come from handles);
        // recycling may drop other pooled values but never this slot.
        unsafe { (*self.ptr.as_ptr()).value.recycle() };
        let ptr = self.ptr;
        let kept = T::free_list()
            .try_with(|l| {
                let mut s = l.slots.borrow_mut();
                if s.len() >= T::KEEP {
                    return false;
                }
                if s.capacity() == 0 {
                    s.reserve_exact(T::KEEP);
                }
                s.push(ptr);
                true
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: the slot came from Box::into_raw (`alloc_slot`), has
            // no handle left and was not put on a free list, so it is
            // freed exactly once here.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
        }
    }
}

impl<T: Recycle + std::fmt::Debug> std::fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.slot().value.fmt(f)
    }
}

thread_local! {
    static BYTE_BUFS: FreeList<Vec<u8>> = FreeList::default();
}

/// Header buffers (and the bus's own small messages).
impl Recycle for Vec<u8> {
    fn recycle(&mut self) {
        // A large one (a big driver reply) is not worth keeping.
        if self.capacity() > 4096 {
            *self = Vec::new();
        } else {
            self.clear();
        }
    }
    fn free_list() -> &'static LocalKey<FreeList<Self>> {
        &BYTE_BUFS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shared_and_slots_reused() {
        let a = Pooled::new(vec![1u8, 2, 3]);
        let b = a.clone();
        assert!(Pooled::ptr_eq(&a, &b));
        assert!(!Pooled::is_unique(&a));
        drop(a);
        assert_eq!(&b[..], &[1, 2, 3]);
        let first = b.ptr;
        drop(b);
        // The slot comes back, cleared, with its capacity.
        let c = Pooled::reuse(|v: &mut Vec<u8>| {
            assert!(v.is_empty());
            assert!(v.capacity() >= 3);
            v.push(9);
        });
        assert_eq!(c.ptr, first);
        assert_eq!(&c[..], &[9]);
        let mut c = c;
        Pooled::get_mut(&mut c).unwrap().push(10);
        assert_eq!(&c[..], &[9, 10]);
    }
}
