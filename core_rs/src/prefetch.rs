//! A hint to the processor to start loading memory that will be read soon, so that the
//! wait overlaps other work. Only a hint: it never faults and changes no value.

/// Starts loading the cache line holding `value`.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let address = (value as *const T).cast::<i8>();
        // SAFETY: a prefetch does not access memory observably; `address` comes from a
        // reference, so it is valid anyway. SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
