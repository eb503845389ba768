//! LEB128 varints (unsigned) and zigzag varints (signed), as used inside records.
//!
//! Decoding never trusts its input: every read is bounds-checked and a varint longer than its
//! type allows is an error, so a hostile record cannot make the decoder loop or overflow.

/// Longest encoding of a `u64` (ceil(64 / 7)).
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `value` as an unsigned LEB128 varint.
#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends `value` as a zigzag varint (small magnitudes, either sign, stay short).
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, value: i64) {
    put_uvarint(buf, zigzag(value));
}

/// Number of bytes `put_uvarint` writes for `value`.
#[inline]
pub fn uvarint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bytes `put_varint` writes for `value`.
#[inline]
pub fn varint_len(value: i64) -> usize {
    uvarint_len(zigzag(value))
}

#[inline]
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    Overlong,
}

/// Reads an unsigned varint from the front of `input`; returns it and the bytes consumed.
#[inline(always)]
pub fn get_uvarint(input: &[u8]) -> Result<(u64, usize), VarintError> {
    // Fast path: most lengths and deltas inside a record fit in one byte.
    match input.first() {
        None => return Err(VarintError::Truncated),
        Some(&b) if b < 0x80 => return Ok((u64::from(b), 1)),
        Some(_) => {}
    }
    let mut value = 0u64;
    for (i, &byte) in input.iter().take(MAX_VARINT_LEN).enumerate() {
        let part = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(VarintError::Overlong);
        }
        value |= part << (7 * i);
        if byte < 0x80 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_VARINT_LEN {
        Err(VarintError::Overlong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a zigzag varint from the front of `input`; returns it and the bytes consumed.
#[inline(always)]
pub fn get_varint(input: &[u8]) -> Result<(i64, usize), VarintError> {
    get_uvarint(input).map(|(v, n)| (unzigzag(v), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_round_trips(v in any::<u64>()) {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            prop_assert_eq!(buf.len(), uvarint_len(v));
            prop_assert_eq!(get_uvarint(&buf), Ok((v, buf.len())));
        }

        #[test]
        fn varint_round_trips(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            prop_assert_eq!(get_varint(&buf), Ok((v, buf.len())));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = get_uvarint(&bytes);
            let _ = get_varint(&bytes);
        }
    }

    #[test]
    fn small_values_are_one_byte() {
        for v in [-1i64, 0, 1, 63, -64] {
            assert_eq!(varint_len(v), 1, "{v}");
        }
        assert_eq!(varint_len(64), 2);
    }

    #[test]
    fn truncated_and_overlong_are_distinguished() {
        assert_eq!(get_uvarint(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(get_uvarint(&[]), Err(VarintError::Truncated));
        assert_eq!(get_uvarint(&[0xff; 11]), Err(VarintError::Overlong));
        assert_eq!(
            get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overlong)
        );
    }
}
