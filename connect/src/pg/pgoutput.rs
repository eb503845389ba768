//! Decoding the replication stream: the CopyData payloads (`w` XLogData, `k` keepalive) and
//! the `pgoutput` plugin's messages inside XLogData (protocol version 1: Begin, Commit,
//! Relation, Insert, Update, Delete, Truncate; Origin, Type and logical Messages are read and
//! ignored), and the standby status update the client sends back. Pure functions of bytes:
//! every read checks the bytes left first, so a short message is an error, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ConnectError;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A payload of the CopyBoth stream.
#[derive(Debug, PartialEq)]
pub enum Payload {
    XLogData { start: u64, message: Bytes },
    Keepalive { wal_end: u64, reply: bool },
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    /// A TOASTed value that did not change (its value is not sent).
    Unchanged,
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelColumn {
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
}

/// A `pgoutput` message.
#[derive(Debug, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_us: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_us: i64,
    },
    Relation {
        id: u32,
        schema: String,
        table: String,
        columns: Vec<RelColumn>,
    },
    Insert {
        rel: u32,
        new: Vec<Datum>,
    },
    /// `old`: the old key (`K`) or whole old row (`O`, REPLICA IDENTITY FULL), when sent.
    Update {
        rel: u32,
        old: Option<Vec<Datum>>,
        new: Vec<Datum>,
    },
    Delete {
        rel: u32,
        old: Vec<Datum>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Origin, Type, logical Message: nothing to do.
    Other,
}

fn short(what: &str) -> ConnectError {
    ConnectError::Protocol(format!("short {what} message"))
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), ConnectError> {
    if b.remaining() < n { Err(short(what)) } else { Ok(()) }
}

fn cstring(b: &mut Bytes, what: &str) -> Result<String, ConnectError> {
    let end = b.iter().position(|c| *c == 0).ok_or_else(|| short(what))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

/// Reads a CopyData payload from the server.
pub fn payload(mut b: Bytes) -> Result<Payload, ConnectError> {
    need(&b, 1, "CopyData")?;
    match b.get_u8() {
        b'w' => {
            need(&b, 24, "XLogData")?;
            let start = b.get_u64();
            b.advance(16); // wal end, send time
            Ok(Payload::XLogData { start, message: b })
        }
        b'k' => {
            need(&b, 17, "keepalive")?;
            let wal_end = b.get_u64();
            b.advance(8);
            Ok(Payload::Keepalive { wal_end, reply: b.get_u8() == 1 })
        }
        t => Err(ConnectError::Protocol(format!("unknown CopyData payload '{}'", t as char))),
    }
}

fn tuple(b: &mut Bytes) -> Result<Vec<Datum>, ConnectError> {
    need(b, 2, "tuple")?;
    let n = b.get_i16().max(0) as usize;
    let mut out = Vec::with_capacity(n.min(1600));
    for _ in 0..n {
        need(b, 1, "tuple column")?;
        out.push(match b.get_u8() {
            b'n' => Datum::Null,
            b'u' => Datum::Unchanged,
            b't' | b'b' => {
                need(b, 4, "tuple value")?;
                let len = b.get_i32().max(0) as usize;
                need(b, len, "tuple value")?;
                let v = String::from_utf8_lossy(&b[..len]).into_owned();
                b.advance(len);
                Datum::Text(v)
            }
            k => {
                return Err(ConnectError::Protocol(format!(
                    "unknown tuple column kind '{}'",
                    k as char
                )));
            }
        });
    }
    Ok(out)
}

fn relation(b: &mut Bytes) -> Result<Message, ConnectError> {
    need(b, 4, "Relation")?;
    let id = b.get_u32();
    let schema = cstring(b, "Relation")?;
    let table = cstring(b, "Relation")?;
    need(b, 3, "Relation")?;
    b.advance(1); // replica identity setting
    let n = b.get_i16().max(0) as usize;
    let mut columns = Vec::with_capacity(n.min(1600));
    for _ in 0..n {
        need(b, 1, "Relation column")?;
        let key = b.get_u8() & 1 == 1;
        let name = cstring(b, "Relation column")?;
        need(b, 8, "Relation column")?;
        let type_oid = b.get_u32();
        b.advance(4); // type modifier
        columns.push(RelColumn { key, name, type_oid });
    }
    Ok(Message::Relation { id, schema, table, columns })
}

/// Decodes one `pgoutput` message.
pub fn message(mut b: Bytes) -> Result<Message, ConnectError> {
    need(&b, 1, "pgoutput")?;
    let b = &mut b;
    Ok(match b.get_u8() {
        b'B' => {
            need(b, 20, "Begin")?;
            Message::Begin { final_lsn: b.get_u64(), commit_us: b.get_i64(), xid: b.get_u32() }
        }
        b'C' => {
            need(b, 25, "Commit")?;
            b.advance(1);
            Message::Commit {
                commit_lsn: b.get_u64(),
                end_lsn: b.get_u64(),
                commit_us: b.get_i64(),
            }
        }
        b'R' => relation(b)?,
        b'I' => {
            need(b, 5, "Insert")?;
            let rel = b.get_u32();
            b.advance(1); // 'N'
            Message::Insert { rel, new: tuple(b)? }
        }
        b'U' => {
            need(b, 5, "Update")?;
            let rel = b.get_u32();
            let mut old = None;
            let mut kind = b.get_u8();
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(b)?);
                need(b, 1, "Update")?;
                kind = b.get_u8();
            }
            if kind != b'N' {
                return Err(ConnectError::Protocol("Update without a new tuple".into()));
            }
            Message::Update { rel, old, new: tuple(b)? }
        }
        b'D' => {
            need(b, 5, "Delete")?;
            let rel = b.get_u32();
            b.advance(1); // 'K' or 'O'
            Message::Delete { rel, old: tuple(b)? }
        }
        b'T' => {
            need(b, 5, "Truncate")?;
            let n = b.get_u32() as usize;
            b.advance(1); // options
            need(b, n.saturating_mul(4), "Truncate")?;
            Message::Truncate { rels: (0..n).map(|_| b.get_u32()).collect() }
        }
        b'O' | b'Y' | b'M' => Message::Other,
        t => {
            return Err(ConnectError::Protocol(format!(
                "unknown pgoutput message '{}'",
                t as char
            )));
        }
    })
}

/// The standby status update: everything up to `lsn` is written, flushed and applied.
pub fn status_update(lsn: u64, now_us: i64) -> BytesMut {
    let mut b = BytesMut::with_capacity(34);
    b.put_u8(b'r');
    b.put_u64(lsn);
    b.put_u64(lsn);
    b.put_u64(lsn);
    b.put_i64(now_us - PG_EPOCH_US);
    b.put_u8(0);
    b
}

/// `16/B374D848` → its 64-bit value.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_and_truncated_ones_fail() {
        let mut m = BytesMut::new();
        m.put_u8(b'R');
        m.put_u32(7);
        m.put_slice(b"public\0items\0");
        m.put_u8(b'd');
        m.put_i16(1);
        m.put_u8(1);
        m.put_slice(b"id\0");
        m.put_u32(23);
        m.put_i32(-1);
        let rel = message(m.clone().freeze()).unwrap();
        let expected_cols = vec![RelColumn { key: true, name: "id".into(), type_oid: 23 }];
        assert_eq!(
            rel,
            Message::Relation {
                id: 7,
                schema: "public".into(),
                table: "items".into(),
                columns: expected_cols
            }
        );
        for cut in 1..m.len() {
            assert!(message(m.clone().freeze().slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut u = BytesMut::new();
        u.put_u8(b'U');
        u.put_u32(7);
        u.put_u8(b'K');
        u.put_i16(1);
        u.put_u8(b'n');
        u.put_u8(b'N');
        u.put_i16(2);
        u.put_u8(b't');
        u.put_i32(1);
        u.put_u8(b'5');
        u.put_u8(b'u');
        let expected = Message::Update {
            rel: 7,
            old: Some(vec![Datum::Null]),
            new: vec![Datum::Text("5".into()), Datum::Unchanged],
        };
        assert_eq!(message(u.freeze()).unwrap(), expected);
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }
}
