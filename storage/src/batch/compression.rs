//! The four compression codecs of Kafka's record batches, over the records area of a batch.
//!
//! eddy stores a compressed batch as it was produced (a Kafka consumer gets the same bytes);
//! it decompresses only to check what it appends and to hand records to its own readers.
//! Decompression stops at [`MAX_DECOMPRESSED_BYTES`], so a small batch cannot expand into an
//! unbounded allocation.
//!
//! Codec framing follows what Kafka's clients write and read: gzip (RFC 1952), snappy either
//! raw or in the "xerial" block framing of Kafka's Java client, LZ4 frames, zstd frames.

use std::io::Read;

use super::BatchError;

/// Most bytes the records of one batch may take once decompressed.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 << 20;

/// A batch's compression codec, as numbered in its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec numbered `codec` in a batch's attributes.
    pub fn from_codec(codec: u16) -> Option<Self> {
        Some(match codec {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            _ => return None,
        })
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// The xerial framing's magic header (Kafka's Java client writes snappy this way).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses the records area of a batch compressed with `codec`.
pub fn decompress(codec: u16, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let fail = |reason: &'static str| BatchError::Decompress { codec, reason };
    let limit = MAX_DECOMPRESSED_BYTES as u64;
    let mut out = Vec::new();
    let read = match Compression::from_codec(codec) {
        None => return Err(BatchError::UnsupportedCompression { codec }),
        Some(Compression::None) => {
            out.extend_from_slice(data);
            return Ok(out);
        }
        Some(Compression::Gzip) => {
            flate2::read::GzDecoder::new(data).take(limit + 1).read_to_end(&mut out)
        }
        Some(Compression::Lz4) => {
            lz4_flex::frame::FrameDecoder::new(data).take(limit + 1).read_to_end(&mut out)
        }
        Some(Compression::Zstd) => match zstd::stream::read::Decoder::with_buffer(data) {
            Ok(d) => d.take(limit + 1).read_to_end(&mut out),
            Err(_) => return Err(fail("not a zstd frame")),
        },
        Some(Compression::Snappy) => return snappy(data, codec),
    };
    match read {
        Ok(_) if out.len() > MAX_DECOMPRESSED_BYTES => {
            Err(BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES as u64 })
        }
        Ok(_) => Ok(out),
        Err(_) => Err(fail("corrupt compressed data")),
    }
}

/// Raw snappy, or xerial-framed snappy: a 16-byte header, then blocks each prefixed by its
/// compressed length (big-endian u32).
fn snappy(data: &[u8], codec: u16) -> Result<Vec<u8>, BatchError> {
    let fail = |reason: &'static str| BatchError::Decompress { codec, reason };
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(raw).map_err(|_| fail("bad snappy block length"))?;
        if out.len() + len > MAX_DECOMPRESSED_BYTES {
            return Err(BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES as u64 });
        }
        let at = out.len();
        out.resize(at + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[at..])
            .map_err(|_| fail("corrupt snappy block"))?;
        Ok(())
    };
    if !data.starts_with(&XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).ok_or(fail("truncated xerial header"))?;
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return Err(fail("truncated xerial block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let raw = body.get(..len).ok_or(fail("truncated xerial block"))?;
        block(raw, &mut out)?;
        rest = &body[len..];
    }
    Ok(out)
}

/// Compresses a records area with `codec` (what a producer with `compression.type` does).
/// Snappy is written in the xerial framing, as Kafka's Java client writes it.
pub fn compress(codec: u16, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match Compression::from_codec(codec) {
        None | Some(Compression::None) => data.to_vec(),
        Some(Compression::Gzip) => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            let _ = e.write_all(data);
            e.finish().unwrap_or_default()
        }
        Some(Compression::Lz4) => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            let _ = e.write_all(data);
            e.finish().unwrap_or_default()
        }
        Some(Compression::Zstd) => zstd::bulk::compress(data, 1).unwrap_or_default(),
        Some(Compression::Snappy) => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&1u32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(32 << 10) {
                let block = encoder.compress_vec(chunk).unwrap_or_default();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
    }
}
