//! Every bound the engine enforces, in one place. The binding re-exports them as `LIMITS`.
//!
//! Inputs are checked against these at the engine's public entry points (see `validate.rs`)
//! and the internals assert them again, so a bug cannot silently store an out-of-range value.

/// Request, reservation and order ids, sku and location: bytes of UTF-8. Sized for UUIDs and
/// typical ERP codes with room to spare, small enough to keep per-hold memory predictable.
pub const ID_BYTES_MAX: usize = 128;
/// A request with more lines than this is almost certainly a bug or an attack; it also bounds
/// the work done while the engine lock is held.
pub const LINES_PER_REQUEST_MAX: usize = 1_000;
/// Per line and per adjust delta magnitude.
pub const QUANTITY_MAX: u64 = 1_000_000_000;
/// The largest on-hand quantity of one item; a million lines of QUANTITY_MAX fit without
/// overflowing i64 arithmetic in the ledger.
pub const ON_HAND_MAX: u64 = 1_000_000_000_000_000;
/// Hold lifetimes: long enough for a checkout, short enough that abandoned holds come back.
pub const TTL_MS_MIN: i64 = 1_000;
pub const TTL_MS_MAX: i64 = 86_400_000;
pub const TTL_MS_DEFAULT: i64 = 900_000;
/// Free text attached to stock adjustments.
pub const REASON_BYTES_MAX: usize = 256;
pub const ACTOR_BYTES_MAX: usize = 128;
/// Requests per batch call: bounds the time the engine lock is held by one call.
pub const BATCH_REQUESTS_MAX: usize = 1_000;
/// Lines of all the requests of one batch call together: with BATCH_REQUESTS_MAX, bounds the
/// time one call holds the engine.
pub const BATCH_LINES_MAX: usize = 100_000;
/// Reservations expired by one `expire_due` call.
pub const EXPIRE_BATCH_MAX: usize = 10_000;
/// Operations drained by one `take_journal` call (one PostgreSQL transaction).
pub const JOURNAL_TAKE_OPERATIONS_MAX: usize = 10_000;
/// Skus looked up by one `get_stock` call.
pub const STOCK_QUERY_SKUS_MAX: usize = 1_000;

/// Configuration bounds. Slots and item indices are u32, so no table may exceed that.
pub const IDEMPOTENCY_RECORDS_MAX_DEFAULT: usize = 1_000_000;
pub const RESERVATIONS_ACTIVE_MAX_DEFAULT: usize = 2_000_000;
pub const RESERVATIONS_TERMINAL_MAX_DEFAULT: usize = 100_000;
pub const ITEMS_MAX_DEFAULT: usize = 10_000_000;
pub const JOURNAL_OPERATIONS_MAX_DEFAULT: usize = 200_000;
/// Upper bound of any configured table size (slots and item indices are u32).
pub const TABLE_SIZE_MAX: usize = 1 << 30;

/// At most this many MiB are touched at start-up (`memory::prefault`).
pub const PREFAULT_MIB_MAX: usize = 65_536;

/// Every limit by name, for the binding's `LIMITS` dict.
pub const LIMITS: &[(&str, u64)] = &[
    ("ID_BYTES_MAX", ID_BYTES_MAX as u64),
    ("LINES_PER_REQUEST_MAX", LINES_PER_REQUEST_MAX as u64),
    ("QUANTITY_MAX", QUANTITY_MAX),
    ("ON_HAND_MAX", ON_HAND_MAX),
    ("TTL_MS_MIN", TTL_MS_MIN as u64),
    ("TTL_MS_MAX", TTL_MS_MAX as u64),
    ("TTL_MS_DEFAULT", TTL_MS_DEFAULT as u64),
    ("REASON_BYTES_MAX", REASON_BYTES_MAX as u64),
    ("ACTOR_BYTES_MAX", ACTOR_BYTES_MAX as u64),
    ("BATCH_REQUESTS_MAX", BATCH_REQUESTS_MAX as u64),
    ("BATCH_LINES_MAX", BATCH_LINES_MAX as u64),
    ("EXPIRE_BATCH_MAX", EXPIRE_BATCH_MAX as u64),
    (
        "JOURNAL_TAKE_OPERATIONS_MAX",
        JOURNAL_TAKE_OPERATIONS_MAX as u64,
    ),
    ("STOCK_QUERY_SKUS_MAX", STOCK_QUERY_SKUS_MAX as u64),
    (
        "IDEMPOTENCY_RECORDS_MAX_DEFAULT",
        IDEMPOTENCY_RECORDS_MAX_DEFAULT as u64,
    ),
    (
        "RESERVATIONS_ACTIVE_MAX_DEFAULT",
        RESERVATIONS_ACTIVE_MAX_DEFAULT as u64,
    ),
    (
        "RESERVATIONS_TERMINAL_MAX_DEFAULT",
        RESERVATIONS_TERMINAL_MAX_DEFAULT as u64,
    ),
    ("ITEMS_MAX_DEFAULT", ITEMS_MAX_DEFAULT as u64),
    (
        "JOURNAL_OPERATIONS_MAX_DEFAULT",
        JOURNAL_OPERATIONS_MAX_DEFAULT as u64,
    ),
    ("TABLE_SIZE_MAX", TABLE_SIZE_MAX as u64),
    ("PREFAULT_MIB_MAX", PREFAULT_MIB_MAX as u64),
];

// Compile-time checks of the relations the arithmetic relies on.
const _: () = assert!(ON_HAND_MAX < (i64::MAX as u64) / 4);
const _: () = assert!(QUANTITY_MAX * (LINES_PER_REQUEST_MAX as u64) <= ON_HAND_MAX);
const _: () = assert!(TTL_MS_MIN <= TTL_MS_DEFAULT && TTL_MS_DEFAULT <= TTL_MS_MAX);
const _: () = assert!(TABLE_SIZE_MAX <= u32::MAX as usize);
