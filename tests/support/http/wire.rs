//! HTTP/1.1 on a connection: heads read through their empty line, bodies framed by
//! Content-Length, chunked or until close, either forwarded byte for byte (chunk sizes,
//! extensions and trailers included) or decoded; responses written.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Head, Request, Response, invalid};

const BUF: usize = 64 * 1024;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

pub type Reader = BufReader<OwnedReadHalf>;
pub type Writer = BufWriter<OwnedWriteHalf>;
/// A connection's buffered halves.
pub type Conn = (Reader, Writer);

pub fn conn(s: TcpStream) -> Conn {
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    let r = BufReader::with_capacity(BUF, r);
    (r, BufWriter::with_capacity(BUF, w))
}

/// Drops the connection with an RST (zero linger): whatever is unsent is lost.
pub fn reset(c: Conn) {
    if let Ok(s) = c.0.into_inner().reunite(c.1.into_inner()) {
        let _ = s.set_zero_linger();
    }
}

/// A body over its limit (a server's refusal: 413).
fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::FileTooLarge, "body too large")
}

/// Reads one head through its empty line; `Ok(None)` on EOF before the first byte.
pub async fn read_head(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
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

/// Reads response heads, passing interim 1xx ones (`100 Continue`) on to `client`.
pub async fn read_final_head(
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

/// Reads one request and its body (at most `max` bytes, decoded). `Ok(None)`: the peer
/// closed between requests. Errors: InvalidData for a malformed request, FileTooLarge for a
/// body over `max` (both deserve an answer), anything else for a peer gone mid-request.
/// Answers `Expect: 100-continue` before reading the body.
pub async fn read_request(c: &mut Conn, max: u64) -> io::Result<Option<Request>> {
    let Some(raw) = read_head(&mut c.0).await? else {
        return Ok(None);
    };
    let head = Head::parse(raw)?;
    if head.start.len() < 3 || !head.start[2].starts_with("HTTP/1.") {
        return Err(invalid("bad request line"));
    }
    if head.has_token("expect", "100-continue") {
        let _ = c.1.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let _ = c.1.flush().await;
    }
    let body = read_body(&mut c.0, head.framing()?, max).await?;
    Ok(Some(Request { head, body }))
}

/// Reads one body, decoded (chunk framing and trailers dropped); FileTooLarge past `max`.
pub async fn read_body(
    src: &mut (impl AsyncBufRead + Unpin),
    framing: Framing,
    max: u64,
) -> io::Result<Vec<u8>> {
    if matches!(framing, Framing::Length(n) if n > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let how = Copy {
        raw: false,
        cap: u64::MAX,
        max,
    };
    copy_body(src, &mut body, framing, how, &mut |_| {}).await?;
    Ok(body)
}

/// Forwards one message body byte for byte and flushes. Returns the payload bytes (chunk
/// data without framing), also reported to `on` before each write. With `stop_after`, stops
/// once that many payload bytes went out, leaving the message unfinished.
pub async fn forward_body(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    framing: Framing,
    stop_after: Option<u64>,
    mut on: impl FnMut(u64),
) -> io::Result<u64> {
    let how = Copy {
        raw: true,
        cap: stop_after.unwrap_or(u64::MAX),
        max: u64::MAX,
    };
    copy_body(src, dst, framing, how, &mut on).await
}

/// How [`copy_body`] copies: with the chunk framing (`raw`) or without; stopping after
/// `cap` payload bytes; failing when the chunks pass `max`.
struct Copy {
    raw: bool,
    cap: u64,
    max: u64,
}

async fn copy_body(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    framing: Framing,
    how: Copy,
    on: &mut impl FnMut(u64),
) -> io::Result<u64> {
    let (cap, mut total) = (how.cap, 0u64);
    match framing {
        Framing::None => {}
        Framing::Length(n) => total = pump(src, dst, n.min(cap), false, on).await?,
        Framing::UntilClose => total = pump(src, dst, cap, true, on).await?,
        Framing::Chunked => loop {
            let line = read_line(src).await?;
            let hex = String::from_utf8_lossy(&line);
            let hex = hex.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if how.raw {
                dst.write_all(&line).await?;
            }
            if size == 0 {
                let mut trailer = Vec::new();
                while trailer != b"\r\n" && trailer != b"\n" {
                    trailer = read_line(src).await?;
                    if how.raw {
                        dst.write_all(&trailer).await?;
                    }
                }
                break;
            } else if total + size > how.max {
                return Err(too_large());
            }
            total += pump(src, dst, size.min(cap - total), false, on).await?;
            if total == cap {
                break;
            }
            let crlf = read_line(src).await?;
            if how.raw {
                dst.write_all(&crlf).await?;
            }
        },
    }
    dst.flush().await?;
    Ok(total)
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

/// Writes a response (see [`response_bytes`]) and flushes.
pub async fn write_response(
    w: &mut (impl AsyncWrite + Unpin),
    r: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    w.write_all(&response_bytes(r, keep_alive, head_only))
        .await?;
    w.flush().await
}

/// A response as written: its headers, then `Content-Length` (none on 1xx, 204 and 304) and
/// `Connection`, then its body unless it answers a HEAD request (`head_only`). A handler
/// that half-writes a response cuts these bytes and answers them raw.
pub fn response_bytes(r: &Response, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", r.status, r.reason);
    for (k, v) in &r.headers {
        h += &format!("{k}: {v}\r\n");
    }
    if !matches!(r.status, 100..=199 | 204 | 304) {
        h += &format!("Content-Length: {}\r\n", r.body.len());
    }
    h += match keep_alive {
        true => "Connection: keep-alive\r\n\r\n",
        false => "Connection: close\r\n\r\n",
    };
    let mut out = h.into_bytes();
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

/// A request head: `Host` and `Content-Length` (of `body_len`) are added unless `headers`
/// has them (or a `Transfer-Encoding`: the body is then sent as given), and
/// `Connection: close` always.
pub fn request_head(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut h = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        h += &format!("Host: {host}\r\n");
    }
    for (k, v) in headers {
        h += &format!("{k}: {v}\r\n");
    }
    if !has("content-length") && !has("transfer-encoding") {
        h += &format!("Content-Length: {body_len}\r\n");
    }
    (h + "Connection: close\r\n\r\n").into_bytes()
}
