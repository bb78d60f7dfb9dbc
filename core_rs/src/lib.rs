//! Stock reservation engine. The engine modules are pure Rust; `python` (behind the
//! `python` feature) only converts types, and this file only declares and registers.

pub mod engine;
pub mod errors;
pub mod expiry;
pub mod fingerprint;
pub mod idempotency;
pub mod item;
pub mod journal;
pub mod lazy_heap;
pub mod limits;
pub mod memory;
pub mod pg_columns;
mod prefetch;
pub mod record;
pub mod reservation;
pub mod validate;
pub mod view;
pub mod wire;

#[cfg(feature = "python")]
mod python;

/// Holds, views and journal rows are many small short-lived allocations; mimalloc serves
/// them markedly faster than the system allocator (see core_rs/benches).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use engine::{Annotation, Engine, EngineConfig, EngineStats};
pub use engine::{EngineState, ExportHold, LoadHold, LoadIdempotency, LoadItem};
pub use errors::{EngineError, EngineResult};
pub use validate::LineInput;

#[cfg(feature = "python")]
#[pyo3::pymodule]
#[pyo3(name = "_core")]
fn core_module(module: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    python::register(module)
}
