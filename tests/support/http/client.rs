//! The tests' blocking client: one request per connection (`Connection: close`), the answer
//! read to EOF and its body decoded by the same framing code the servers use.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::wire::{Framing, read_body, read_head, request_head};
use super::{Head, invalid};

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The status line and headers, without the empty line.
    pub head: String,
    /// Decoded (chunk framing removed), as text.
    pub body: String,
}

impl Reply {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Every header by lowercased name (a repeated one keeps its last value).
    pub fn headers(&self) -> BTreeMap<String, String> {
        let lines = self.head.lines().skip(1).filter_map(|l| l.split_once(':'));
        lines
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }
}

/// `GET base+path` (`base` is `http://HOST:PORT` or `HOST:PORT`) with `headers`.
#[track_caller]
pub fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    exchange(base, "GET", path, headers, b"")
}

/// One request; panics if no complete answer comes within a minute. `Host` and the body's
/// `Content-Length` are added unless `headers` has them: a test may declare a length it
/// does not send.
#[track_caller]
pub fn exchange(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let within = Duration::from_secs(60);
    try_exchange(base, method, target, headers, body, within)
        .unwrap_or_else(|e| panic!("{method} {base}{target}: {e}"))
}

/// One request, connecting and reading within `within` each.
pub fn try_exchange(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> io::Result<Reply> {
    let host = base.strip_prefix("http://").unwrap_or(base);
    let addr: SocketAddr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, within)?;
    stream.set_read_timeout(Some(within))?;
    stream.write_all(&request_head(method, target, host, headers, body.len()))?;
    // The server may answer and close before taking the whole body (a refusal): read anyway.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    parse(&raw, method == "HEAD")
}

/// Parses an answer read to EOF (1xx interim heads skipped).
fn parse(mut raw: &[u8], head_only: bool) -> io::Result<Reply> {
    futures::executor::block_on(async {
        let head = loop {
            let head = read_head(&mut raw)
                .await?
                .ok_or_else(|| invalid("no answer"))?;
            let head = Head::parse(head)?;
            if !(100..200).contains(&head.status()) {
                break head;
            }
        };
        let status = head.status();
        let framing = match head.framing()? {
            _ if head_only || matches!(status, 204 | 304) => Framing::None,
            Framing::None => Framing::UntilClose,
            f => f,
        };
        let body = read_body(&mut raw, framing, u64::MAX).await?;
        let text = String::from_utf8_lossy(&head.raw);
        Ok(Reply {
            status,
            head: text.trim_end().to_string(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    })
}
