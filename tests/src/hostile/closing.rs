//! Closing frames: frames after which the broker ends the connection.

use super::wire::*;
use super::*;

/// One frame after which the broker must close the connection.
pub fn closing(rng: &mut Rng, target: &Target) -> Closing {
    match rng.below(100) {
        0..30 => too_large(rng, target),
        30..58 => undecodable(rng),
        58..78 => truncated(rng, target),
        78..89 => random_raw(rng, target),
        _ => random_body(rng),
    }
}

/// A length prefix over the limit, alone: the broker must refuse it before reading on.
fn too_large(rng: &mut Rng, target: &Target) -> Closing {
    let max = target.max_frame_bytes;
    let len = match rng.below(3) {
        0 => u32::MAX,
        1 => max + 1,
        _ => max + 1 + rng.below(u64::from(u32::MAX - max)) as u32,
    };
    Closing {
        kind: "frame_too_large",
        bytes: len.to_le_bytes().to_vec(),
        delivery: Delivery::Send,
        expect: CloseExpect::ErrorThenClose(ErrorCode::FrameTooLarge),
    }
}

/// A frame whose message is not a `Request`: checked here to fail decoding.
fn undecodable(rng: &mut Rng) -> Closing {
    let mut body = Vec::new();
    if rng.one_in(2) {
        put_key(&mut body, 1, VARINT);
        put_varint(&mut body, 1 + rng.below(1000));
    }
    let kind = match rng.below(14) {
        0 => {
            // A message field (api_versions) sent as a varint.
            put_key(&mut body, 10, VARINT);
            put_varint(&mut body, 1);
            "message_as_varint"
        }
        1 => {
            // A string where a message (ProduceRequest) is expected.
            put_len(&mut body, 16, b"this is a string, not a ProduceRequest");
            "string_as_message"
        }
        2 => {
            // A string where a nested message (FetchTopic) is expected.
            let mut fetch = Vec::new();
            put_len(&mut fetch, 4, b"orders");
            put_len(&mut body, 17, &fetch);
            "string_as_nested_message"
        }
        3 => {
            // correlation_id (a varint) sent length-delimited.
            put_len(&mut body, 1, b"abc");
            "varint_as_bytes"
        }
        4 => {
            // A topic name that is not UTF-8.
            let mut create = Vec::new();
            put_len(&mut create, 1, &[0xff, 0xfe, 0xfd, b'x']);
            put_len(&mut body, 12, &create);
            "invalid_utf8_string"
        }
        5 => {
            // A length-delimited field longer than the frame.
            put_key(&mut body, 16, LEN);
            put_varint(&mut body, 1000 + rng.below(1 << 20));
            body.extend_from_slice(&rng.bytes(20));
            "field_past_frame_end"
        }
        6 => {
            // A field length of 2^64 - 1.
            put_key(&mut body, 17, LEN);
            put_varint(&mut body, u64::MAX);
            "huge_field_length"
        }
        7 => {
            // A varint that never ends within ten bytes.
            put_key(&mut body, 1, VARINT);
            body.extend_from_slice(&[0xff; 11]);
            "overlong_varint"
        }
        8 => {
            body.push(0x00);
            "field_number_zero"
        }
        9 => {
            put_key(&mut body, 2 + rng.below(8) as u32, 6 + rng.below(2) as u8);
            "invalid_wire_type"
        }
        10 => {
            // A record batch (bytes) sent as a varint, three messages deep.
            let mut partition = Vec::new();
            put_key(&mut partition, 2, VARINT);
            put_varint(&mut partition, 5);
            let mut topic = Vec::new();
            put_len(&mut topic, 2, &partition);
            let mut produce = Vec::new();
            put_len(&mut produce, 2, &topic);
            put_len(&mut body, 16, &produce);
            "bytes_as_varint_nested"
        }
        11 => {
            // An enum (acks) sent as fixed64.
            let mut produce = Vec::new();
            put_key(&mut produce, 1, FIXED64);
            produce.extend_from_slice(&99u64.to_le_bytes());
            put_len(&mut body, 16, &produce);
            "enum_as_fixed64"
        }
        12 => {
            // A group that is never closed.
            put_key(&mut body, 5, START_GROUP);
            put_key(&mut body, 1, VARINT);
            put_varint(&mut body, 1);
            "unterminated_group"
        }
        _ => {
            // A group closed by the wrong field number.
            put_key(&mut body, 5, START_GROUP);
            put_key(&mut body, 6, END_GROUP);
            "mismatched_group"
        }
    };
    assert!(Request::decode(&body[..]).is_err(), "{kind} frame decodes: {body:?}");
    Closing {
        kind,
        bytes: framed(&body),
        delivery: Delivery::Send,
        expect: CloseExpect::ErrorThenClose(ErrorCode::MalformedRequest),
    }
}

/// A valid request cut short (possibly inside its length prefix), then end-of-file.
fn truncated(rng: &mut Rng, target: &Target) -> Closing {
    let topics = (0..rng.below(20)).map(|i| format!("{}-{i}", target.topic)).collect();
    let request = Request {
        correlation_id: rng.next_u64(),
        body: Some(request::Body::Metadata(v1::MetadataRequest { topics })),
    };
    let mut bytes = framed(&request.encode_to_vec());
    bytes.truncate(rng.below(bytes.len() as u64) as usize);
    Closing {
        kind: "truncated",
        bytes,
        delivery: Delivery::SendThenShutdown,
        expect: CloseExpect::SilentClose,
    }
}

/// Random bytes, length prefix included: predicted where the prefix alone decides.
fn random_raw(rng: &mut Rng, target: &Target) -> Closing {
    let mut bytes = rng.bytes(512);
    bytes.push(rng.next_u64() as u8);
    let expect = match bytes.get(..4) {
        None => CloseExpect::SilentClose,
        Some(prefix) => {
            let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            if len > target.max_frame_bytes {
                CloseExpect::ErrorThenClose(ErrorCode::FrameTooLarge)
            } else if bytes.len() - 4 < len as usize {
                CloseExpect::SilentClose
            } else {
                CloseExpect::Anything
            }
        }
    };
    Closing { kind: "random_raw", bytes, delivery: Delivery::SendThenShutdown, expect }
}

/// Random bytes in a well-formed frame: predicted when they do not decode.
fn random_body(rng: &mut Rng) -> Closing {
    let mut body = rng.bytes(255);
    body.push(rng.next_u64() as u8);
    let expect = if Request::decode(&body[..]).is_err() {
        CloseExpect::ErrorThenClose(ErrorCode::MalformedRequest)
    } else {
        CloseExpect::Anything
    };
    Closing {
        kind: "random_body",
        bytes: framed(&body),
        delivery: Delivery::SendThenShutdown,
        expect,
    }
}
