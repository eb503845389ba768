//! Byte classes of text, many bytes at a time: which bytes of a 64-byte block are blanks (the
//! word split of `fields`), and whether a key needs JSON escapes. SSE2 where the target has it
//! (every x86-64), through `safe_arch`'s safe wrappers (this crate has no unsafe code); eight
//! bytes at a time in a `u64` elsewhere.
//!
//! Invariant: each function answers exactly what its byte-at-a-time reference (`is_blank`, a
//! byte loop over `is_plain_json_byte`) answers, for any bytes; the property tests check it.

/// Bit `i` set when byte `i` of `block` (at most 64 bytes) is a blank ([`is_blank`]); the
/// bits past its end are set (past the line's end counts as blank, which ends a word open
/// there). A short block is padded with spaces first.
pub(super) fn blanks_of_block(block: &[u8]) -> u64 {
    match <&[u8; 64]>::try_from(block) {
        Ok(full) => blanks_of_full(full),
        Err(_) => {
            let mut padded = [b' '; 64];
            let n = block.len().min(64);
            padded[..n].copy_from_slice(&block[..n]);
            blanks_of_full(&padded)
        }
    }
}

/// [`blanks_of_block`] of a whole block: SSE2 compares 16 bytes at a time for "≤ 0x20" and
/// "is a space"; the rare bytes that are the one and not the other (a tab, or a control byte
/// that is no blank) are looked at alone.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn blanks_of_full(block: &[u8; 64]) -> u64 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, m128i, min_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let space = set_splat_i8_m128i(0x20);
    let (mut low, mut spaces) = (0u64, 0u64);
    for (i, part) in block.chunks_exact(16).enumerate() {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(part);
        let v = m128i::from(bytes);
        // Unsigned `v <= 0x20`: the minimum of the two is `v` itself.
        let le = cmp_eq_mask_i8_m128i(min_u8_m128i(v, space), v);
        let sp = cmp_eq_mask_i8_m128i(v, space);
        low |= u64::from(move_mask_i8_m128i(le) as u16) << (16 * i);
        spaces |= u64::from(move_mask_i8_m128i(sp) as u16) << (16 * i);
    }
    let mut blank = spaces;
    let mut others = low & !spaces;
    while others != 0 {
        let i = others.trailing_zeros() as usize;
        others &= others - 1;
        if block.get(i).is_some_and(|&b| is_blank(b)) {
            blank |= 1 << i;
        }
    }
    blank
}

/// [`blanks_of_full`] without SSE2: eight bytes at a time in a `u64` (also checked against
/// the byte loop on x86-64, by the tests).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn blanks_of_full(block: &[u8; 64]) -> u64 {
    blanks_of_words(block)
}

/// [`blanks_of_full`] eight bytes at a time.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn blanks_of_words(block: &[u8; 64]) -> u64 {
    let mut blank = 0u64;
    for (j, bytes) in block.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        blank |= u64::from(blanks_of(u64::from_le_bytes(word))) << (8 * j);
    }
    blank
}

/// Bit `i` set when byte `i` of `chunk` (little-endian) is a blank ([`is_blank`]).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn blanks_of(chunk: u64) -> u8 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // High bit of each byte below 0x21 — exact per byte: or-ing the high bit in first keeps
    // the subtraction from borrowing across bytes.
    let low = !((chunk | HIGH) - ONES * 0x21) & !chunk & HIGH;
    let mut mask = ((low >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
    // Most bytes below 0x21 are spaces; anything else (a tab, or a control byte that is not a
    // blank) is looked at alone.
    let spaces = chunk ^ (ONES * 0x20);
    let space = !(((spaces & !HIGH) + !HIGH) | spaces) & HIGH;
    let space = ((space >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
    let mut others = mask & !space;
    while others != 0 {
        let i = others.trailing_zeros();
        others &= others - 1;
        if !is_blank((chunk >> (8 * i)) as u8) {
            mask &= !(1 << i);
        }
    }
    mask
}

/// awk's default field separators: space, tab, newline (and CR, FF).
pub(super) fn is_blank(b: u8) -> bool {
    // A table, not a chain of comparisons: this runs for every byte up to the last pick.
    const BLANK: [bool; 256] = {
        let mut t = [false; 256];
        t[b' ' as usize] = true;
        t[b'\t' as usize] = true;
        t[b'\n' as usize] = true;
        t[b'\r' as usize] = true;
        t[0x0c] = true;
        t
    };
    BLANK[b as usize]
}

/// Whether a key's bytes are their own JSON string's contents: printable ASCII but `"` and
/// `\` (the commonest key by far, which then needs no escaping).
pub(super) fn is_plain_json(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let mut lanes = [0u8; 16];
        lanes.copy_from_slice(block);
        if !plain_lanes(lanes) {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| is_plain_json_byte(b))
}

/// [`is_plain_json`] of one byte.
fn is_plain_json_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// [`is_plain_json`] of 16 bytes with SSE2: none below 0x20, none with the high bit, none of
/// 0x7f, `"`, `\`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn plain_lanes(lanes: [u8; 16]) -> bool {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let v = m128i::from(lanes);
    let eq = |b: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8));
    // Unsigned `v <= 0x1f`: the minimum of the two is `v` itself.
    let control = cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x1f)), v);
    let bad = bitor_m128i(bitor_m128i(control, eq(0x7f)), bitor_m128i(eq(b'"'), eq(b'\\')));
    // The high bit of each lane of `v` is a byte ≥ 0x80.
    move_mask_i8_m128i(bitor_m128i(bad, v)) == 0
}

/// [`is_plain_json`] of 16 bytes, one at a time.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn plain_lanes(lanes: [u8; 16]) -> bool {
    lanes.iter().all(|&b| is_plain_json_byte(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The block classifier (and the eight-bytes-at-a-time one) against `is_blank` a byte
        /// at a time, full blocks and short ones.
        #[test]
        fn blanks_are_classified_as_byte_by_byte(
            block in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(b" \t\n\r\x0b\x0c\x00\x1f\x20\x21\x7f\x80\xa0\xff".to_vec()),
                    any::<u8>(),
                ],
                0..=64),
        ) {
            let mask = blanks_of_block(&block);
            for i in 0..64 {
                let want = block.get(i).is_none_or(|&b| is_blank(b));
                prop_assert_eq!(mask & (1 << i) != 0, want, "byte {} of {:?}", i, block);
            }
            if let Ok(full) = <&[u8; 64]>::try_from(&block[..]) {
                prop_assert_eq!(blanks_of_words(full), mask);
            }
        }

        /// Plain keys against the byte loop, on bytes near every edge of the class.
        #[test]
        fn plain_json_is_decided_as_byte_by_byte(
            bytes in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(b"\x00\x1f\x20\x21\"\\\x7e\x7f\x80\xff/az".to_vec()),
                    any::<u8>(),
                ],
                0..80),
        ) {
            prop_assert_eq!(is_plain_json(&bytes), bytes.iter().all(|&b| is_plain_json_byte(b)));
        }
    }

    #[test]
    fn a_long_plain_key_with_one_escape_late_is_not_plain() {
        let mut key = b"/a/long/path/that/is/plain/for/many/blocks".to_vec();
        assert!(is_plain_json(&key));
        key[37] = b'"';
        assert!(!is_plain_json(&key));
        key[37] = 0x80;
        assert!(!is_plain_json(&key));
    }
}
