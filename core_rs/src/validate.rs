//! Input checks against the named limits, run at every public entry point of the engine
//! before anything is looked at or changed.

use crate::errors::{EngineError, EngineResult};
use crate::limits::{
    ACTOR_BYTES_MAX, ID_BYTES_MAX, LINES_PER_REQUEST_MAX, QUANTITY_MAX, REASON_BYTES_MAX,
    TTL_MS_MAX, TTL_MS_MIN,
};

/// One requested line as the caller gave it; quantities are signed so that a negative
/// value is reported as a limit violation rather than wrapped.
#[derive(Clone, Copy, Debug)]
pub struct LineInput<'a> {
    pub sku: &'a str,
    pub location: &'a str,
    pub quantity: i64,
}

fn limit(field: &'static str, bound: u64) -> EngineError {
    EngineError::LimitExceeded { field, bound }
}

/// Texts are stored in PostgreSQL, whose text type cannot hold U+0000: a NUL accepted here
/// would fail the whole group commit it lands in.
pub const NUL_MESSAGE: &str = "must not contain NUL (U+0000)";

fn storable(field: &'static str, value: &str) -> EngineResult<()> {
    if has_nul(value.as_bytes()) {
        return Err(EngineError::InvalidRequest {
            field,
            message: NUL_MESSAGE.to_string(),
        });
    }
    Ok(())
}

/// Whether `bytes` holds a zero byte. Every id of every call is checked, and ids are
/// short, where the standard search goes byte by byte: sixteen bytes at a time instead,
/// the last block overlapping the one before. (`memchr::memchr`, a dependency already,
/// costs more on such short texts: 2,812 -> 2,994 instructions per reserve + release pair,
/// callgrind on core_rs/examples/pairs.rs.)
#[cfg(target_arch = "x86_64")]
fn has_nul(bytes: &[u8]) -> bool {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
    };
    let length = bytes.len();
    if length < 16 {
        return has_nul_in_words(bytes);
    }
    let start = bytes.as_ptr();
    // SAFETY: every load reads 16 bytes starting at most `length - 16` bytes into `bytes`;
    // unaligned loads are allowed, and SSE2 is part of the x86_64 baseline.
    unsafe {
        let zero = _mm_setzero_si128();
        let zeros_at = |at: usize| _mm_cmpeq_epi8(_mm_loadu_si128(start.add(at).cast()), zero);
        let mut found = zeros_at(length - 16);
        let mut at = 0;
        while at + 16 <= length {
            found = _mm_or_si128(found, zeros_at(at));
            at += 16;
        }
        _mm_movemask_epi8(found) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn has_nul(bytes: &[u8]) -> bool {
    has_nul_in_words(bytes)
}

/// `has_nul` eight bytes at a time (a word has a zero byte exactly when subtracting one
/// from each byte borrows into a byte whose top bit was clear), the last word overlapping
/// the one before.
fn has_nul_in_words(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let length = bytes.len();
    if length < 8 {
        return bytes.iter().fold(false, |found, &byte| found | (byte == 0));
    }
    let word = |at: usize| u64::from_le_bytes(*bytes[at..].first_chunk().expect("8 bytes"));
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut found = zero_bytes(word(length - 8));
    let mut at = 0;
    while at + 8 <= length {
        found |= zero_bytes(word(at));
        at += 8;
    }
    found != 0
}

/// A mandatory id: 1..=ID_BYTES_MAX bytes.
pub fn id(field: &'static str, value: &str) -> EngineResult<()> {
    if value.is_empty() {
        return Err(limit(field, 1));
    }
    if value.len() > ID_BYTES_MAX {
        return Err(limit(field, ID_BYTES_MAX as u64));
    }
    storable(field, value)
}

/// An id that may be empty (location, order id).
pub fn optional_id(field: &'static str, value: &str) -> EngineResult<()> {
    if value.len() > ID_BYTES_MAX {
        return Err(limit(field, ID_BYTES_MAX as u64));
    }
    storable(field, value)
}

pub fn request_id(value: Option<&str>) -> EngineResult<()> {
    value.map_or(Ok(()), |v| id("request_id", v))
}

pub fn quantity(field: &'static str, value: i64) -> EngineResult<u64> {
    if value < 1 {
        return Err(limit(field, 1));
    }
    if value as u64 > QUANTITY_MAX {
        return Err(limit(field, QUANTITY_MAX));
    }
    Ok(value as u64)
}

pub fn ttl_ms(value: i64) -> EngineResult<()> {
    if value < TTL_MS_MIN {
        return Err(limit("ttl_ms", TTL_MS_MIN as u64));
    }
    if value > TTL_MS_MAX {
        return Err(limit("ttl_ms", TTL_MS_MAX as u64));
    }
    Ok(())
}

pub fn reason_actor(reason: &str, actor: &str) -> EngineResult<()> {
    if reason.len() > REASON_BYTES_MAX {
        return Err(limit("reason", REASON_BYTES_MAX as u64));
    }
    if actor.len() > ACTOR_BYTES_MAX {
        return Err(limit("actor", ACTOR_BYTES_MAX as u64));
    }
    storable("reason", reason)?;
    storable("actor", actor)
}

pub fn line_count(count: usize, allow_empty: bool) -> EngineResult<()> {
    if count == 0 && !allow_empty {
        return Err(limit("lines", 1));
    }
    if count > LINES_PER_REQUEST_MAX {
        return Err(limit("lines", LINES_PER_REQUEST_MAX as u64));
    }
    Ok(())
}

/// Every line of a request: count, sku, location and quantity.
pub fn lines(lines: &[LineInput<'_>], allow_empty: bool) -> EngineResult<()> {
    line_count(lines.len(), allow_empty)?;
    for line in lines {
        id("sku", line.sku)?;
        optional_id("location", line.location)?;
        quantity("quantity", line.quantity)?;
    }
    Ok(())
}

/// A count argument such as `max_count`: 1..=bound.
pub fn count(field: &'static str, value: usize, bound: usize) -> EngineResult<()> {
    if value < 1 {
        return Err(limit(field, 1));
    }
    if value > bound {
        return Err(limit(field, bound as u64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{has_nul, has_nul_in_words};

    #[test]
    fn nul_is_found_at_every_position_and_length() {
        for has_nul in [has_nul, has_nul_in_words] {
            nul_is_found_by(has_nul);
        }
    }

    fn nul_is_found_by(has_nul: fn(&[u8]) -> bool) {
        for length in 0..70 {
            let clean: Vec<u8> = (0..length).map(|i| 1 + (i * 37 % 255) as u8).collect();
            assert!(!has_nul(&clean), "length {length}");
            let mut high = clean.clone();
            high.iter_mut().for_each(|byte| *byte |= 0x80);
            assert!(!has_nul(&high), "length {length}, high bytes");
            for position in 0..length {
                let mut with_nul = clean.clone();
                with_nul[position] = 0;
                assert!(has_nul(&with_nul), "length {length}, NUL at {position}");
            }
        }
    }
}
