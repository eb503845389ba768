//! Frames: a u32 little-endian length, then that many bytes of one protobuf message.
//!
//! ```text
//! +----------------+------------------------------+
//! | length u32 LE  | message (length bytes)       |
//! +----------------+------------------------------+
//! ```
//!
//! The decoder checks the length against its limit *before* reserving anything, so a hostile
//! length prefix costs nothing. It distinguishes "need more bytes" (`Ok(None)`) from "bad bytes"
//! (`Err`), and hands out each message as a `Bytes` split off the read buffer, so `bytes`
//! fields (record batches) decode as slices of it without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Why a frame could not be taken from the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    // The decode error is shown, not chained as a source: it is this error's whole detail.
    #[error("message does not decode: {0}")]
    Decode(prost::DecodeError),
}

/// Takes whole frames from a growing read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: u32,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: u32) -> Self {
        Self { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// The next whole frame's message bytes, `Ok(None)` if the buffer does not hold one yet.
    /// Reserves room for the rest of a frame once its length is known to be within the limit.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = buf.get(..LENGTH_PREFIX) else { return Ok(None) };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge { len: u64::from(len), max: self.max_frame_bytes });
        }
        let total = LENGTH_PREFIX + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX);
        Ok(Some(buf.split_to(len as usize).freeze()))
    }

    /// The next whole frame decoded as `M`.
    pub fn next_message<M: Message + Default>(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<M>, FrameError> {
        match self.next_frame(buf)? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes).map(Some).map_err(FrameError::Decode),
        }
    }
}

/// Appends `message` to `out` as one frame.
pub fn encode_frame<M: Message>(message: &M, out: &mut BytesMut) {
    let len = message.encoded_len();
    out.reserve(LENGTH_PREFIX + len);
    out.put_u32_le(len as u32);
    // Cannot fail: the buffer was reserved to the encoded length.
    let _ = message.encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{FetchRequest, Request, request};
    use proptest::prelude::*;

    fn sample(id: u64) -> Request {
        Request {
            correlation_id: id,
            body: Some(request::Body::Fetch(FetchRequest {
                max_wait_ms: 5,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![],
                member: None,
                isolation: 0,
            })),
        }
    }

    #[test]
    fn round_trip_across_split_reads() {
        let mut wire = BytesMut::new();
        for id in 0..5 {
            encode_frame(&sample(id), &mut wire);
        }
        let decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(m) = decoder.next_message::<Request>(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, (0..5).map(sample).collect::<Vec<_>>());
        assert!(buf.is_empty());
    }

    #[test]
    fn huge_length_is_refused_before_reserving() {
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.next_frame(&mut buf),
            Err(FrameError::TooLarge { len: u64::from(u32::MAX), max: 1024 })
        );
        assert_eq!(buf.capacity(), capacity);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let decoder = FrameDecoder::new(256);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decoder.next_message::<Request>(&mut buf) {}
        }
    }
}
