//! Responses, Misskey and fastify error bodies (§5), injected faults, and the HTTP/1.1
//! plumbing.

use serde_json::{Value, json};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Fault;
use super::api::Shared;
use super::ids::now_ms;

// ─────────────────────────────── responses ───────────────────────────────

pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) ctype: Option<&'static str>,
    pub(super) body: Vec<u8>,
    pub(super) headers: Vec<(&'static str, String)>,
    /// Sent by Misskey itself: adds Cache-Control and CORS headers (not on proxy pages).
    pub(super) misskey: bool,
}

pub(super) const JSON: &str = "application/json; charset=utf-8";

impl Resp {
    pub(super) fn new(
        status: u16,
        ctype: Option<&'static str>,
        body: Vec<u8>,
        misskey: bool,
    ) -> Resp {
        let headers = vec![];
        Resp {
            status,
            ctype,
            body,
            headers,
            misskey,
        }
    }

    pub(super) fn json(status: u16, v: &Value) -> Resp {
        Resp::new(status, Some(JSON), v.to_string().into(), true)
    }

    pub(super) fn html(status: u16, body: String, server: &str) -> Resp {
        let mut r = Resp::new(status, Some("text/html; charset=UTF-8"), body.into(), false);
        r.headers.push(("Server", server.into()));
        r
    }
}

/// Misskey ApiErrors used here, as `CODE|id|message` (§5).
pub(super) const INVALID_PARAM: &str =
    "INVALID_PARAM|3d81ceae-475f-4600-b2a8-2bc116157532|Invalid param.";
pub(super) const AUTH_FAILED: &str = "AUTHENTICATION_FAILED|b0a7f5f8-dc2f-4171-b91f-de88ad238e14|\
    Authentication failed. Please ensure your token is correct.";
pub(super) const UNAVAILABLE: &str =
    "UNAVAILABLE|0b44998d-77aa-4427-80d0-d2c9b8523011|Search of notes unavailable.";
pub(super) const BOTH_REPLIES_FILES: &str = "BOTH_WITH_REPLIES_AND_WITH_FILES|\
    dd9c8400-1cb5-4eef-8a31-200c5f933793|Specifying both withReplies and withFiles is not supported";
pub(super) const RATE_LIMITED: &str = "RATE_LIMIT_EXCEEDED|d5826d14-3982-4d2e-8011-b9e9f02499ef|\
    Rate limit exceeded. Please try again later.";
pub(super) const INTERNAL_ERROR: &str = "INTERNAL_ERROR|5d37dbcb-891e-41ca-a3d6-e690c97775ac|\
    Internal error occurred. Please contact us if the error persists.";
pub(super) const UNKNOWN_ENDPOINT: &str =
    "UNKNOWN_API_ENDPOINT|2ca3b769-540a-4f08-9dd5-b5a825b6d0f1|Unknown API endpoint.";

/// `{"error":{message,code,id,kind,info?}}`; kind is `server` for 500, else `client`.
pub(super) fn api_error(status: u16, err: &str, info: Option<Value>) -> Resp {
    let [code, id, msg] = [0, 1, 2].map(|i| err.split('|').nth(i).unwrap_or_default());
    let kind = if status == 500 { "server" } else { "client" };
    let mut e = json!({"message": msg, "code": code, "id": id, "kind": kind});
    if let Some(info) = info {
        e["info"] = info;
    }
    let mut r = Resp::json(status, &json!({ "error": e }));
    if status == 400 {
        r.headers.push(("WWW-Authenticate", invalid_request(msg)));
    }
    r
}

pub(super) fn invalid_request(msg: &str) -> String {
    format!("Bearer realm=\"Misskey\", error=\"invalid_request\", error_description=\"{msg}\"")
}

/// Fastify's own error body; `err` is `CODE|message` (empty code: none).
pub(super) fn fastify_error(status: u16, err: &str) -> Resp {
    let (code, message) = err.split_once('|').unwrap_or_default();
    let mut v = json!({"statusCode": status, "error": reason(status), "message": message});
    if !code.is_empty() {
        v["code"] = code.into();
    }
    Resp::json(status, &v)
}

pub(super) const BAD_REQUEST: &str = "|Bad Request";
pub(super) const TOO_LARGE: &str = "FST_ERR_CTP_BODY_TOO_LARGE|Request body is too large";
pub(super) const EMPTY_JSON: &str = "FST_ERR_CTP_EMPTY_JSON_BODY|\
    Body cannot be empty when content-type is set to 'application/json'";
pub(super) const INVALID_JSON: &str = "FST_ERR_CTP_INVALID_JSON_BODY|\
    Body is not valid JSON but content-type is set to 'application/json'";

/// 500 INTERNAL_ERROR with `info.e` = the raw error (`name`, `message`) and a log uuid.
pub(super) fn internal_error(name: &str, message: &str) -> Resp {
    let mut b: [u8; 16] = rand::random();
    (b[6], b[8]) = ((b[6] & 0x0f) | 0x40, (b[8] & 0x3f) | 0x80);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let parts = [0..8, 8..12, 12..16, 16..20, 20..32].map(|r| &h[r]);
    let uuid = parts.join("-");
    let info = json!({"e": {"message": message, "code": name, "id": uuid}});
    api_error(500, INTERNAL_ERROR, Some(info))
}

pub(super) fn reason(status: u16) -> &'static str {
    const REASONS: &str = "100 Continue|200 OK|400 Bad Request|401 Unauthorized|403 Forbidden|\
        404 Not Found|405 Method Not Allowed|413 Payload Too Large|415 Unsupported Media Type|\
        429 Too Many Requests|500 Internal Server Error|502 Bad Gateway|\
        503 Service Temporarily Unavailable|504 Gateway Time-out|\
        520 Web Server Returned an Unknown Error|521 Web Server Is Down|522 Connection Timed Out|\
        523 Origin Is Unreachable|524 A Timeout Occurred";
    let code = format!("{status} ");
    let mut all = REASONS.split('|');
    all.find_map(|r| r.strip_prefix(code.as_str()))
        .unwrap_or("Unknown")
}

pub(super) const CLOUDFLARE_1015: &str = "<!DOCTYPE html>\n<html><head><title>Access denied | misskey.test \
    used Cloudflare to restrict access</title></head>\n<body><div id=\"cf-error-details\">\
    <h1><span class=\"cf-error-type\">Error</span> <span class=\"cf-error-code\">1015</span></h1>\n\
    <h2 class=\"cf-subheadline\">You are being rate limited</h2>\n<p>The owner of this website \
    (misskey.test) has banned you temporarily from accessing this website.</p></div></body></html>\n";
pub(super) const STATEMENT_TIMEOUT: &str = "canceling statement due to statement timeout";

/// Repeats `token` in every message of a JSON error body (Misskey's `error.message` and
/// `error.info.e.message`, fastify's `message`), as a raw error quoting its query would.
pub(super) fn echo_token(resp: &mut Resp, token: &str) {
    let parsed = serde_json::from_slice::<Value>(&resp.body);
    let (true, Ok(mut body)) = (resp.status >= 400, parsed) else {
        return;
    };
    for pointer in ["/error/message", "/error/info/e/message", "/message"] {
        if let Some(Value::String(message)) = body.pointer_mut(pointer) {
            message.push_str(&format!(" (query parameters: [\"{token}\"])"));
        }
    }
    resp.body = body.to_string().into();
}

/// The response of a fault that answers at once (all but TruncatedJson, ResetConnection, Slow).
pub(super) fn fault_response(f: &Fault) -> Resp {
    match *f {
        Fault::RateLimit {
            retry_after_secs,
            with_info,
        } => {
            let reset_ms = now_ms() + retry_after_secs.unwrap_or(1) as i64 * 1000;
            let info = json!({"remaining": 0, "reset": reset_ms / 1000, "resetMs": reset_ms,
                "total": 300});
            let mut r = api_error(429, RATE_LIMITED, with_info.then_some(info));
            let msg = RATE_LIMITED.rsplit('|').next().unwrap_or_default();
            r.headers.push(match retry_after_secs {
                Some(s) => ("Retry-After", s.to_string()),
                None => ("WWW-Authenticate", invalid_request(msg)), // before 2024.9.0
            });
            r
        }
        Fault::CloudflareRateLimit => Resp::html(429, CLOUDFLARE_1015.into(), "cloudflare"),
        Fault::Internal500 => internal_error("QueryFailedError", STATEMENT_TIMEOUT),
        Fault::Html(code) => {
            let t = format!("{code} {}", reason(code));
            let body = format!(
                "<html>\r\n<head><title>{t}</title></head>\r\n<body>\r\n\
                <center><h1>{t}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            Resp::html(code, body, "nginx")
        }
        _ => unreachable!("handled by Shared::respond"),
    }
}

// ─────────────────────────────── HTTP/1.1 plumbing ───────────────────────────────

pub(super) const BODY_LIMIT: usize = 1 << 20;
pub(super) const HEAD_LIMIT: usize = 64 << 10;

pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    /// (lowercase name, value)
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) keep_alive: bool,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|h| h.0 == name);
        found.map(|h| h.1.as_str())
    }

    /// Whether the header's value contains `token` (case-insensitive).
    pub(super) fn has(&self, name: &str, token: &str) -> bool {
        let value = self.header(name).unwrap_or_default();
        value.to_ascii_lowercase().contains(token)
    }
}

/// Err(None): the peer closed; Err(Some(resp)): malformed request, answer and close.
pub(super) type Read<T> = Result<T, Option<Resp>>;

/// Reads until `buf` holds `n` bytes (empty `delim`) or `delim`; returns the bytes before it.
pub(super) async fn take(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    delim: &[u8],
) -> Read<Vec<u8>> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        let end = match delim {
            [] => (buf.len() >= n).then_some(n),
            d => buf.windows(d.len()).position(|w| w == d),
        };
        if let Some(end) = end {
            let out = buf[..end].to_vec();
            buf.drain(..end + delim.len());
            return Ok(out);
        } else if !delim.is_empty() && buf.len() > HEAD_LIMIT {
            return Err(Some(fastify_error(400, BAD_REQUEST)));
        }
        match sock.read(&mut tmp).await {
            Ok(got) if got > 0 => buf.extend_from_slice(&tmp[..got]),
            _ => return Err(None),
        }
    }
}

pub(super) async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Read<Request> {
    let bad = || Some(fastify_error(400, BAD_REQUEST));
    let too_large = || Some(fastify_error(413, TOO_LARGE));
    let head = String::from_utf8_lossy(&take(sock, buf, 0, b"\r\n\r\n").await?).into_owned();
    let mut lines = head.split("\r\n");
    let line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = line[..] else {
        return Err(bad());
    };
    let mut headers = vec![];
    for l in lines {
        let (k, v) = l.split_once(':').ok_or_else(bad)?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let (method, target, body) = (method.to_string(), target.to_string(), vec![]);
    let mut req = Request {
        method,
        target,
        headers,
        body,
        keep_alive: false,
    };
    let old = version == "HTTP/1.0";
    req.keep_alive =
        req.has("connection", "keep-alive") || !(old || req.has("connection", "close"));
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    } else if req.has("expect", "100-continue") {
        let _ = sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    if req.has("transfer-encoding", "chunked") {
        loop {
            let line = String::from_utf8_lossy(&take(sock, buf, 0, b"\r\n").await?).into_owned();
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
            if size == 0 {
                while !take(sock, buf, 0, b"\r\n").await?.is_empty() {} // trailers
                break;
            } else if req.body.len() + size > BODY_LIMIT {
                return Err(too_large());
            }
            let chunk = take(sock, buf, size + 2, b"").await?;
            req.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = req.header("content-length") {
        let n: usize = len.parse().map_err(|_| bad())?;
        if n > BODY_LIMIT {
            return Err(too_large());
        }
        req.body = take(sock, buf, n, b"").await?;
    }
    Ok(req)
}

pub(super) async fn write_response(
    sock: &mut TcpStream,
    r: &Resp,
    keep: bool,
    head: bool,
) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    let date = chrono::DateTime::from_timestamp_millis(now_ms()).expect("now");
    h += &format!("Date: {}\r\n", date.format("%a, %d %b %Y %H:%M:%S GMT"));
    if let Some(ct) = r.ctype {
        h += &format!("Content-Type: {ct}\r\n");
    }
    h += &format!("Content-Length: {}\r\n", r.body.len());
    if r.misskey {
        h += "Cache-Control: private, max-age=0, must-revalidate\r\n";
        h += "Access-Control-Allow-Origin: *\r\n";
    }
    for (k, v) in &r.headers {
        h += &format!("{k}: {v}\r\n");
    }
    h += if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    };
    let mut out = h.into_bytes();
    if !head {
        out.extend_from_slice(&r.body);
    }
    sock.write_all(&out).await?;
    sock.flush().await
}

pub(super) async fn serve_connection(shared: Arc<Shared>, mut sock: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let (resp, keep, head) = match read_request(&mut sock, &mut buf).await {
            Err(None) => return,
            Err(Some(resp)) => (resp, false, false),
            Ok(req) => match shared.respond(&req).await {
                Some(resp) => (resp, req.keep_alive, req.method == "HEAD"),
                None => {
                    let _ = sock.set_zero_linger(); // ResetConnection: RST, not a byte sent
                    return;
                }
            },
        };
        let written = write_response(&mut sock, &resp, keep, head).await;
        if written.is_err() || !keep {
            let _ = sock.shutdown().await;
            return;
        }
    }
}
