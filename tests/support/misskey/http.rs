//! Responses, Misskey and fastify error bodies (§5), injected faults, and how the emulator
//! answers through the tests' HTTP toolkit (`support/http`).

use serde_json::{Value, json};

pub(super) use super::super::http::Request;
use super::super::http::{Answer, Handler, Response, http_date};
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

// ─────────────────────────────── serving ───────────────────────────────

impl Resp {
    /// As written: Misskey's own headers (not on proxy pages), its phrases, and a `Date`.
    fn into_response(self) -> Response {
        let mut r = Response::new(self.status).header("Date", http_date(now_ms()));
        r.reason = reason(self.status);
        if let Some(ct) = self.ctype {
            r = r.header("Content-Type", ct);
        }
        if self.misskey {
            r = r.header("Cache-Control", "private, max-age=0, must-revalidate");
            r = r.header("Access-Control-Allow-Origin", "*");
        }
        r.headers.extend(self.headers);
        r.body = self.body;
        r
    }
}

impl Handler for Shared {
    async fn answer(&self, req: Request) -> Answer {
        match self.respond(&req).await {
            Some(resp) => resp.into_response().into(),
            None => Answer::Reset, // ResetConnection: RST, not a byte sent
        }
    }

    /// Fastify's 400 for a request it cannot parse, 413 past its 1 MiB body limit.
    fn refuse(&self, too_large: bool) -> Option<Response> {
        let refusal = match too_large {
            true => fastify_error(413, TOO_LARGE),
            false => fastify_error(400, BAD_REQUEST),
        };
        Some(refusal.into_response())
    }
}
