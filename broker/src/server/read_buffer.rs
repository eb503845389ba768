//! A connection's read buffer, whose memory is used again once the requests read into it are
//! done with it.
//!
//! Frames are split off the front of the buffer as `Bytes` (a produce request's batches are
//! appended from those very bytes, never copied), so a request keeps its part of the buffer
//! alive until it finishes. With several requests in flight the buffer is rarely the sole owner
//! of its memory when a large frame needs room, and a fresh allocation of megabytes per frame
//! costs more than it seems: the allocator returns freed memory to the kernel and each new
//! buffer is faulted in and zeroed page by page. So the buffers a connection moved away from
//! are kept (a few, up to [`SPARE_BYTES`]) and taken again once every request that held part of
//! them has finished.

use bytes::BytesMut;
use eddy_protocol::frame::LENGTH_PREFIX;

/// Capacity of a connection's first buffer, and the least it asks for when it needs more.
pub(super) const READ_CHUNK: usize = 64 * 1024;
/// Most bytes of earlier buffers a connection keeps for reuse, beyond what its requests hold.
const SPARE_BYTES: usize = 8 << 20;
/// Buffers smaller than this are not worth keeping.
const SPARE_MIN: usize = READ_CHUNK;

#[derive(Debug)]
pub(super) struct ReadBuffer {
    buf: BytesMut,
    /// Size of the memory `buf` lives in (its capacity when allocated: once frames are split
    /// off its front, its own capacity no longer says).
    size: usize,
    /// Earlier buffers, empty, with the size of their memory, which requests in flight may
    /// still share.
    spares: Vec<(BytesMut, usize)>,
}

impl ReadBuffer {
    pub(super) fn new() -> Self {
        Self { buf: BytesMut::with_capacity(READ_CHUNK), size: READ_CHUNK, spares: Vec::new() }
    }

    /// The bytes read and not yet taken as frames, and the room after them.
    pub(super) fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Makes room for at least `additional` bytes after those already read: in place if the
    /// buffer's memory is free (or becomes free, its frames done), else in a spare buffer
    /// whose requests are all done, else in a new one. Callers bound `additional` first (the
    /// frame length against `max_frame_bytes`).
    pub(super) fn reserve(&mut self, additional: usize) {
        if self.buf.capacity() - self.buf.len() >= additional || self.buf.try_reclaim(additional) {
            return;
        }
        let needed = self.buf.len() + additional;
        let reusable =
            |(spare, size): &mut (BytesMut, usize)| *size >= needed && spare.try_reclaim(needed);
        let (fresh, size) = match self.spares.iter_mut().position(reusable) {
            Some(at) => self.spares.swap_remove(at),
            None => {
                // With room for the start of the next frame too, so reads stay large.
                let size = needed + READ_CHUNK;
                (BytesMut::with_capacity(size), size)
            }
        };
        let mut old = std::mem::replace(&mut self.buf, fresh);
        let old_size = std::mem::replace(&mut self.size, size);
        self.buf.extend_from_slice(&old);
        old.clear();
        self.keep_spare(old, old_size);
    }

    /// Makes room for the rest of the frame at the front once its length prefix is read, if
    /// that length is within `max_frame_bytes` (the decoder refuses a longer one).
    pub(super) fn reserve_frame(&mut self, max_frame_bytes: u32) {
        let Some(prefix) = self.buf.get(..LENGTH_PREFIX) else { return };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > max_frame_bytes {
            return;
        }
        let total = LENGTH_PREFIX + len as usize;
        if let Some(missing) = total.checked_sub(self.buf.len()).filter(|m| *m > 0) {
            self.reserve(missing);
        }
    }

    fn keep_spare(&mut self, spare: BytesMut, size: usize) {
        if size < SPARE_MIN {
            return;
        }
        let kept: usize = self.spares.iter().map(|(_, size)| size).sum();
        if kept + size <= SPARE_BYTES {
            self.spares.push((spare, size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Reads `bytes` as the read loop does: room first, then the bytes.
    fn read(reader: &mut ReadBuffer, bytes: &[u8]) {
        reader.reserve(bytes.len());
        reader.buf().extend_from_slice(bytes);
    }

    #[test]
    fn memory_of_finished_frames_is_used_again() {
        let mut reader = ReadBuffer::new();
        read(&mut reader, &vec![1u8; MIB]);
        let first = reader.buf().as_ptr();
        let frame = reader.buf().split_to(MIB).freeze();
        // The next frame, while the first is still held by its request: new memory.
        read(&mut reader, &vec![2u8; MIB]);
        let second = reader.buf().as_ptr();
        assert_ne!(second, first);
        drop(frame);
        let held = reader.buf().split_to(MIB).freeze();
        // The first frame is done: its memory takes the third.
        read(&mut reader, &vec![3u8; MIB]);
        assert_eq!(reader.buf().as_ptr(), first);
        assert!(reader.buf().iter().all(|b| *b == 3));
        assert!(held.iter().all(|b| *b == 2));
    }

    #[test]
    fn a_partial_frame_moves_with_the_buffer() {
        let mut reader = ReadBuffer::new();
        read(&mut reader, &vec![1u8; MIB]);
        let frame = reader.buf().split_to(MIB - 3).freeze();
        reader.reserve(MIB);
        assert_eq!(&reader.buf()[..], &[1, 1, 1]);
        assert!(reader.buf().capacity() >= MIB + 3);
        assert!(frame.iter().all(|b| *b == 1));
    }

    #[test]
    fn room_is_made_for_a_frame_within_the_limit_only() {
        let mut reader = ReadBuffer::new();
        read(&mut reader, &(2 * MIB as u32).to_le_bytes());
        reader.reserve_frame(4 * MIB as u32);
        assert!(reader.buf().capacity() >= LENGTH_PREFIX + 2 * MIB);
        let mut hostile = ReadBuffer::new();
        read(&mut hostile, &u32::MAX.to_le_bytes());
        hostile.reserve_frame(4 * MIB as u32);
        assert!(hostile.buf().capacity() <= READ_CHUNK);
    }

    #[test]
    fn spares_are_bounded() {
        let mut reader = ReadBuffer::new();
        let mut held = Vec::new();
        for _ in 0..20 {
            read(&mut reader, &vec![0u8; MIB]);
            held.push(reader.buf().split().freeze());
        }
        let kept: usize = reader.spares.iter().map(|(_, size)| size).sum();
        assert!(kept <= SPARE_BYTES, "{kept}");
    }
}
