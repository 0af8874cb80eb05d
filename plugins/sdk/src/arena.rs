//! The plugin's global allocator: a bump arena in the module's static memory, then the
//! system allocator.
//!
//! The gateway runs every evaluation in a fresh instance and drops it after one call, so
//! memory a plugin frees is never worth reusing, and the general-purpose allocator's work is
//! wasted: wasi-libc's `malloc` sets up its state on the first allocation of every fresh
//! instance, keeps free lists on every `free`, and the host's passing of the request alone is
//! some thirty allocations (one per string and list). A bump is a few instructions and `free`
//! does nothing; measured in docs/BENCHMARKS.md ("Policy chain"), about 3 µs less per chain
//! of four at the median. The arena is zero-initialised static memory: it adds 64 KiB to the
//! initial memory, nothing to the component's size, and the host resets only the pages a call
//! touched. Allocations that do not fit go to the system allocator, as before.
//!
//! On by default (feature `arena-allocator`); a plugin that sets its own
//! `#[global_allocator]` turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes served from the arena. A request with its strings, a parsed config and the answer
/// take a few KiB; the rest is headroom before the system allocator takes over.
const ARENA_BYTES: usize = 64 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the bytes are only handed out by `BumpThenSystem`, each range to one allocation.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

/// Offset of the first free byte in [`ARENA`].
static USED: AtomicUsize = AtomicUsize::new(0);

pub struct BumpThenSystem;

impl BumpThenSystem {
    fn base() -> usize {
        ARENA.0.get() as usize
    }

    fn owns(ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        addr >= Self::base() && addr < Self::base() + ARENA_BYTES
    }

    /// A fresh range of the arena, or `None` when it does not fit.
    fn bump(layout: Layout) -> Option<*mut u8> {
        let base = Self::base();
        let mut found = None;
        // Plugins are single-threaded; the atomic only keeps this free of `static mut`.
        let _ = USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            let start = (base + used).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > ARENA_BYTES {
                return None;
            }
            found = Some(start);
            Some(end)
        });
        found.map(|start| (base + start) as *mut u8)
    }
}

// SAFETY: `bump` hands out disjoint, aligned ranges of a static array that lives as long as the
// instance; other allocations are the system allocator's, and freed by it.
unsafe impl GlobalAlloc for BumpThenSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: same contract as ours.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::bump(layout) {
            // The arena is zero at start, `USED` only grows, and bytes past it were never
            // handed out.
            Some(ptr) => ptr,
            // SAFETY: same contract as ours.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::owns(ptr) {
            // SAFETY: not ours, so it came from `System.alloc*` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        // The arena's bytes are not reused: the instance is dropped after one call.
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::owns(ptr) {
            // SAFETY: not ours, so it came from `System.alloc*` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new_size <= layout.size() {
            // Shrinking keeps the range: nothing reuses the arena, and lowering `USED` would
            // hand out written bytes to a later `alloc_zeroed`.
            return ptr;
        }
        // The last allocation grows in place when it fits (a `String` or `Vec` being built);
        // the bytes it gains were never handed out.
        let offset = ptr as usize - Self::base();
        if offset + layout.size() == USED.load(Ordering::Relaxed) {
            if let Some(end) = offset.checked_add(new_size).filter(|&e| e <= ARENA_BYTES) {
                USED.store(end, Ordering::Relaxed);
                return ptr;
            }
        }
        // SAFETY: `layout.align()` is a valid alignment and `new_size` is nonzero (it is larger
        // than the old size); the caller's contract on `new_size` carries over.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for `layout.size()` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
        }
        new
    }
}
