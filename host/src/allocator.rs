//! The binary's global allocator: mimalloc, called the way `malloc` is meant to
//! be called.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to
//! `mi_malloc_aligned`, whatever its alignment. In mimalloc 3 that call keeps
//! to `malloc`'s fast path only while the size class's free list has a block
//! ready; when it runs dry, it takes the over-allocating aligned path unless
//! the size class is a power of two, even for an alignment of 1 or 8. Under
//! load that was about 11 of the 59 allocations of a proxied request, each some
//! 300 instructions instead of `malloc`'s refill (upstream:
//! purpleprotocol/mimalloc_rust#170).
//!
//! A `mi_malloc` block is 16-aligned when it is at least 16 bytes long (size
//! classes above 8 bytes are multiples of 16, and mimalloc asserts the
//! alignment in `mi_page_malloc_zero`) and 8-aligned otherwise, as C requires
//! of `malloc`. So requests with an alignment of at most 16 that is no larger
//! than their size go to `mi_malloc`, `mi_zalloc` and `mi_realloc`: the rule
//! Rust's own `System` allocator applies to `malloc`. Larger alignments keep
//! the aligned calls, and `mi_free` takes blocks from either.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every `mi_malloc` block of at least that size has
/// (`MI_MAX_ALIGN_SIZE`, C's `alignof(max_align_t)`).
const MALLOC_ALIGN: usize = 16;

/// mimalloc as the global allocator; see the module docs.
pub struct MiMalloc;

/// Whether a block of `size` bytes from plain `mi_malloc` satisfies `align`.
#[inline]
fn malloc_suffices(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` takes
// blocks from the plain and the aligned calls alike); `malloc_suffices` only
// picks the plain calls where their alignment guarantee covers the layout.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls accept any size and any
        // power-of-two alignment, which every `Layout` has.
        unsafe {
            if malloc_suffices(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if malloc_suffices(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; mimalloc's realloc keeps the
        // contents up to the smaller size and frees the old block on success.
        unsafe {
            if malloc_suffices(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of sizes and alignments on both paths (plain and aligned) come
    /// back aligned, writable, reallocatable and, when asked, zeroed.
    #[test]
    fn blocks_honour_their_alignment() {
        let alloc = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 40, 48, 100, 1000, 1500, 4097, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout has a non-zero size; the block is freed once.
                unsafe {
                    let p = alloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let grown = alloc.realloc(p, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "realloc size {size} align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xab);
                    alloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let z = alloc.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    alloc.dealloc(z, layout);
                }
            }
        }
    }
}
