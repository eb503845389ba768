//! Protobuf written by hand: keys, varints, length-delimited fields, unknown fields, and
//! requests encoded and checked to decode back to themselves.

use super::*;

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const START_GROUP: u8 = 3;
pub(super) const END_GROUP: u8 = 4;
pub(super) const FIXED32: u8 = 5;

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

pub(super) fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A length prefix and `body`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// 0 to 3 fields with numbers no message of the protocol uses, of every wire type (`Request`
/// uses or reserves 1 and 10 to 89).
pub(super) fn unknown_fields(rng: &mut Rng) -> Vec<u8> {
    const NUMBERS: [u32; 6] = [2, 7, 9, 177, 1000, 536_870_911];
    let mut out = Vec::new();
    for _ in 0..rng.below(4) {
        let field = NUMBERS[rng.below(NUMBERS.len() as u64) as usize];
        match rng.below(5) {
            0 => {
                put_key(&mut out, field, VARINT);
                put_varint(&mut out, rng.next_u64());
            }
            1 => {
                put_key(&mut out, field, FIXED64);
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            2 => {
                put_key(&mut out, field, FIXED32);
                out.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes());
            }
            3 => put_len(&mut out, field, &rng.bytes(32)),
            _ => {
                put_key(&mut out, field, START_GROUP);
                put_key(&mut out, 3, VARINT);
                put_varint(&mut out, rng.next_u64());
                put_key(&mut out, field, END_GROUP);
            }
        }
    }
    out
}

/// Encodes `request`, with unknown fields appended one time in three, and checks that it
/// decodes back to `request`.
pub(super) fn encode_checked(rng: &mut Rng, request: &Request) -> Vec<u8> {
    let mut body = request.encode_to_vec();
    if rng.one_in(3) {
        body.extend_from_slice(&unknown_fields(rng));
    }
    let decoded = Request::decode(&body[..]).expect("a generated request decodes");
    assert_eq!(&decoded, request, "a generated request decodes to itself");
    body
}

pub(super) fn outgoing(kind: &'static str, body: &[u8], expect: Expect) -> Outgoing {
    Outgoing { kind, bytes: framed(body), expect }
}
