//! Requests and answers: authentication, rack-attack's fixed-window throttles
//! with their `X-RateLimit-*` headers (§7), injected faults, and the HTTP/1.1
//! plumbing (GET with keep-alive).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::misskey::FaultPlan;
use super::feed::{State, link};
use super::{Fault, MastodonConfig};

pub(super) struct Resp {
    status: u16,
    ctype: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Resp {
    fn json(status: u16, body: String) -> Resp {
        let ctype = "application/json; charset=utf-8";
        let headers = vec![];
        Resp {
            status,
            ctype,
            body: body.into_bytes(),
            headers,
        }
    }

    fn error(status: u16, message: &str) -> Resp {
        Resp::json(status, json!({ "error": message }).to_string())
    }

    fn html(status: u16, body: String) -> Resp {
        let ctype = "text/html; charset=utf-8";
        let headers = vec![];
        Resp {
            status,
            ctype,
            body: body.into_bytes(),
            headers,
        }
    }
}

#[derive(Default)]
pub(super) struct Log {
    pub(super) calls: u64,
    /// The query of every request, in order (faulted ones included).
    pub(super) queries: Vec<BTreeMap<String, String>>,
    pub(super) auth: Vec<String>,
    /// 429s the throttles answered (not injected ones).
    pub(super) throttled: u64,
    pub(super) faults: FaultPlan,
    /// Per throttle: (window index, requests counted in it).
    windows: Vec<(i64, u64)>,
}

pub(super) struct Shared {
    pub(super) cfg: MastodonConfig,
    pub(super) state: Mutex<State>,
    pub(super) log: Mutex<Log>,
    pub(super) base: String,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap_or_default().as_millis() as i64
}

/// `X-RateLimit-Reset`: ISO 8601 with microseconds.
fn reset_header(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_query(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    (path.to_string(), params)
}

const PAGING: [&str; 4] = ["max_id", "min_id", "since_id", "page"];

impl Shared {
    /// Counts the request in every throttle it matches (rack-attack counts
    /// refused requests too); returns the 429 if one is exceeded, and the
    /// headers of the most limited one.
    fn throttle(
        &self,
        log: &mut Log,
        q: &BTreeMap<String, String>,
    ) -> (Option<Resp>, Vec<(&'static str, String)>) {
        let now = now_ms();
        let paging = PAGING.iter().any(|k| q.contains_key(*k));
        log.windows.resize(self.cfg.throttles.len(), (0, 0));
        let mut tightest: Option<(u64, u64, i64)> = None; // (remaining, limit, reset ms)
        let mut exceeded = false;
        for (t, window) in self.cfg.throttles.iter().zip(log.windows.iter_mut()) {
            if t.paging_only && !paging {
                continue;
            }
            let period = (t.period_secs.max(1) * 1000) as i64;
            let index = now.div_euclid(period);
            if window.0 != index {
                *window = (index, 0);
            }
            window.1 += 1;
            exceeded |= window.1 > t.limit;
            let remaining = t.limit.saturating_sub(window.1);
            let reset = (index + 1) * period;
            if tightest.is_none_or(|(r, _, _)| remaining < r) {
                tightest = Some((remaining, t.limit, reset));
            }
        }
        let headers = tightest
            .map(|(remaining, limit, reset)| {
                vec![
                    ("X-RateLimit-Limit", limit.to_string()),
                    ("X-RateLimit-Remaining", remaining.to_string()),
                    ("X-RateLimit-Reset", reset_header(reset)),
                ]
            })
            .unwrap_or_default();
        if exceeded {
            log.throttled += 1;
            let mut r = Resp::error(429, "Too many requests");
            r.headers = headers.clone();
            return (Some(r), headers);
        }
        (None, headers)
    }

    /// Logs the call and picks its fault (queued first, then `fail_every`).
    fn record(
        &self,
        log: &mut Log,
        q: &BTreeMap<String, String>,
        auth: Option<&str>,
    ) -> Option<Fault> {
        log.calls += 1;
        log.queries.push(q.clone());
        if let Some(a) = auth {
            log.auth.push(a.to_string());
        }
        log.faults.next()
    }

    /// None means: reset the connection without answering.
    async fn respond(&self, method: &str, target: &str, auth: Option<&str>) -> Option<Resp> {
        let (path, q) = parse_query(target);
        let (fault, throttled) = {
            let mut log = lock(&self.log);
            let fault = self.record(&mut log, &q, auth);
            let throttled = self.throttle(&mut log, &q);
            (fault, throttled)
        };
        let answer = |throttled: (Option<Resp>, Vec<(&'static str, String)>)| match throttled {
            (Some(refused), _) => refused,
            (None, headers) => {
                let mut r = self.handle(method, &path, &q, auth);
                r.headers.extend(headers);
                r
            }
        };
        match fault {
            None => Some(answer(throttled)),
            Some(Fault::ResetConnection) => None,
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                Some(answer(throttled))
            }
            Some(Fault::TruncatedJson) => {
                let mut r = answer(throttled);
                r.body.truncate(r.body.len() / 2);
                Some(r)
            }
            Some(f) => Some(fault_response(&f)),
        }
    }

    fn handle(
        &self,
        method: &str,
        path: &str,
        q: &BTreeMap<String, String>,
        auth: Option<&str>,
    ) -> Resp {
        if method != "GET" || path != "/api/v1/timelines/public" {
            return Resp::error(404, "Record not found");
        }
        let token = auth.and_then(|a| a.strip_prefix("Bearer "));
        match token {
            Some(t) if !self.cfg.tokens.iter().any(|k| k == t) => {
                return Resp::error(401, "The access token is invalid");
            }
            None if self.cfg.require_token => {
                return Resp::error(
                    self.cfg.auth_status,
                    "This method requires an authenticated user",
                );
            }
            _ => {}
        }
        let state = lock(&self.state);
        let page = state.page(q);
        let body = format!(
            "[{}]",
            page.iter()
                .map(|s| s.json.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut r = Resp::json(200, body);
        if let Some(link) = link(&self.base, q, &page) {
            r.headers.push(("Link", link));
        }
        r
    }
}

fn fault_response(f: &Fault) -> Resp {
    match *f {
        Fault::RateLimit {
            retry_after_secs,
            with_info,
        } => {
            let mut r = Resp::error(429, "Too many requests");
            if retry_after_secs.is_some() || with_info {
                let reset = now_ms() + retry_after_secs.unwrap_or(1) as i64 * 1000;
                r.headers = vec![
                    ("X-RateLimit-Limit", "300".into()),
                    ("X-RateLimit-Remaining", "0".into()),
                    ("X-RateLimit-Reset", reset_header(reset)),
                ];
            }
            r
        }
        Fault::CloudflareRateLimit => Resp::html(
            429,
            "<!DOCTYPE html><html><head><title>Access denied</title></head><body>\
             <h1>Error 1015</h1><h2>You are being rate limited</h2></body></html>"
                .into(),
        ),
        // Rails' own page for an unhandled error.
        Fault::Internal500 => Resp::html(
            500,
            "<!DOCTYPE html><html><head><title>We're sorry, but something went wrong (500)</title>\
             </head><body><h1>We're sorry, but something went wrong.</h1></body></html>"
                .into(),
        ),
        Fault::Html(code) => Resp::html(
            code,
            format!(
                "<html><head><title>{code}</title></head><body><center><h1>{code}</h1></center><hr><center>nginx</center></body></html>"
            ),
        ),
        _ => unreachable!("handled by respond"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Reads one request head (bodies are read and dropped); None when the peer closed.
async fn read_request(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, String, Vec<(String, String)>)> {
    let mut tmp = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match sock.read(&mut tmp).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, target) = (start.next()?.to_string(), start.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < length {
        match sock.read(&mut tmp).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return None,
        }
    }
    buf.drain(..length);
    Some((method, target, headers))
}

async fn write_response(sock: &mut TcpStream, r: &Resp, keep: bool) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    h += &format!(
        "Content-Type: {}\r\nContent-Length: {}\r\n",
        r.ctype,
        r.body.len()
    );
    for (k, v) in &r.headers {
        h += &format!("{k}: {v}\r\n");
    }
    h += if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    };
    let mut out = h.into_bytes();
    out.extend_from_slice(&r.body);
    sock.write_all(&out).await?;
    sock.flush().await
}

pub(super) async fn serve_connection(shared: Arc<Shared>, mut sock: TcpStream) {
    let mut buf = Vec::new();
    while let Some((method, target, headers)) = read_request(&mut sock, &mut buf).await {
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let Some(resp) = shared.respond(&method, &target, auth.as_deref()).await else {
            let _ = sock.set_zero_linger(); // ResetConnection: RST, not a byte sent
            return;
        };
        if write_response(&mut sock, &resp, !close).await.is_err() || close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}
