//! Typed exceptions under one base `EngineError`; each instance carries `.code` and the
//! attributes listed in docs/ENGINE_API.md.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::EngineError as Error;

create_exception!(
    service._core,
    EngineError,
    PyException,
    "Base of every engine error."
);
create_exception!(service._core, LimitExceeded, EngineError);
create_exception!(service._core, InvalidRequest, EngineError);
create_exception!(service._core, ShortStock, EngineError);
create_exception!(service._core, UnknownItem, EngineError);
create_exception!(service._core, UnknownReservation, EngineError);
create_exception!(service._core, WrongState, EngineError);
create_exception!(service._core, OnHandBelowReserved, EngineError);
create_exception!(service._core, ExpectedMismatch, EngineError);
create_exception!(service._core, IdempotencyConflict, EngineError);
create_exception!(service._core, ReservationExists, EngineError);
create_exception!(service._core, CapacityExceeded, EngineError);
create_exception!(service._core, RecoveryMismatch, EngineError);

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("EngineError", py.get_type::<EngineError>())?;
    module.add("LimitExceeded", py.get_type::<LimitExceeded>())?;
    module.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    module.add("ShortStock", py.get_type::<ShortStock>())?;
    module.add("UnknownItem", py.get_type::<UnknownItem>())?;
    module.add("UnknownReservation", py.get_type::<UnknownReservation>())?;
    module.add("WrongState", py.get_type::<WrongState>())?;
    module.add("OnHandBelowReserved", py.get_type::<OnHandBelowReserved>())?;
    module.add("ExpectedMismatch", py.get_type::<ExpectedMismatch>())?;
    module.add("IdempotencyConflict", py.get_type::<IdempotencyConflict>())?;
    module.add("ReservationExists", py.get_type::<ReservationExists>())?;
    module.add("CapacityExceeded", py.get_type::<CapacityExceeded>())?;
    module.add("RecoveryMismatch", py.get_type::<RecoveryMismatch>())?;
    Ok(())
}

fn new_error(error: &Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::LimitExceeded { .. } => LimitExceeded::new_err(message),
        Error::InvalidRequest { .. } => InvalidRequest::new_err(message),
        Error::ShortStock { .. } => ShortStock::new_err(message),
        Error::UnknownItem { .. } => UnknownItem::new_err(message),
        Error::UnknownReservation { .. } => UnknownReservation::new_err(message),
        Error::WrongState { .. } => WrongState::new_err(message),
        Error::OnHandBelowReserved { .. } => OnHandBelowReserved::new_err(message),
        Error::ExpectedMismatch { .. } => ExpectedMismatch::new_err(message),
        Error::IdempotencyConflict { .. } => IdempotencyConflict::new_err(message),
        Error::ReservationExists { .. } => ReservationExists::new_err(message),
        Error::CapacityExceeded { .. } => CapacityExceeded::new_err(message),
        Error::RecoveryMismatch { .. } => RecoveryMismatch::new_err(message),
    }
}

/// Sets the error's attributes on the exception instance.
fn set_attributes(value: &Bound<'_, PyAny>, error: &Error) -> PyResult<()> {
    let py = value.py();
    value.setattr("code", error.code())?;
    match error {
        Error::LimitExceeded { field, bound } => {
            value.setattr("field", *field)?;
            value.setattr("bound", *bound)?;
        }
        Error::InvalidRequest { field, .. } => value.setattr("field", *field)?,
        Error::ShortStock { shortfalls } => {
            let rows = shortfalls
                .iter()
                .map(|s| (&*s.sku, &*s.location, s.requested, s.available));
            value.setattr("shortfalls", PyList::new(py, rows)?)?;
        }
        Error::UnknownItem { items } => value.setattr("items", PyList::new(py, items)?)?,
        Error::UnknownReservation { reservation_id } => {
            value.setattr("reservation_id", reservation_id)?;
        }
        Error::WrongState {
            reservation_id,
            status,
            operation,
        } => {
            value.setattr("reservation_id", reservation_id)?;
            value.setattr("status", status.as_str())?;
            value.setattr("operation", *operation)?;
        }
        Error::OnHandBelowReserved {
            sku,
            location,
            on_hand,
            reserved,
        } => {
            value.setattr("sku", sku)?;
            value.setattr("location", location)?;
            value.setattr("on_hand", *on_hand)?;
            value.setattr("reserved", *reserved)?;
        }
        Error::ExpectedMismatch {
            sku,
            location,
            expected,
            actual,
        } => {
            value.setattr("sku", sku)?;
            value.setattr("location", location)?;
            value.setattr("expected", *expected)?;
            value.setattr("actual", *actual)?;
        }
        Error::IdempotencyConflict { request_id } => value.setattr("request_id", request_id)?,
        Error::ReservationExists { reservation_id } => {
            value.setattr("reservation_id", reservation_id)?;
        }
        Error::CapacityExceeded { what } => value.setattr("what", *what)?,
        Error::RecoveryMismatch { .. } => {}
    }
    Ok(())
}

/// The exception raised for an engine error.
pub fn to_py_err(py: Python<'_>, error: &Error) -> PyErr {
    let err = new_error(error);
    if let Err(failure) = set_attributes(err.value(py).as_any(), error) {
        return failure;
    }
    err
}

/// The exception instance (not raised), for batch results.
pub fn to_py_exception<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyAny>> {
    let err = to_py_err(py, error);
    Ok(err.value(py).clone().into_any())
}
