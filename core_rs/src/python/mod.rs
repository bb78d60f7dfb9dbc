//! The PyO3 binding: converts Python values to engine inputs and engine results to Python
//! objects. No engine rule lives here.

mod conversions;
mod engine;
mod exceptions;
mod views;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::limits::LIMITS;
use crate::pg_columns;
use crate::wire;

/// A new time-ordered reservation id (core_rs/src/wire.rs).
#[pyfunction]
fn new_reservation_id(now_ms: i64) -> String {
    wire::new_reservation_id(now_ms)
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
