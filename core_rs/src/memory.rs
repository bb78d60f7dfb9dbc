//! Memory touched once at start-up and kept, so that growth under load does not pay for page
//! faults at the moment it happens.
//!
//! In a flash sale the engine grows by every hold it keeps (about 800 bytes each with its id
//! index entry, heap entries and idempotency record). Each fresh page costs a fault and, on
//! this virtual machine, a slow first touch: a ReserveBatch burst spent 23-25 % of the
//! service's CPU in `clear_page_erms` (perf). Touching the memory before serving and telling
//! the allocator to keep what is freed moves that cost to start-up, as a JVM's
//! `AlwaysPreTouch` does. docs/BENCHMARKS.md, "Memory touched at start-up".

use crate::errors::{EngineError, EngineResult};
use crate::limits::PREFAULT_MIB_MAX;

/// `mi_option_purge_delay`: its position in mimalloc's `mi_option_e` (v2 and v3 alike; the
/// binding crate names no constant for it). -1 means freed memory is never purged.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const NEVER: std::os::raw::c_long = -1;
/// Touched in pieces this large: big enough to be cheap to count, small enough that the
/// allocator carves them from its arenas, where later small objects reuse the pages.
const CHUNK_BYTES: usize = 1 << 20;

/// Makes the allocator keep every page it frees from now on, then touches `mib` MiB through
/// it and frees them: they stay resident, for the engine's later allocations. 0 changes
/// nothing.
pub fn prefault(mib: usize) -> EngineResult<()> {
    if mib > PREFAULT_MIB_MAX {
        return Err(EngineError::LimitExceeded {
            field: "prefault_mib",
            bound: PREFAULT_MIB_MAX as u64,
        });
    }
    if mib == 0 {
        return Ok(());
    }
    // SAFETY: setting an option is a plain store in mimalloc's option table, valid at any
    // time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, NEVER) };
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        // Written, not zero-allocated: a zeroed allocation may map untouched pages.
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        chunk.resize(CHUNK_BYTES, 1u8);
        chunks.push(std::hint::black_box(chunk));
    }
    drop(chunks);
    Ok(())
}
