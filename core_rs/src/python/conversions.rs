//! Python values to engine inputs. Integers that do not fit are reported as the limit
//! they break, not as a bare OverflowError.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyAnyMethods, PyList, PyTuple};
use pyo3::Borrowed;
use smallvec::SmallVec;

use super::exceptions::to_py_err;
use crate::engine::{LoadHold, LoadIdempotency, LoadItem};
use crate::errors::EngineError;
use crate::limits::{LINES_PER_REQUEST_MAX, QUANTITY_MAX};
use crate::validate::LineInput;

/// Builds a Python tuple of any length from values convertible to Python objects.
macro_rules! tuple {
    ($py:expr; $($value:expr),+ $(,)?) => {
        pyo3::types::PyTuple::new($py, [$(
            pyo3::IntoPyObjectExt::into_bound_py_any($value, $py)?
        ),+])?
    };
}
pub(crate) use tuple;

/// An integer argument; one that does not fit i64 breaks the limit `bound` of `field`.
pub fn integer(value: &Bound<'_, PyAny>, field: &'static str, bound: u64) -> PyResult<i64> {
    integer_borrowed(value.as_borrowed(), field, bound)
}

fn integer_borrowed(
    value: Borrowed<'_, '_, PyAny>,
    field: &'static str,
    bound: u64,
) -> PyResult<i64> {
    match value.extract::<i64>() {
        Ok(value) => Ok(value),
        Err(error) if error.is_instance_of::<pyo3::exceptions::PyOverflowError>(value.py()) => Err(
            to_py_err(value.py(), &EngineError::LimitExceeded { field, bound }),
        ),
        Err(error) => Err(error),
    }
}

/// A request line as extracted: the strings stay owned by Python (no copy).
pub struct Line {
    pub sku: PyBackedStr,
    pub location: PyBackedStr,
    pub quantity: i64,
}

impl Line {
    pub fn input(&self) -> LineInput<'_> {
        LineInput {
            sku: &self.sku,
            location: &self.location,
            quantity: self.quantity,
        }
    }
}

/// Lines of one request; up to this many stay on the stack (requests rarely have more).
const LINES_INLINE: usize = 4;

/// Converted request lines, without a heap allocation for the usual few.
pub type Lines = SmallVec<[Line; LINES_INLINE]>;
pub type Inputs<'a> = SmallVec<[LineInput<'a>; LINES_INLINE]>;

/// `lines`: a sequence of `(sku, location, quantity)` tuples, at most LINES_PER_REQUEST_MAX.
pub fn lines(value: &Bound<'_, PyAny>) -> PyResult<Lines> {
    let py = value.py();
    let count = value.len()?;
    if count > LINES_PER_REQUEST_MAX {
        let bound = LINES_PER_REQUEST_MAX as u64;
        let error = EngineError::LimitExceeded {
            field: "lines",
            bound,
        };
        return Err(to_py_err(py, &error));
    }
    let mut lines = Lines::with_capacity(count);
    // Lists (the usual case) are walked directly, without a Python iterator object.
    if let Ok(list) = value.cast::<PyList>() {
        for line in list.iter() {
            lines.push(line_from(&line)?);
        }
    } else {
        for line in value.try_iter()? {
            lines.push(line_from(&line?)?);
        }
    }
    Ok(lines)
}

fn line_from(line: &Bound<'_, PyAny>) -> PyResult<Line> {
    let line = line.cast::<PyTuple>()?;
    if line.len() != 3 {
        let message = "a line is (sku, location, quantity)".to_string();
        let error = EngineError::InvalidRequest {
            field: "lines",
            message,
        };
        return Err(to_py_err(line.py(), &error));
    }
    let quantity = line.get_borrowed_item(2)?;
    Ok(Line {
        sku: line.get_borrowed_item(0)?.extract()?,
        location: line.get_borrowed_item(1)?.extract()?,
        quantity: integer_borrowed(quantity, "quantity", QUANTITY_MAX)?,
    })
}

pub fn inputs(lines: &[Line]) -> Inputs<'_> {
    lines.iter().map(Line::input).collect()
}

/// `(sku, location, on_hand, reserved, safety_stock)`.
type ItemRow = (String, String, i64, i64, i64);

pub fn load_items(value: &Bound<'_, PyAny>) -> PyResult<Vec<LoadItem>> {
    let mut items = Vec::with_capacity(value.len()?);
    for row in value.try_iter()? {
        let (sku, location, on_hand, reserved, safety_stock): ItemRow = row?.extract()?;
        items.push(LoadItem {
            sku,
            location,
            on_hand,
            reserved,
            safety_stock,
        });
    }
    Ok(items)
}

/// `(reservation_id, order_id, expires_at_ms, created_at_ms, lines)`.
type HoldRow = (String, String, i64, i64, Vec<(String, String, i64)>);

pub fn load_holds(value: &Bound<'_, PyAny>) -> PyResult<Vec<LoadHold>> {
    let mut holds = Vec::with_capacity(value.len()?);
    for row in value.try_iter()? {
        let row = row?;
        let (reservation_id, order_id, expires_at_ms, created_at_ms, lines): HoldRow =
            row.extract()?;
        holds.push(LoadHold {
            reservation_id,
            order_id,
            expires_at_ms,
            created_at_ms,
            lines,
        });
    }
    Ok(holds)
}

pub fn load_idempotency(value: &Bound<'_, PyAny>) -> PyResult<Vec<LoadIdempotency>> {
    let mut records = Vec::with_capacity(value.len()?);
    for row in value.try_iter()? {
        let (request_id, fingerprint, operation, outcome_json, created_at_ms): (
            String,
            i64,
            String,
            String,
            i64,
        ) = row?.extract()?;
        records.push(LoadIdempotency {
            request_id,
            fingerprint,
            operation,
            outcome_json,
            created_at_ms,
        });
    }
    Ok(records)
}
