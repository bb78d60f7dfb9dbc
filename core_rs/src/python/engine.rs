//! `service._core.Engine`: a frozen class around the engine behind a mutex, so threads may
//! share it. Single calls keep the interpreter attached (they are short); bulk calls
//! (load, export, take_journal, batches) detach while the engine works.

use parking_lot::{Mutex, MutexGuard};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::conversions::{self, integer, Lines};
use super::exceptions::{to_py_err, to_py_exception};
use super::views::{EngineState, JournalBatch, LevelsView, ReservationView};
use crate::engine::{Annotation, Engine as RustEngine, EngineConfig};
use crate::errors::{EngineError, EngineResult};
use crate::limits::{
    BATCH_REQUESTS_MAX, IDEMPOTENCY_RECORDS_MAX_DEFAULT, ITEMS_MAX_DEFAULT,
    JOURNAL_OPERATIONS_MAX_DEFAULT, ON_HAND_MAX, QUANTITY_MAX, RESERVATIONS_ACTIVE_MAX_DEFAULT,
    RESERVATIONS_TERMINAL_MAX_DEFAULT, TTL_MS_MAX,
};
use crate::pg_columns;
use crate::view::{self, Answer};
use crate::wire::{self, BatchAnswer, Part};

#[pyclass(frozen, module = "service._core")]
pub struct Engine {
    inner: Mutex<RustEngine>,
}

fn raise<T>(py: Python<'_>, result: EngineResult<T>) -> PyResult<T> {
    result.map_err(|error| to_py_err(py, &error))
}

/// The view of an operation's answer, built while the caller still holds the engine (the
/// engine answers with a receipt, read back here before anything else can change it).
#[inline]
fn viewed(
    engine: &RustEngine,
    result: EngineResult<Answer>,
) -> EngineResult<view::ReservationView> {
    result.map(|answer| engine.view(&answer).expect("viewed under the same lock"))
}

fn reservation_result(
    py: Python<'_>,
    result: EngineResult<view::ReservationView>,
) -> PyResult<Py<PyAny>> {
    match result {
        Ok(view) => Ok(Py::new(py, ReservationView::new(view))?.into_any()),
        Err(error) => Ok(to_py_exception(py, &error)?.unbind()),
    }
}

/// The requests of a batch call (at most BATCH_REQUESTS_MAX), each converted by `convert`
/// while the interpreter is held.
fn batch_requests<'py, R>(
    py: Python<'py>,
    requests: &Bound<'py, PyAny>,
    mut convert: impl FnMut(Bound<'py, PyAny>) -> PyResult<R>,
) -> PyResult<Vec<R>> {
    let count = requests.len()?;
    if count > BATCH_REQUESTS_MAX {
        let error = EngineError::LimitExceeded {
            field: "requests",
            bound: BATCH_REQUESTS_MAX as u64,
        };
        return Err(to_py_err(py, &error));
    }
    let mut batch = Vec::with_capacity(count);
    for request in requests.try_iter()? {
        batch.push(convert(request?)?);
    }
    Ok(batch)
}

struct ReserveRequest {
    reservation_id: PyBackedStr,
    order_id: PyBackedStr,
    lines: Lines,
    ttl_ms: i64,
    request_id: Option<PyBackedStr>,
}

struct CommitRequest {
    reservation_id: PyBackedStr,
    lines: Option<Lines>,
    request_id: Option<PyBackedStr>,
}

impl Engine {
    /// The engine, waiting for it detached from the interpreter when another thread holds
    /// it (that thread may be detached too, e.g. in take_journal).
    fn engine<'a>(&'a self, py: Python<'_>) -> MutexGuard<'a, RustEngine> {
        if let Some(guard) = self.inner.try_lock() {
            return guard;
        }
        py.detach(|| self.inner.lock())
    }

    /// The parts of a wire answer as bytes and exception objects, with its LSN.
    fn answer_to_py<'py>(
        py: Python<'py>,
        answer: EngineResult<BatchAnswer>,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let BatchAnswer { parts, lsn } = raise(py, answer)?;
        let objects: PyResult<Vec<Bound<'py, PyAny>>> = parts
            .iter()
            .map(|part| match part {
                Part::Encoded(bytes) => Ok(PyBytes::new(py, bytes).into_any()),
                Part::Refused(error) => to_py_exception(py, error),
            })
            .collect();
        Ok((PyList::new(py, objects?)?, lsn))
    }

    /// Applies a batch of converted requests in order, detached from the interpreter, and
    /// answers one view or exception object per request (the three batch calls share this).
    fn apply_batch<'py, R: Sync>(
        &self,
        py: Python<'py>,
        batch: &[R],
        apply: impl Fn(&mut RustEngine, &R) -> EngineResult<Answer> + Sync,
    ) -> PyResult<Bound<'py, PyList>> {
        let results: Vec<_> = py.detach(|| {
            let mut engine = self.inner.lock();
            batch
                .iter()
                .map(|request| {
                    let answer = apply(&mut engine, request);
                    viewed(&engine, answer)
                })
                .collect()
        });
        let objects: PyResult<Vec<_>> = results
            .into_iter()
            .map(|result| reservation_result(py, result))
            .collect();
        PyList::new(py, objects?)
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (*, idempotency_records_max=IDEMPOTENCY_RECORDS_MAX_DEFAULT,
        reservations_active_max=RESERVATIONS_ACTIVE_MAX_DEFAULT,
        reservations_terminal_max=RESERVATIONS_TERMINAL_MAX_DEFAULT,
        items_max=ITEMS_MAX_DEFAULT, journal_operations_max=JOURNAL_OPERATIONS_MAX_DEFAULT,
        holds_presized=0))]
    fn new(
        py: Python<'_>,
        idempotency_records_max: usize,
        reservations_active_max: usize,
        reservations_terminal_max: usize,
        items_max: usize,
        journal_operations_max: usize,
        holds_presized: usize,
    ) -> PyResult<Engine> {
        let config = EngineConfig {
            idempotency_records_max,
            reservations_active_max,
            reservations_terminal_max,
            items_max,
            journal_operations_max,
            holds_presized,
        };
        let engine = raise(py, RustEngine::new(config))?;
        Ok(Engine {
            inner: Mutex::new(engine),
        })
    }

    // The signature is the contract's (docs/ENGINE_API.md).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (reservation_id, order_id, lines, ttl_ms, now_ms, request_id=None))]
    fn reserve(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        order_id: &str,
        lines: &Bound<'_, PyAny>,
        ttl_ms: &Bound<'_, PyAny>,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> PyResult<ReservationView> {
        let lines = conversions::lines(lines)?;
        let ttl_ms = integer(ttl_ms, "ttl_ms", TTL_MS_MAX as u64)?;
        let inputs = conversions::inputs(&lines);
        let mut engine = self.engine(py);
        let answer = engine.reserve(
            reservation_id,
            order_id,
            &inputs,
            ttl_ms,
            now_ms,
            request_id,
        );
        let result = viewed(&engine, answer);
        drop(engine);
        raise(py, result).map(ReservationView::new)
    }

    #[pyo3(signature = (reservation_id, lines, now_ms, request_id=None))]
    fn commit(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        lines: Option<&Bound<'_, PyAny>>,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> PyResult<ReservationView> {
        let lines = lines.map(conversions::lines).transpose()?;
        let inputs = lines.as_deref().map(conversions::inputs);
        let mut engine = self.engine(py);
        let answer = engine.commit(reservation_id, inputs.as_deref(), now_ms, request_id);
        let result = viewed(&engine, answer);
        drop(engine);
        raise(py, result).map(ReservationView::new)
    }

    #[pyo3(signature = (reservation_id, now_ms, request_id=None))]
    fn release(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> PyResult<ReservationView> {
        let mut engine = self.engine(py);
        let answer = engine.release(reservation_id, now_ms, request_id);
        let result = viewed(&engine, answer);
        drop(engine);
        raise(py, result).map(ReservationView::new)
    }

    fn extend(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        ttl_ms: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<ReservationView> {
        let ttl_ms = integer(ttl_ms, "ttl_ms", TTL_MS_MAX as u64)?;
        let mut engine = self.engine(py);
        let answer = engine.extend(reservation_id, ttl_ms, now_ms);
        let result = viewed(&engine, answer);
        drop(engine);
        raise(py, result).map(ReservationView::new)
    }

    fn get_reservation(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        now_ms: i64,
    ) -> PyResult<ReservationView> {
        let engine = self.engine(py);
        let answer = engine.get_reservation(reservation_id, now_ms);
        let result = viewed(&engine, answer);
        drop(engine);
        raise(py, result).map(ReservationView::new)
    }

    #[pyo3(signature = (lines, now_ms, order_id="", request_id=None))]
    fn decrement(
        &self,
        py: Python<'_>,
        lines: &Bound<'_, PyAny>,
        now_ms: i64,
        order_id: &str,
        request_id: Option<&str>,
    ) -> PyResult<LevelsView> {
        let lines = conversions::lines(lines)?;
        let inputs = conversions::inputs(&lines);
        let result = self
            .engine(py)
            .decrement(&inputs, now_ms, order_id, request_id);
        raise(py, result).map(LevelsView::new)
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (sku, location, delta, now_ms, reason="", actor="", request_id=None))]
    fn adjust(
        &self,
        py: Python<'_>,
        sku: &str,
        location: &str,
        delta: &Bound<'_, PyAny>,
        now_ms: i64,
        reason: &str,
        actor: &str,
        request_id: Option<&str>,
    ) -> PyResult<LevelsView> {
        let delta = integer(delta, "delta", QUANTITY_MAX)?;
        let annotation = Annotation {
            reason,
            actor,
            request_id,
        };
        let result = self
            .engine(py)
            .adjust(sku, location, delta, now_ms, annotation);
        raise(py, result).map(LevelsView::new)
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (sku, location, on_hand, expected_on_hand, now_ms, reason="", actor="",
        request_id=None))]
    fn set_stock(
        &self,
        py: Python<'_>,
        sku: &str,
        location: &str,
        on_hand: &Bound<'_, PyAny>,
        expected_on_hand: Option<&Bound<'_, PyAny>>,
        now_ms: i64,
        reason: &str,
        actor: &str,
        request_id: Option<&str>,
    ) -> PyResult<LevelsView> {
        let on_hand = integer(on_hand, "on_hand", ON_HAND_MAX)?;
        let expected = expected_on_hand
            .map(|value| integer(value, "expected_on_hand", ON_HAND_MAX))
            .transpose()?;
        let annotation = Annotation {
            reason,
            actor,
            request_id,
        };
        let result = self
            .engine(py)
            .set_stock(sku, location, on_hand, expected, now_ms, annotation);
        raise(py, result).map(LevelsView::new)
    }

    #[pyo3(signature = (sku, location, safety_stock, now_ms, reason="", actor="",
        request_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_safety_stock(
        &self,
        py: Python<'_>,
        sku: &str,
        location: &str,
        safety_stock: &Bound<'_, PyAny>,
        now_ms: i64,
        reason: &str,
        actor: &str,
        request_id: Option<&str>,
    ) -> PyResult<LevelsView> {
        let safety_stock = integer(safety_stock, "safety_stock", ON_HAND_MAX)?;
        let annotation = Annotation {
            reason,
            actor,
            request_id,
        };
        let result =
            self.engine(py)
                .set_safety_stock(sku, location, safety_stock, now_ms, annotation);
        raise(py, result).map(LevelsView::new)
    }

    fn get_stock(
        &self,
        py: Python<'_>,
        skus: Vec<PyBackedStr>,
        location: &str,
        now_ms: i64,
    ) -> PyResult<LevelsView> {
        let skus: Vec<&str> = skus.iter().map(|sku| &**sku).collect();
        let result = self.engine(py).get_stock(&skus, location, now_ms);
        raise(py, result).map(LevelsView::new)
    }

    fn expire_due(&self, py: Python<'_>, now_ms: i64, max_count: usize) -> PyResult<Vec<String>> {
        let result = self.engine(py).expire_due(now_ms, max_count);
        Ok(raise(py, result)?.iter().map(|id| id.to_string()).collect())
    }

    fn next_expiry_ms(&self, py: Python<'_>) -> Option<i64> {
        self.engine(py).next_expiry_ms()
    }

    fn reserve_batch<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
        now_ms: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let batch = batch_requests(py, requests, |request| {
            let (reservation_id, order_id, lines, ttl_ms, request_id): (
                PyBackedStr,
                PyBackedStr,
                Bound<'py, PyAny>,
                Bound<'py, PyAny>,
                Option<PyBackedStr>,
            ) = request.extract()?;
            Ok(ReserveRequest {
                reservation_id,
                order_id,
                lines: conversions::lines(&lines)?,
                ttl_ms: integer(&ttl_ms, "ttl_ms", TTL_MS_MAX as u64)?,
                request_id,
            })
        })?;
        self.apply_batch(py, &batch, |engine, r| {
            let inputs = conversions::inputs(&r.lines);
            engine.reserve(
                &r.reservation_id,
                &r.order_id,
                &inputs,
                r.ttl_ms,
                now_ms,
                r.request_id.as_deref(),
            )
        })
    }

    fn commit_batch<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
        now_ms: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let batch = batch_requests(py, requests, |request| {
            let (reservation_id, lines, request_id): (
                PyBackedStr,
                Option<Bound<'py, PyAny>>,
                Option<PyBackedStr>,
            ) = request.extract()?;
            Ok(CommitRequest {
                reservation_id,
                lines: lines.as_ref().map(conversions::lines).transpose()?,
                request_id,
            })
        })?;
        self.apply_batch(py, &batch, |engine, r| {
            let inputs = r.lines.as_deref().map(conversions::inputs);
            engine.commit(
                &r.reservation_id,
                inputs.as_deref(),
                now_ms,
                r.request_id.as_deref(),
            )
        })
    }

    fn release_batch<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
        now_ms: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let batch: Vec<(PyBackedStr, Option<PyBackedStr>)> =
            batch_requests(py, requests, |request| request.extract())?;
        self.apply_batch(py, &batch, |engine, (reservation_id, request_id)| {
            engine.release(reservation_id, now_ms, request_id.as_deref())
        })
    }

    /// A batch call on the wire (core_rs/src/wire.rs), run detached from the interpreter:
    /// `operation` is "reserve", "commit" or "release"; (parts, lsn) out, each part the
    /// encoded results of consecutive successful requests (bytes) or one refused request's
    /// exception object, in request order.
    fn batch_wire<'py>(
        &self,
        py: Python<'py>,
        operation: &str,
        request: &[u8],
        now_ms: i64,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let call = wire_call(py, operation, BATCH_CALLS)?;
        let answer = py.detach(|| call(&mut self.inner.lock(), request, now_ms));
        Self::answer_to_py(py, answer)
    }

    /// A single Reserve, Commit or Release call on the wire (`operation` as for
    /// `batch_wire`): its request message's bytes in; ([the Reservation message's bytes or
    /// the refusal], lsn) out. One call takes about a microsecond, so the interpreter is not
    /// released around it.
    fn call_wire<'py>(
        &self,
        py: Python<'py>,
        operation: &str,
        request: &[u8],
        now_ms: i64,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let call = wire_call(py, operation, SINGLE_CALLS)?;
        Self::answer_to_py(py, call(&mut self.engine(py), request, now_ms))
    }

    fn take_journal(
        &self,
        py: Python<'_>,
        max_operations: usize,
    ) -> PyResult<Option<JournalBatch>> {
        // Drained and rendered as SQL array literals detached from the interpreter.
        let result = py.detach(|| {
            let taken = self.inner.lock().take_journal(max_operations);
            taken.map(|batch| {
                batch.map(|batch| {
                    let columns = pg_columns::batch_columns(&batch);
                    (batch, columns)
                })
            })
        });
        match raise(py, result)? {
            None => Ok(None),
            Some((batch, columns)) => JournalBatch::new(py, batch, columns).map(Some),
        }
    }

    fn journal_pending(&self, py: Python<'_>) -> usize {
        self.engine(py).journal_pending()
    }

    fn lsn_last(&self, py: Python<'_>) -> u64 {
        self.engine(py).lsn_last()
    }

    fn load(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyAny>,
        holds: &Bound<'_, PyAny>,
        idempotency_records: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<()> {
        let items = conversions::load_items(items)?;
        let holds = conversions::load_holds(holds)?;
        let records = conversions::load_idempotency(idempotency_records)?;
        let result = py.detach(|| {
            let loaded = self.inner.lock().load(&items, &holds, &records, now_ms);
            // Free the inputs while still detached: a million holds take a while to drop.
            drop((items, holds, records));
            loaded
        });
        raise(py, result)
    }

    fn export(&self, py: Python<'_>) -> PyResult<EngineState> {
        let state = py.detach(|| self.inner.lock().export());
        EngineState::new(py, &state)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.engine(py).stats();
        let dict = PyDict::new(py);
        dict.set_item("items", stats.items)?;
        dict.set_item("reservations_active", stats.reservations_active)?;
        dict.set_item("reservations_terminal", stats.reservations_terminal)?;
        dict.set_item("idempotency_records", stats.idempotency_records)?;
        dict.set_item("journal_pending", stats.journal_pending)?;
        dict.set_item("lsn_last", stats.lsn_last)?;
        dict.set_item("expiry_queue_entries", stats.expiry_queue_entries)?;
        dict.set_item("reservations_capacity", stats.reservations_capacity)?;
        dict.set_item("idempotency_capacity", stats.idempotency_capacity)?;
        Ok(dict)
    }
}

type WireCall = fn(&mut RustEngine, &[u8], i64) -> EngineResult<BatchAnswer>;
/// The wire calls of reserve, commit and release: batch calls and single calls.
const BATCH_CALLS: [WireCall; 3] = [wire::reserve_batch, wire::commit_batch, wire::release_batch];
const SINGLE_CALLS: [WireCall; 3] = [wire::reserve_one, wire::commit_one, wire::release_one];

/// The one of `[reserve, commit, release]` that `operation` names.
fn wire_call(py: Python<'_>, operation: &str, calls: [WireCall; 3]) -> PyResult<WireCall> {
    let [reserve, commit, release] = calls;
    match operation {
        "reserve" => Ok(reserve),
        "commit" => Ok(commit),
        "release" => Ok(release),
        _ => {
            let error = EngineError::InvalidRequest {
                field: "operation",
                message: format!("{operation:?} is not reserve, commit or release"),
            };
            Err(to_py_err(py, &error))
        }
    }
}
