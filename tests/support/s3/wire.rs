//! HTTP/1.1 as the proxy needs it: heads parsed just enough to frame a message, and bodies
//! copied byte for byte (chunk sizes, extensions and trailers included).

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const BUF: usize = 64 * 1024;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A connection's buffered halves (client side or upstream side).
pub(super) type Conn = (BufReader<OwnedReadHalf>, BufWriter<OwnedWriteHalf>);

pub(super) fn conn(s: TcpStream) -> Conn {
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    let r = BufReader::with_capacity(BUF, r);
    (r, BufWriter::with_capacity(BUF, w))
}

/// What to do with the client connection after a request.
#[derive(PartialEq)]
pub(super) enum After {
    KeepAlive,
    Close,
    Reset,
}

pub(super) fn keep_alive_unless(close: bool) -> io::Result<After> {
    Ok(if close {
        After::Close
    } else {
        After::KeepAlive
    })
}

/// A parsed request or response head; `raw` is what gets forwarded.
pub(super) struct Head {
    pub(super) raw: Vec<u8>,
    pub(super) start: Vec<String>, // request or status line, split on ' ' (at most 3 parts)
    headers: Vec<(String, String)>, // lowercased names
}

pub(super) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Head {
    pub(super) fn parse(raw: Vec<u8>) -> io::Result<Head> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.lines();
        let start = lines.next().unwrap_or("").splitn(3, ' ');
        let start: Vec<String> = start.map(Into::into).collect();
        if start.len() < 2 {
            return Err(invalid("bad HTTP start line"));
        }
        let headers = lines.filter_map(|l| l.split_once(':'));
        let headers = headers.map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().into()));
        let headers = headers.collect();
        Ok(Head {
            raw,
            start,
            headers,
        })
    }
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        found.next().map(|(_, v)| v.as_str())
    }
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values = self.headers.iter().filter(|(k, _)| k == name);
        values.any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
    pub(super) fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
    pub(super) fn wants_close(&self) -> bool {
        let http10 = self.start.iter().any(|p| p.trim() == "HTTP/1.0");
        http10 || self.has_token("connection", "close")
    }
    pub(super) fn framing(&self) -> io::Result<Framing> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        let len = self.get("content-length").map(str::parse);
        let len = len.transpose().map_err(|_| invalid("bad content-length"))?;
        Ok(len.map_or(Framing::None, Framing::Length))
    }
    /// This head with its `Connection` headers replaced by `Connection: close`.
    pub(super) fn with_close(&self) -> Vec<u8> {
        let mut out = String::new();
        for l in String::from_utf8_lossy(&self.raw).lines() {
            let name = l.split(':').next().unwrap_or("").trim();
            if !l.is_empty() && !name.eq_ignore_ascii_case("connection") {
                out += &format!("{l}\r\n");
            }
        }
        (out + "Connection: close\r\n\r\n").into_bytes()
    }
}

pub(super) type Reader = BufReader<OwnedReadHalf>;
pub(super) type Writer = BufWriter<OwnedWriteHalf>;

/// Reads one head through its empty line; `Ok(None)` on EOF before the first byte.
pub(super) async fn read_head(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw).await? == 0 {
            let eof = (start > 0).then(|| io::Error::from(io::ErrorKind::UnexpectedEof));
            return eof.map_or(Ok(None), Err);
        }
        match &raw[start..] {
            b"\r\n" | b"\n" if start == 0 => raw.clear(), // stray CRLF between messages
            b"\r\n" | b"\n" => return Ok(Some(raw)),
            _ if raw.len() > MAX_HEAD => return Err(invalid("HTTP head too large")),
            _ => {}
        }
    }
}

/// Reads response heads, passing interim 1xx ones (`100 Continue`) on to the client.
pub(super) async fn read_final_head(
    r: &mut (impl AsyncBufRead + Unpin),
    client: &mut (impl AsyncWrite + Unpin),
) -> io::Result<Option<Vec<u8>>> {
    while let Some(raw) = read_head(r).await? {
        if !matches!(Head::parse(raw.clone())?.status(), 100 | 102..=199) {
            return Ok(Some(raw));
        }
        client.write_all(&raw).await?;
        client.flush().await?;
    }
    Ok(None)
}

async fn read_line(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    match line.ends_with(b"\n") {
        _ if line.len() > MAX_HEAD => Err(invalid("chunk line too long")),
        true => Ok(line),
        false => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Copies up to `limit` bytes through the reader's buffer, calling `on` before each write.
/// EOF before `limit` is an error unless `eof_ok`.
async fn pump(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    limit: u64,
    eof_ok: bool,
    on: &mut impl FnMut(u64),
) -> io::Result<u64> {
    let mut done = 0;
    while done < limit {
        let buf = src.fill_buf().await?;
        if buf.is_empty() && eof_ok {
            break;
        } else if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = usize::try_from(limit - done).map_or(buf.len(), |left| left.min(buf.len()));
        on(k as u64);
        dst.write_all(&buf[..k]).await?;
        src.consume(k);
        done += k as u64;
    }
    Ok(done)
}

/// Forwards one message body byte-for-byte (chunk sizes, extensions and trailers included) and
/// flushes. Returns the payload bytes (chunk data without framing), also reported to `on` before
/// each write. With `stop_after`, stops once that many payload bytes went out, leaving the
/// message unfinished.
pub(super) async fn copy_body(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    framing: Framing,
    stop_after: Option<u64>,
    mut on: impl FnMut(u64),
) -> io::Result<u64> {
    let cap = stop_after.unwrap_or(u64::MAX);
    let mut total = 0u64;
    match framing {
        Framing::None => {}
        Framing::Length(n) => total = pump(src, dst, n.min(cap), false, &mut on).await?,
        Framing::UntilClose => total = pump(src, dst, cap, true, &mut on).await?,
        Framing::Chunked => loop {
            let line = read_line(src).await?;
            let hex = String::from_utf8_lossy(&line);
            let hex = hex.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
            dst.write_all(&line).await?;
            if size == 0 {
                let mut trailer = Vec::new();
                while trailer != b"\r\n" && trailer != b"\n" {
                    trailer = read_line(src).await?;
                    dst.write_all(&trailer).await?;
                }
                break;
            }
            total += pump(src, dst, size.min(cap - total), false, &mut on).await?;
            if total == cap {
                break;
            }
            let crlf = read_line(src).await?;
            dst.write_all(&crlf).await?;
        },
    }
    dst.flush().await?;
    Ok(total)
}
