//! Frozen Python views of engine results. Attributes are read-only; list attributes are
//! built on access from the Rust value.

use pyo3::prelude::*;
use std::sync::Arc;

use pyo3::types::{PyList, PyString, PyTuple};
use rustc_hash::FxHashMap;

use super::conversions::tuple;
use crate::engine::EngineState as RustEngineState;
use crate::journal::JournalBatch as RustJournalBatch;
use crate::view;

fn line_list<'py>(py: Python<'py>, lines: &[view::LineView]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        lines.iter().map(|l| (&*l.sku, &*l.location, l.quantity)),
    )
}

#[pyclass(frozen, module = "service._core")]
pub struct ReservationView {
    inner: view::ReservationView,
}

impl ReservationView {
    pub fn new(inner: view::ReservationView) -> ReservationView {
        ReservationView { inner }
    }
}

#[pymethods]
impl ReservationView {
    #[getter]
    fn reservation_id(&self) -> &str {
        &self.inner.reservation_id
    }

    #[getter]
    fn order_id(&self) -> &str {
        &self.inner.order_id
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }

    #[getter]
    fn lines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        line_list(py, &self.inner.lines)
    }

    #[getter]
    fn committed_lines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        line_list(py, &self.inner.committed_lines)
    }

    #[getter]
    fn expires_at_ms(&self) -> i64 {
        self.inner.expires_at_ms
    }

    #[getter]
    fn lsn(&self) -> u64 {
        self.inner.lsn
    }

    #[getter]
    fn replayed(&self) -> bool {
        self.inner.replayed
    }

    fn __repr__(&self) -> String {
        let view = &self.inner;
        format!(
            "ReservationView(reservation_id={:?}, order_id={:?}, status={:?}, lines={:?}, \
             committed_lines={:?}, expires_at_ms={}, lsn={}, replayed={})",
            view.reservation_id,
            view.order_id,
            view.status.as_str(),
            view.lines
                .iter()
                .map(|l| (&*l.sku, &*l.location, l.quantity))
                .collect::<Vec<_>>(),
            view.committed_lines
                .iter()
                .map(|l| (&*l.sku, &*l.location, l.quantity))
                .collect::<Vec<_>>(),
            view.expires_at_ms,
            view.lsn,
            if view.replayed { "True" } else { "False" },
        )
    }
}

#[pyclass(frozen, module = "service._core")]
pub struct LevelsView {
    inner: view::LevelsView,
}

impl LevelsView {
    pub fn new(inner: view::LevelsView) -> LevelsView {
        LevelsView { inner }
    }
}

#[pymethods]
impl LevelsView {
    #[getter]
    fn levels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let rows = self.inner.levels.iter().map(|level| {
            (
                &*level.sku,
                &*level.location,
                level.on_hand,
                level.reserved,
                level.available,
            )
        });
        PyList::new(py, rows)
    }

    #[getter]
    fn lsn(&self) -> u64 {
        self.inner.lsn
    }

    #[getter]
    fn replayed(&self) -> bool {
        self.inner.replayed
    }

    fn __repr__(&self) -> String {
        let levels: Vec<_> = self
            .inner
            .levels
            .iter()
            .map(|l| (&*l.sku, &*l.location, l.on_hand, l.reserved, l.available))
            .collect();
        let replayed = if self.inner.replayed { "True" } else { "False" };
        format!(
            "LevelsView(levels={levels:?}, lsn={}, replayed={replayed})",
            self.inner.lsn
        )
    }
}

/// One drained journal batch: the rows of one PostgreSQL transaction.
#[pyclass(frozen, module = "service._core", get_all)]
pub struct JournalBatch {
    lsn_first: u64,
    lsn_last: u64,
    items: Py<PyList>,
    reservations: Py<PyList>,
    reservation_lines: Py<PyList>,
    ledger: Py<PyList>,
    idempotency: Py<PyList>,
}

/// Python strings of one batch, made once per shared Rust string: a batch repeats the same
/// skus, locations and reservation ids in several tables.
struct Strings<'py> {
    py: Python<'py>,
    made: FxHashMap<usize, Bound<'py, PyString>>,
}

impl<'py> Strings<'py> {
    fn new(py: Python<'py>) -> Strings<'py> {
        Strings {
            py,
            made: FxHashMap::default(),
        }
    }

    fn get(&mut self, text: &Arc<str>) -> Bound<'py, PyString> {
        let key = Arc::as_ptr(text) as *const u8 as usize;
        let py = self.py;
        self.made
            .entry(key)
            .or_insert_with(|| PyString::new(py, text))
            .clone()
    }

    fn optional(&mut self, text: &Option<Arc<str>>) -> Option<Bound<'py, PyString>> {
        text.as_ref().map(|text| self.get(text))
    }
}

impl JournalBatch {
    pub fn new(py: Python<'_>, batch: &RustJournalBatch) -> PyResult<JournalBatch> {
        let mut strings = Strings::new(py);
        let mut items = Vec::with_capacity(batch.items.len());
        for (sku, location, on_hand, reserved) in &batch.items {
            items.push((strings.get(sku), strings.get(location), *on_hand, *reserved));
        }
        let mut reservations = Vec::with_capacity(batch.reservations.len());
        for r in &batch.reservations {
            reservations.push(tuple!(py; strings.get(&r.reservation_id),
                strings.get(&r.order_id), r.status, r.expires_at_ms, r.created_at_ms,
                r.updated_at_ms, strings.optional(&r.request_id)));
        }
        let mut lines = Vec::with_capacity(batch.reservation_lines.len());
        for l in &batch.reservation_lines {
            lines.push((
                strings.get(&l.reservation_id),
                strings.get(&l.sku),
                strings.get(&l.location),
                l.quantity,
                l.quantity_committed,
            ));
        }
        let mut ledger = Vec::with_capacity(batch.ledger.len());
        for row in &batch.ledger {
            ledger.push(tuple!(py; row.lsn, row.at_ms, strings.get(&row.sku),
                strings.get(&row.location), row.kind, row.delta_on_hand, row.delta_reserved,
                row.on_hand_after, row.reserved_after, strings.get(&row.reservation_id),
                strings.get(&row.order_id), strings.get(&row.request_id),
                strings.get(&row.reason), strings.get(&row.actor)));
        }
        let mut idempotency = Vec::with_capacity(batch.idempotency.len());
        for r in &batch.idempotency {
            idempotency.push((
                strings.get(&r.request_id),
                r.fingerprint,
                r.operation,
                r.outcome_json.as_str(),
                r.lsn,
                r.created_at_ms,
            ));
        }
        Ok(JournalBatch {
            lsn_first: batch.lsn_first,
            lsn_last: batch.lsn_last,
            items: PyList::new(py, items)?.unbind(),
            reservations: PyList::new(py, reservations)?.unbind(),
            reservation_lines: PyList::new(py, lines)?.unbind(),
            ledger: PyList::new(py, ledger)?.unbind(),
            idempotency: PyList::new(py, idempotency)?.unbind(),
        })
    }
}

/// The engine's whole state, in the shapes `load` accepts.
#[pyclass(frozen, module = "service._core", get_all)]
pub struct EngineState {
    items: Py<PyList>,
    holds: Py<PyList>,
    idempotency_count: usize,
}

impl EngineState {
    pub fn new(py: Python<'_>, state: &RustEngineState) -> PyResult<EngineState> {
        let items = state
            .items
            .iter()
            .map(|(sku, location, on_hand, reserved)| (&**sku, &**location, *on_hand, *reserved));
        let mut holds: Vec<Bound<'_, PyTuple>> = Vec::with_capacity(state.holds.len());
        for hold in &state.holds {
            let lines = line_list(py, &hold.lines)?;
            holds.push(
                tuple!(py; &*hold.reservation_id, &*hold.order_id, hold.expires_at_ms,
                hold.created_at_ms, lines),
            );
        }
        Ok(EngineState {
            items: PyList::new(py, items)?.unbind(),
            holds: PyList::new(py, holds)?.unbind(),
            idempotency_count: state.idempotency_count,
        })
    }
}
