//! Frozen Python views of engine results. Attributes are read-only; list attributes are
//! built on access from the Rust value.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyString, PyTuple};

use super::conversions::tuple;
use crate::engine::EngineState as RustEngineState;
use crate::journal::{ItemLevels, JournalBatch as RustJournalBatch, LedgerRow};
use crate::pg_columns;
use crate::view;

fn line_list<'py, S: std::ops::Deref<Target = str>>(
    py: Python<'py>,
    lines: &[view::LineView<S>],
) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        lines.iter().map(|l| (&*l.sku, &*l.location, l.quantity)),
    )
}

// No `freelist`: pyo3 guards its free lists with a mutex, which costs more per view than
// the interpreter's own small-object allocator (measured with loadtest.bench_engine).
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
        self.inner.reservation_id()
    }

    #[getter]
    fn order_id(&self) -> &str {
        self.inner.order_id()
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }

    #[getter]
    fn lines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        line_list(py, &self.inner.lines())
    }

    #[getter]
    fn committed_lines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        line_list(py, &self.inner.committed_lines())
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
            view.reservation_id(),
            view.order_id(),
            view.status.as_str(),
            view.lines()
                .iter()
                .map(|l| (l.sku, l.location, l.quantity))
                .collect::<Vec<_>>(),
            view.committed_lines()
                .iter()
                .map(|l| (l.sku, l.location, l.quantity))
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
                level.safety_stock,
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
            .map(|l| {
                let (sku, location) = (&*l.sku, &*l.location);
                (
                    sku,
                    location,
                    l.on_hand,
                    l.reserved,
                    l.available,
                    l.safety_stock,
                )
            })
            .collect();
        let replayed = if self.inner.replayed { "True" } else { "False" };
        format!(
            "LevelsView(levels={levels:?}, lsn={}, replayed={replayed})",
            self.inner.lsn
        )
    }
}

/// One drained journal batch: the rows of one PostgreSQL transaction.
///
/// `columns` (every column of every table as a PostgreSQL array literal, see
/// core_rs/src/pg_columns.rs) is what persistence sends; `item_keys` ((sku, location) of each
/// item row) feeds cache invalidation. The row lists (`items`, `reservations`,
/// `reservation_lines`, `ledger`, `idempotency`) are built on first access only: the write
/// path never needs them as Python objects.
#[pyclass(frozen, module = "service._core")]
pub struct JournalBatch {
    #[pyo3(get)]
    lsn_first: u64,
    #[pyo3(get)]
    lsn_last: u64,
    #[pyo3(get)]
    item_keys: Py<PyList>,
    #[pyo3(get)]
    columns: Py<PyList>,
    batch: RustJournalBatch,
    rows: PyOnceLock<Rows>,
}

struct Rows {
    items: Py<PyList>,
    reservations: Py<PyList>,
    reservation_lines: Py<PyList>,
    ledger: Py<PyList>,
    idempotency: Py<PyList>,
}

#[pymethods]
impl JournalBatch {
    #[getter]
    fn items(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.rows(py)?.items.clone_ref(py))
    }

    #[getter]
    fn reservations(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.rows(py)?.reservations.clone_ref(py))
    }

    #[getter]
    fn reservation_lines(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.rows(py)?.reservation_lines.clone_ref(py))
    }

    #[getter]
    fn ledger(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.rows(py)?.ledger.clone_ref(py))
    }

    #[getter]
    fn idempotency(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.rows(py)?.idempotency.clone_ref(py))
    }

    /// Whether the two batches write a common item, reservation or idempotency record
    /// (core_rs/src/pg_columns.rs `share_rows`).
    fn shares_rows_with(&self, py: Python<'_>, other: PyRef<'_, JournalBatch>) -> bool {
        let other = &other.batch;
        py.detach(|| pg_columns::share_rows(&self.batch, other))
    }
}

/// Python strings of one reservation row, shared by its reservation, line and ledger rows.
#[derive(Clone)]
struct ReservationObjects<'py> {
    id: Bound<'py, PyString>,
    order_id: Bound<'py, PyString>,
}

/// Python objects of one batch, made once each: a batch repeats the same skus, locations
/// and reservation ids across many rows, so rows share one object per item and per
/// reservation (looked up by row position, not hashed) instead of converting per row.
struct Objects<'py> {
    py: Python<'py>,
    /// (sku, location) per item row of the batch.
    items: Vec<Option<(Bound<'py, PyString>, Bound<'py, PyString>)>>,
    reservations: Vec<Option<ReservationObjects<'py>>>,
    /// The fixed words (kinds, statuses, operations), by address.
    words: Vec<(usize, Bound<'py, PyString>)>,
    empty: Bound<'py, PyString>,
}

impl<'py> Objects<'py> {
    fn new(py: Python<'py>, batch: &RustJournalBatch) -> Objects<'py> {
        Objects {
            py,
            items: vec![None; batch.items.len()],
            reservations: vec![None; batch.reservations().len()],
            words: Vec::new(),
            empty: PyString::intern(py, ""),
        }
    }

    /// Texts that rarely repeat (request ids, reasons) are made as needed; empty ones,
    /// the usual case, share one object.
    fn text(&self, text: &str) -> Bound<'py, PyString> {
        if text.is_empty() {
            return self.empty.clone();
        }
        PyString::new(self.py, text)
    }

    fn word(&mut self, word: &'static str) -> Bound<'py, PyString> {
        let key = word.as_ptr() as usize;
        if let Some((_, object)) = self.words.iter().find(|(address, _)| *address == key) {
            return object.clone();
        }
        let object = PyString::intern(self.py, word);
        self.words.push((key, object.clone()));
        object
    }

    fn item(
        &mut self,
        row: usize,
        sku: &str,
        location: &str,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        if let Some(names) = &self.items[row] {
            return names.clone();
        }
        let names = (PyString::new(self.py, sku), self.text(location));
        self.items[row] = Some(names.clone());
        names
    }

    fn reservation(&mut self, row: usize, id: &str, order_id: &str) -> ReservationObjects<'py> {
        if let Some(objects) = &self.reservations[row] {
            return objects.clone();
        }
        let objects = ReservationObjects {
            id: PyString::new(self.py, id),
            order_id: self.text(order_id),
        };
        self.reservations[row] = Some(objects.clone());
        objects
    }
}

/// A tuple from already converted objects.
fn row<'py, const N: usize>(
    py: Python<'py>,
    values: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, values)
}

fn any<'py, T: pyo3::IntoPyObjectExt<'py>>(
    py: Python<'py>,
    value: T,
) -> PyResult<Bound<'py, PyAny>> {
    value.into_bound_py_any(py)
}

/// Fields of one operation, converted once for all its ledger rows.
struct OperationObjects<'py> {
    index: usize,
    values: [Bound<'py, PyAny>; 7],
}

fn operation_objects<'py>(
    objects: &mut Objects<'py>,
    row: &LedgerRow<'_>,
) -> PyResult<OperationObjects<'py>> {
    let py = objects.py;
    let (reservation_id, order_id) = match row.reservation_row {
        Some(reservation) => {
            let shared = objects.reservation(reservation, row.reservation_id, row.order_id);
            (shared.id, shared.order_id)
        }
        None => (objects.text(row.reservation_id), objects.text(row.order_id)),
    };
    Ok(OperationObjects {
        index: row.operation,
        values: [
            any(py, row.lsn)?,
            any(py, row.at_ms)?,
            reservation_id.into_any(),
            order_id.into_any(),
            objects.text(row.request_id).into_any(),
            objects.text(row.reason).into_any(),
            objects.text(row.actor).into_any(),
        ],
    })
}

fn ledger_list<'py>(
    objects: &mut Objects<'py>,
    batch: &RustJournalBatch,
) -> PyResult<Bound<'py, PyList>> {
    let py = objects.py;
    let mut rows = Vec::with_capacity(batch.ledger().len());
    let mut current: Option<OperationObjects<'py>> = None;
    for ledger in batch.ledger() {
        if current.as_ref().is_none_or(|c| c.index != ledger.operation) {
            current = Some(operation_objects(objects, &ledger)?);
        }
        let operation = &current.as_ref().expect("set above").values;
        let (sku, location) = objects.item(ledger.item_row, ledger.sku, ledger.location);
        rows.push(row(
            py,
            [
                operation[0].clone(),
                operation[1].clone(),
                sku.into_any(),
                location.into_any(),
                objects.word(ledger.kind).into_any(),
                any(py, ledger.delta_on_hand)?,
                any(py, ledger.delta_reserved)?,
                any(py, ledger.on_hand_after)?,
                any(py, ledger.reserved_after)?,
                any(py, ledger.delta_safety)?,
                any(py, ledger.safety_after)?,
                operation[2].clone(),
                operation[3].clone(),
                operation[4].clone(),
                operation[5].clone(),
                operation[6].clone(),
            ],
        )?);
    }
    PyList::new(py, rows)
}

impl JournalBatch {
    pub fn new(
        py: Python<'_>,
        batch: RustJournalBatch,
        columns: Vec<String>,
    ) -> PyResult<JournalBatch> {
        let mut objects = Objects::new(py, &batch);
        let mut keys = Vec::with_capacity(batch.items.len());
        for (row, item) in batch.items.iter().enumerate() {
            keys.push(objects.item(row, item.sku, item.location));
        }
        Ok(JournalBatch {
            lsn_first: batch.lsn_first,
            lsn_last: batch.lsn_last,
            item_keys: PyList::new(py, keys)?.unbind(),
            columns: PyList::new(py, columns)?.unbind(),
            batch,
            rows: PyOnceLock::new(),
        })
    }

    fn rows(&self, py: Python<'_>) -> PyResult<&Rows> {
        self.rows.get_or_try_init(py, || Rows::new(py, &self.batch))
    }
}

impl Rows {
    fn new(py: Python<'_>, batch: &RustJournalBatch) -> PyResult<Rows> {
        let mut objects = Objects::new(py, batch);
        let mut items = Vec::with_capacity(batch.items.len());
        for (row, item) in batch.items.iter().enumerate() {
            let (sku, location) = objects.item(row, item.sku, item.location);
            items.push(item_tuple(py, sku, location, item)?);
        }
        let mut reservations = Vec::with_capacity(batch.reservations().len());
        for (index, r) in batch.reservations().enumerate() {
            let shared = objects.reservation(index, r.reservation_id, r.order_id);
            let request_id = match r.request_id {
                Some(text) => objects.text(text).into_any(),
                None => py.None().into_bound(py),
            };
            reservations.push(row(
                py,
                [
                    shared.id.into_any(),
                    shared.order_id.into_any(),
                    objects.word(r.status).into_any(),
                    any(py, r.expires_at_ms)?,
                    any(py, r.created_at_ms)?,
                    any(py, r.updated_at_ms)?,
                    request_id,
                ],
            )?);
        }
        let mut lines = Vec::with_capacity(batch.reservation_lines().len());
        for l in batch.reservation_lines() {
            let (sku, location) = objects.item(l.item_row, l.sku, l.location);
            // Lines only exist for reservation rows, whose objects were made just above.
            let shared = objects.reservation(l.reservation_row, l.reservation_id, "");
            lines.push(row(
                py,
                [
                    shared.id.into_any(),
                    sku.into_any(),
                    location.into_any(),
                    any(py, l.quantity)?,
                    any(py, l.quantity_committed)?,
                ],
            )?);
        }
        let ledger = ledger_list(&mut objects, batch)?;
        let mut idempotency = Vec::with_capacity(batch.idempotency.len());
        for r in &batch.idempotency {
            idempotency.push(row(
                py,
                [
                    objects.text(&r.request_id).into_any(),
                    any(py, r.fingerprint)?,
                    objects.word(r.operation).into_any(),
                    any(py, r.outcome_json.as_str())?,
                    any(py, r.lsn)?,
                    any(py, r.created_at_ms)?,
                ],
            )?);
        }
        Ok(Rows {
            items: PyList::new(py, items)?.unbind(),
            reservations: PyList::new(py, reservations)?.unbind(),
            reservation_lines: PyList::new(py, lines)?.unbind(),
            ledger: ledger.unbind(),
            idempotency: PyList::new(py, idempotency)?.unbind(),
        })
    }
}

/// An item row of a batch: (sku, location, on hand, reserved, safety stock).
fn item_tuple<'py>(
    py: Python<'py>,
    sku: Bound<'py, PyString>,
    location: Bound<'py, PyString>,
    item: ItemLevels<'_>,
) -> PyResult<Bound<'py, PyTuple>> {
    row(
        py,
        [
            sku.into_any(),
            location.into_any(),
            any(py, item.on_hand)?,
            any(py, item.reserved)?,
            any(py, item.safety_stock)?,
        ],
    )
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
            .map(|(sku, location, on_hand, reserved, safety_stock)| {
                (&**sku, &**location, *on_hand, *reserved, *safety_stock)
            });
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
