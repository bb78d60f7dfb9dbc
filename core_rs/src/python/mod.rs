//! The PyO3 binding: converts Python values to engine inputs and engine results to Python
//! objects. No engine rule lives here.

mod conversions;
mod engine;
mod exceptions;
mod views;

use pyo3::prelude::*;

use exceptions::to_py_err;
use pyo3::types::PyDict;

use crate::limits::{LIMITS, PREFAULT_MIB_MAX};
use crate::memory;
use crate::pg_columns;
use crate::wire;

/// A new time-ordered reservation id (core_rs/src/wire.rs).
#[pyfunction]
fn new_reservation_id(now_ms: i64) -> String {
    wire::new_reservation_id(now_ms)
}

/// Touches `mib` MiB at start-up and keeps freed memory from then on (core_rs/src/memory.rs).
/// Detached from the interpreter: a GiB takes seconds.
#[pyfunction]
fn prefault_memory(py: Python<'_>, mib: &Bound<'_, PyAny>) -> PyResult<()> {
    let mib = conversions::integer(mib, "prefault_mib", PREFAULT_MIB_MAX as u64)?;
    // A negative size is out of bounds like a huge one: `memory::prefault` refuses both.
    let mib = usize::try_from(mib).unwrap_or(usize::MAX);
    py.detach(|| memory::prefault(mib))
        .map_err(|error| to_py_err(py, &error))
}

/// Registers every public name of `service._core` (the stub lists the same names).
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<engine::Engine>()?;
    module.add_class::<views::ReservationView>()?;
    module.add_class::<views::LevelsView>()?;
    module.add_class::<views::JournalBatch>()?;
    module.add_class::<views::EngineState>()?;
    exceptions::register(module)?;
    module.add_function(wrap_pyfunction!(new_reservation_id, module)?)?;
    module.add_function(wrap_pyfunction!(prefault_memory, module)?)?;
    let limits = PyDict::new(py);
    for (name, value) in LIMITS {
        limits.set_item(name, value)?;
    }
    module.add("LIMITS", limits)?;
    // (table, columns) in the order of JournalBatch.columns; persistence checks its SQL.
    let tables: Vec<(&str, Vec<&str>)> = pg_columns::TABLES
        .iter()
        .map(|(table, columns)| (*table, columns.to_vec()))
        .collect();
    module.add("PG_TABLES", tables)?;
    Ok(())
}
