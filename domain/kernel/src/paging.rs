//! Pagination every list method shares (AIP-158): a page size that is
//! defaulted and capped, and opaque page tokens bound to the filter they were
//! issued for.

use crate::FieldViolation;

/// The page size of a list method when the request gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The largest page size a list method serves; a larger request is served
/// this many (AIP-158).
pub const MAX_PAGE_SIZE: u32 = 500;

/// The page size to serve: `raw` 0 means `default`, above `max` means `max`.
///
/// # Errors
/// A violation on `page_size` when negative.
pub fn page_size(raw: i32, default: u32, max: u32) -> Result<u32, FieldViolation> {
    match u32::try_from(raw) {
        Ok(0) => Ok(default.min(max)),
        Ok(size) => Ok(size.min(max)),
        Err(_) => Err(FieldViolation::new("page_size", "must not be negative")),
    }
}

const FORMAT: u8 = 1;

/// A 64-bit fingerprint of the filter a token belongs to (FNV-1a).
fn filter_hash(filter: &[u8]) -> [u8; 8] {
    filter
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
        .to_be_bytes()
}

/// The `next_page_token` for the page that ends at `cursor` (the keyset
/// position, in the list's own encoding), listed with `filter` (the request's
/// filter fields, encoded canonically by the list method).
#[must_use]
pub fn encode_page_token(filter: &[u8], cursor: &[u8]) -> String {
    std::iter::once(FORMAT)
        .chain(filter_hash(filter))
        .chain(cursor.iter().copied())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cursor of a `page_token`, `None` for the first page (an empty token).
///
/// # Errors
/// A violation on `page_token` when it is not a token this service issued, or
/// was issued for another filter.
pub fn decode_page_token(raw: &str, filter: &[u8]) -> Result<Option<Vec<u8>>, FieldViolation> {
    if raw.is_empty() {
        return Ok(None);
    }
    let unknown = || FieldViolation::new("page_token", "is not a token this service returned");
    let bytes: Vec<u8> = (0..raw.len())
        .step_by(2)
        .map(|i| raw.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(unknown)?;
    match bytes.as_slice() {
        [FORMAT, rest @ ..] if rest.len() >= 8 => {
            let (hash, cursor) = rest.split_at(8);
            if hash != filter_hash(filter) {
                return Err(FieldViolation::new(
                    "page_token",
                    "was issued for another filter; list again from the first page",
                ));
            }
            Ok(Some(cursor.to_vec()))
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn page_sizes_are_defaulted_and_capped() {
        assert_eq!(page_size(0, 50, 500), Ok(50));
        assert_eq!(page_size(7, 50, 500), Ok(7));
        assert_eq!(page_size(i32::MAX, 50, 500), Ok(500));
        assert_eq!(page_size(-1, 50, 500).unwrap_err().field(), "page_size");
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filter() {
        let token = encode_page_token(b"published", b"cursor");
        assert_eq!(
            decode_page_token(&token, b"published"),
            Ok(Some(b"cursor".to_vec()))
        );
        let other = decode_page_token(&token, b"draft").unwrap_err();
        assert!(other.description().contains("another filter"), "{other}");
        assert_eq!(decode_page_token("", b"x"), Ok(None));
        // Filters that differ in one bit are told apart.
        for (issued, asked) in [(&[0u8], &[1u8]), (&[0], &[2]), (&[1], &[3])] {
            let token = encode_page_token(issued, b"c");
            assert!(
                decode_page_token(&token, asked).is_err(),
                "{issued:?} vs {asked:?}"
            );
        }
        for junk in ["zz", "01", "é", &format!("{token}0"), "02000000000000000000"] {
            assert_eq!(
                decode_page_token(junk, b"published").unwrap_err().field(),
                "page_token"
            );
        }
    }
}
