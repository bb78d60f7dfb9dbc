//! A hint to the processor to start loading memory that will be read soon, so that the
//! wait overlaps other work. Only a hint: it never faults and changes no value.

const LINE: usize = 64;

/// Starts loading the cache line holding `address`, which need not be dereferenceable
/// (it is only computed, never read).
#[inline(always)]
fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch does not access memory observably and never faults, whatever
        // the address. SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Starts loading the cache line holding `value`.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_address((value as *const T).cast());
}

/// Starts loading the `LINES` cache lines of `value`, which is aligned to a cache line: no
/// offset is computed and, the count being known when compiled, no loop is left (a
/// general range, offset and length known only when run, kept a loop of 4 instructions
/// per line).
#[inline(always)]
pub fn prefetch_lines<T, const LINES: usize>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    debug_assert!(
        (start as usize).is_multiple_of(LINE),
        "aligned to a cache line"
    );
    for line in 0..LINES {
        prefetch_address(start.wrapping_add(line * LINE));
    }
}

/// Starts loading the cache line `bytes` bytes after `value`: where appending to the
/// buffer holding `value` will write soon. (A plain load hint: LLVM emits the same
/// instruction for a write hint without the `prfchw` target feature; a line loaded that
/// no other core holds can be written at once.) The address is only computed (it may lie
/// past the buffer), never read.
#[inline(always)]
pub fn prefetch_after<T>(value: &T, bytes: usize) {
    prefetch_address((value as *const T).cast::<u8>().wrapping_add(bytes));
}
