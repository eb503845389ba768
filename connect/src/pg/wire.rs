//! A replication connection to PostgreSQL (`replication=database`), which tokio-postgres does
//! not open: the startup message and authentication (trust, cleartext, MD5, SCRAM-SHA-256,
//! with postgres-protocol's encoders and SCRAM), simple queries (`CREATE_REPLICATION_SLOT`),
//! and the CopyBoth stream `START_REPLICATION` opens. Backend frames are split here: a
//! frame's length is checked against [`MAX_FRAME`] before any buffer grows for it.
//!
//! Not TLS: the connection is plain TCP or a Unix socket (docs/connectors.md).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::url::PgAddr;
use crate::error::ConnectError;

/// The largest backend frame accepted (PostgreSQL's own values stay under 1 GiB; a change
/// this large would be held in memory whole).
pub const MAX_FRAME: usize = 256 << 20;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One backend frame: its tag and body (without tag and length).
#[derive(Debug)]
pub struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

/// A connection in replication mode.
pub struct ReplConn {
    stream: Box<dyn Stream>,
    inbuf: BytesMut,
    out: BytesMut,
    what: String,
}

impl std::fmt::Debug for ReplConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplConn").field("to", &self.what).finish_non_exhaustive()
    }
}

fn proto(text: impl Into<String>) -> ConnectError {
    ConnectError::Protocol(text.into())
}

/// The message of an ErrorResponse body: `M` (message) and `C` (SQLSTATE).
pub fn error_text(body: &[u8]) -> String {
    let (mut message, mut code) = (String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'M' => message = text,
            b'C' => code = text,
            _ => {}
        }
    }
    format!("{message} ({code})")
}

impl ReplConn {
    /// Connects and authenticates as `addr.user` in replication mode on `addr.dbname`.
    pub async fn connect(addr: &PgAddr) -> Result<ReplConn, ConnectError> {
        let what = format!("replication connection to {}", addr.display());
        let io_err = |e: std::io::Error| ConnectError::Postgres {
            doing: what.clone(),
            message: e.to_string(),
        };
        let stream: Box<dyn Stream> = if addr.host.starts_with('/') {
            let path = format!("{}/.s.PGSQL.{}", addr.host, addr.port);
            Box::new(tokio::net::UnixStream::connect(path).await.map_err(io_err)?)
        } else {
            let s = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(io_err)?;
            s.set_nodelay(true).map_err(io_err)?;
            Box::new(s)
        };
        let mut conn = ReplConn {
            stream,
            inbuf: BytesMut::with_capacity(64 << 10),
            out: BytesMut::new(),
            what: what.clone(),
        };
        let params = [
            ("user", addr.user.as_str()),
            ("database", addr.dbname.as_str()),
            ("replication", "database"),
            ("application_name", "eddy-connect"),
            ("options", "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3"),
        ];
        frontend::startup_message(params.iter().copied(), &mut conn.out).map_err(io_err)?;
        conn.flush().await?;
        conn.authenticate(addr).await?;
        loop {
            let f = conn.frame().await?;
            match f.tag {
                b'Z' => return Ok(conn),
                b'E' => return Err(conn.server_error(&f.body)),
                _ => {} // ParameterStatus, BackendKeyData, notices
            }
        }
    }

    fn server_error(&self, body: &[u8]) -> ConnectError {
        ConnectError::Postgres { doing: self.what.clone(), message: error_text(body) }
    }

    async fn authenticate(&mut self, addr: &PgAddr) -> Result<(), ConnectError> {
        let password = addr.password.clone().unwrap_or_default();
        let mut scram: Option<ScramSha256> = None;
        loop {
            let f = self.frame().await?;
            if f.tag == b'E' {
                return Err(self.server_error(&f.body));
            }
            if f.tag != b'R' || f.body.len() < 4 {
                return Err(proto(format!(
                    "expected authentication, got frame '{}'",
                    f.tag as char
                )));
            }
            let mut body = f.body.clone();
            let code = body.get_i32();
            let io = |e: std::io::Error| proto(format!("authentication: {e}"));
            match code {
                0 => return Ok(()),
                3 => frontend::password_message(password.as_bytes(), &mut self.out).map_err(io)?,
                5 if body.len() >= 4 => {
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hash = postgres_protocol::authentication::md5_hash(
                        addr.user.as_bytes(),
                        password.as_bytes(),
                        salt,
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.out).map_err(io)?;
                }
                10 => {
                    let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut self.out)
                        .map_err(io)?;
                    scram = Some(s);
                }
                11 => {
                    let s =
                        scram.as_mut().ok_or_else(|| proto("SASL continue before SASL start"))?;
                    s.update(&body).map_err(io)?;
                    frontend::sasl_response(s.message(), &mut self.out).map_err(io)?;
                }
                12 => {
                    let s = scram.as_mut().ok_or_else(|| proto("SASL final before SASL start"))?;
                    s.finish(&body).map_err(io)?;
                    continue;
                }
                other => return Err(proto(format!("unsupported authentication method {other}"))),
            }
            self.flush().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), ConnectError> {
        let out = std::mem::take(&mut self.out);
        let r = self.stream.write_all(&out).await;
        r.map_err(|e| ConnectError::Postgres { doing: self.what.clone(), message: e.to_string() })
    }

    /// Whether a whole frame is already buffered (more data without waiting on the socket).
    pub fn has_frame(&self) -> bool {
        self.inbuf.len() >= 5 && {
            let len =
                u32::from_be_bytes([self.inbuf[1], self.inbuf[2], self.inbuf[3], self.inbuf[4]]);
            self.inbuf.len() > len as usize
        }
    }

    /// The next backend frame.
    pub async fn frame(&mut self) -> Result<Frame, ConnectError> {
        loop {
            if self.inbuf.len() >= 5 {
                let len = u32::from_be_bytes([
                    self.inbuf[1],
                    self.inbuf[2],
                    self.inbuf[3],
                    self.inbuf[4],
                ]) as usize;
                if !(4..=MAX_FRAME).contains(&len) {
                    return Err(proto(format!("frame length {len} out of range")));
                }
                if self.inbuf.len() > len {
                    let mut whole = self.inbuf.split_to(len + 1);
                    let tag = whole[0];
                    whole.advance(5);
                    return Ok(Frame { tag, body: whole.freeze() });
                }
                self.inbuf.reserve(len + 1 - self.inbuf.len());
            }
            let n = self.stream.read_buf(&mut self.inbuf).await.map_err(|e| {
                ConnectError::Postgres { doing: self.what.clone(), message: e.to_string() }
            })?;
            if n == 0 {
                return Err(ConnectError::Postgres {
                    doing: self.what.clone(),
                    message: "the server closed the connection".into(),
                });
            }
        }
    }

    /// Runs one simple query; its rows, each column as text (`None` for NULL).
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ConnectError> {
        frontend::query(sql, &mut self.out).map_err(|e| proto(e.to_string()))?;
        self.flush().await?;
        let (mut rows, mut failed) = (Vec::new(), None);
        loop {
            let f = self.frame().await?;
            match f.tag {
                b'D' => rows.push(data_row(&f.body)?),
                b'E' => failed = Some(self.server_error(&f.body)),
                b'Z' => return failed.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Sends `START_REPLICATION ...` and waits for the CopyBoth stream to open.
    pub async fn start_copy_both(&mut self, sql: &str) -> Result<(), ConnectError> {
        frontend::query(sql, &mut self.out).map_err(|e| proto(e.to_string()))?;
        self.flush().await?;
        loop {
            let f = self.frame().await?;
            match f.tag {
                b'W' => return Ok(()),
                b'E' => return Err(self.server_error(&f.body)),
                _ => {}
            }
        }
    }

    /// The next CopyData payload of the stream.
    pub async fn copy_data(&mut self) -> Result<Bytes, ConnectError> {
        loop {
            let f = self.frame().await?;
            match f.tag {
                b'd' => return Ok(f.body),
                b'E' => return Err(self.server_error(&f.body)),
                b'c' => return Err(proto("the server ended the replication stream")),
                _ => {}
            }
        }
    }

    /// Sends one CopyData message.
    pub async fn send_copy(&mut self, payload: &[u8]) -> Result<(), ConnectError> {
        self.out.put_u8(b'd');
        self.out.put_i32(payload.len() as i32 + 4);
        self.out.put_slice(payload);
        self.flush().await
    }
}

/// A DataRow's columns as text.
fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, ConnectError> {
    let mut b = body;
    if b.len() < 2 {
        return Err(proto("short DataRow"));
    }
    let n = b.get_i16();
    let mut out = Vec::with_capacity(n.clamp(0, 1600) as usize);
    for _ in 0..n {
        if b.len() < 4 {
            return Err(proto("short DataRow column"));
        }
        let len = b.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return Err(proto("DataRow column past its end"));
        }
        out.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
        b.advance(len);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_and_errors_decode_and_short_ones_are_refused() {
        let mut b = BytesMut::new();
        b.put_i16(2);
        b.put_i32(2);
        b.put_slice(b"ab");
        b.put_i32(-1);
        assert_eq!(data_row(&b).unwrap(), vec![Some("ab".into()), None]);
        assert!(data_row(&b[..5]).is_err());
        assert_eq!(error_text(b"SERROR\0Mno such slot\0C42704\0\0"), "no such slot (42704)");
    }
}
