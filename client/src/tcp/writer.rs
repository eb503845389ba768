//! The connection's writer task: queued frames to the socket, with as few system calls and
//! copies as it can.
//!
//! Every frame already queued when the writer wakes goes out together. Small chunks (request
//! structure, small requests) are gathered into one buffer; large ones (record batches) are
//! kept as they are and the whole lot goes to the socket with vectored writes — so a batch is
//! never copied in user space on its way out, and a frame's header and its batch leave in the
//! same `writev`.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Shared;
use super::frame::Frame;

/// Chunks shorter than this are copied into the gathering buffer; longer ones go to the
/// socket as they are.
const GATHER_BELOW: usize = 16 * 1024;
/// Slices per `writev` (Linux allows 1024).
const MAX_SLICES: usize = 64;
/// Bytes gathered before the writer stops taking queued frames and writes.
const ROUND_BYTES: usize = 8 << 20;

/// What one round of the writer sends, in order.
#[derive(Debug, Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    /// Small chunks since the last large one, to go out as one chunk.
    gathering: BytesMut,
    bytes: usize,
}

impl Outbox {
    fn push(&mut self, frame: Frame) {
        for chunk in frame.chunks {
            self.bytes += chunk.len();
            if chunk.len() < GATHER_BELOW {
                self.gathering.extend_from_slice(&chunk);
            } else {
                self.seal_gathered();
                self.chunks.push_back(chunk);
            }
        }
    }

    fn seal_gathered(&mut self) {
        if !self.gathering.is_empty() {
            self.chunks.push_back(self.gathering.split().freeze());
        }
    }

    /// Writes everything, then is empty.
    async fn write_all<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()> {
        self.seal_gathered();
        while !self.chunks.is_empty() {
            let written = {
                let slices: Vec<IoSlice<'_>> =
                    self.chunks.iter().take(MAX_SLICES).map(|c| IoSlice::new(c)).collect();
                socket.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        self.bytes = 0;
        Ok(())
    }

    /// Drops the first `n` bytes written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// Writes queued frames until the queue closes (the connection is dropped) or a write fails
/// (which closes the connection).
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut queued: mpsc::Receiver<Frame>,
    mut socket: W,
    shared: Arc<Shared>,
) {
    let mut outbox = Outbox::default();
    while let Some(frame) = queued.recv().await {
        outbox.push(frame);
        // Everything queued meanwhile goes out in the same writes.
        while outbox.bytes < ROUND_BYTES {
            match queued.try_recv() {
                Ok(frame) => outbox.push(frame),
                Err(_) => break,
            }
        }
        if let Err(source) = outbox.write_all(&mut socket).await {
            shared.close(super::tls::io_error(&shared.addr, source, &shared.addr));
            return;
        }
    }
    // Best effort: the peer sees end of stream; the connection is being dropped anyway.
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Frame {
        Frame { chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect() }
    }

    #[test]
    fn small_chunks_are_gathered_and_large_ones_kept() {
        let large = Bytes::from(vec![1u8; GATHER_BELOW]);
        let mut outbox = Outbox::default();
        outbox.push(frame(&[b"ab", b"c"]));
        outbox.push(Frame { chunks: vec![Bytes::from_static(b"d"), large.clone()] });
        outbox.push(frame(&[b"ef"]));
        outbox.seal_gathered();
        let chunks: Vec<&[u8]> = outbox.chunks.iter().map(|c| &c[..]).collect();
        assert_eq!(chunks, [&b"abcd"[..], &large[..], &b"ef"[..]]);
        assert_eq!(chunks[1].as_ptr(), large.as_ptr(), "the large chunk is not copied");
        assert_eq!(outbox.bytes, 6 + GATHER_BELOW);
    }

    #[test]
    fn advance_drops_written_bytes_across_chunks() {
        let mut outbox = Outbox::default();
        outbox.chunks.extend([Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]);
        outbox.advance(4);
        let rest: Vec<&[u8]> = outbox.chunks.iter().map(|c| &c[..]).collect();
        assert_eq!(rest, [&b"efg"[..]]);
        outbox.advance(3);
        assert!(outbox.chunks.is_empty());
    }
}
