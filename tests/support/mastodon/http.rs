//! Requests and answers: authentication, the feed settings of Mastodon 4.5
//! (`/api/v2/instance`, `verify_credentials`), GoToSocial's User-Agent check,
//! the rate limits (`limits`), injected faults, and how the emulator answers
//! through the tests' HTTP toolkit (`support/http`). Every answer carries a `Date`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use super::super::http::Request as HttpRequest;
use super::super::http::{Answer, Handler, Response, http_date, parse_query};
use super::super::misskey::FaultPlan;
use super::feed::{Part, State, Status, link, part_of};
use super::gts::GtsAnswer;
use super::limits::{Meter, RateLimitForm, Refusals};
use super::{Fault, MastodonConfig, ServerKind};

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
    /// The path and query of every request, in order (faulted ones included).
    pub(super) requests: Vec<(String, BTreeMap<String, String>)>,
    pub(super) auth: Vec<String>,
    /// Refusals the rate limits answered (not injected ones).
    pub(super) throttled: u64,
    pub(super) refusals: Refusals,
    /// Timeline requests in flight now, and the most ever at once.
    pub(super) in_flight: (u64, u64),
    pub(super) faults: FaultPlan,
    meters: Vec<Meter>,
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

/// `X-RateLimit-Reset` of an injected 429: ISO 8601 with microseconds.
fn reset_header(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

const PAGING: [&str; 4] = ["max_id", "min_id", "since_id", "page"];
const TIMELINE: &str = "/api/v1/timelines/public";
/// `UserRole::FLAGS[:view_feeds]`, and the default role's `invite_users`.
const VIEW_FEEDS: u64 = 1 << 20;
const INVITE_USERS: u64 = 1 << 16;

/// One request as the handlers see it.
pub(super) struct Request<'a> {
    path: &'a str,
    q: &'a BTreeMap<String, String>,
    token: Option<&'a str>,
}

impl Shared {
    /// Counts the request in every throttle it matches; returns the refusal
    /// if one is exceeded, and the headers of the most limited one.
    fn throttle(
        &self,
        log: &mut Log,
        q: &BTreeMap<String, String>,
    ) -> (Option<Resp>, Vec<(&'static str, String)>) {
        let now = now_ms();
        let form = self.cfg.rate_limit_form;
        let paging = PAGING.iter().any(|k| q.contains_key(*k));
        log.meters
            .resize(self.cfg.throttles.len(), Meter::default());
        let mut tightest: Option<(u64, Vec<(&'static str, String)>)> = None;
        let mut refused_by = None;
        for (i, (t, meter)) in self
            .cfg
            .throttles
            .iter()
            .zip(log.meters.iter_mut())
            .enumerate()
        {
            if t.paging_only && !paging {
                continue;
            }
            let verdict = meter.count(t, form, now);
            if verdict.refused && refused_by.is_none() {
                refused_by = Some((i, meter.window_of(t, form, now), verdict.headers.clone()));
            }
            if tightest
                .as_ref()
                .is_none_or(|(r, _)| verdict.remaining < *r)
            {
                tightest = Some((verdict.remaining, verdict.headers));
            }
        }
        let headers = tightest.map(|(_, h)| h).unwrap_or_default();
        let Some((throttle, window, refusal)) = refused_by else {
            return (None, headers);
        };
        log.throttled += 1;
        *log.refusals
            .by_window
            .entry((throttle, window))
            .or_default() += 1;
        let mut r = match form {
            RateLimitForm::Throttle503 => {
                Resp::error(503, "Service Unavailable: server capacity exceeded")
            }
            _ => Resp::error(429, "Too many requests"),
        };
        r.headers = refusal;
        (Some(r), headers)
    }

    /// Logs the call and picks its fault (queued first, then `fail_every`).
    fn record(
        &self,
        log: &mut Log,
        path: &str,
        q: &BTreeMap<String, String>,
        auth: Option<&str>,
    ) -> Option<Fault> {
        log.calls += 1;
        log.requests.push((path.to_string(), q.clone()));
        if let Some(a) = auth {
            log.auth.push(a.to_string());
        }
        log.faults.next()
    }

    /// None means: reset the connection without answering.
    async fn respond(&self, req: &HttpRequest) -> Option<Resp> {
        let header = |name: &str| req.header(name);
        let auth = header("authorization");
        let (path, q) = parse_query(req.target());
        let (fault, throttled) = {
            let mut log = lock(&self.log);
            let fault = self.record(&mut log, &path, &q, auth);
            let throttled = self.throttle(&mut log, &q);
            (fault, throttled)
        };
        let request = Request {
            path: &path,
            q: &q,
            token: auth.and_then(|a| a.strip_prefix("Bearer ")),
        };
        let teapot = self.cfg.kind == ServerKind::GoToSocial
            && header("user-agent").is_none_or(str::is_empty);
        let answer = |throttled: (Option<Resp>, Vec<(&'static str, String)>)| match throttled {
            // GoToSocial's User-Agent middleware runs before anything else.
            _ if teapot => Resp::json(
                418,
                r#"{"error": "I'm a teapot: no user-agent sent with request"}"#.into(),
            ),
            (Some(refused), _) => refused,
            (None, headers) => {
                let mut r = self.handle(req.method(), &request);
                r.headers.extend(headers);
                r
            }
        };
        if !self.cfg.answer_delay.is_zero() {
            tokio::time::sleep(self.cfg.answer_delay).await;
        }
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

    fn handle(&self, method: &str, r: &Request) -> Resp {
        let answer = match (method, r.path) {
            ("GET", TIMELINE) => self.timeline(r),
            ("GET", "/api/v2/instance") => self.instance(),
            ("GET", "/api/v1/accounts/verify_credentials") => self.credentials(r),
            _ => Resp::error(404, "Record not found"),
        };
        // Sharkey's Mastodon layer answers its errors as 401.
        match (self.cfg.kind, answer.status) {
            (ServerKind::Sharkey, 400..=499) if answer.status != 429 => Resp {
                status: 401,
                ..answer
            },
            _ => answer,
        }
    }

    /// The caller's token: Ok(None) anonymous, Err for one the server does not know.
    fn token<'a>(&self, r: &Request<'a>) -> Result<Option<&'a str>, Resp> {
        match r.token {
            Some(t) if !self.cfg.tokens.iter().any(|k| k == t) => Err(match self.cfg.kind {
                ServerKind::GoToSocial => Resp::error(401, "Unauthorized: invalid token"),
                _ => Resp::error(401, "The access token is invalid"),
            }),
            t => Ok(t),
        }
    }

    /// `PublicFeed#user_has_access_to_feed?` for one setting.
    fn may_read(&self, setting: &str, token: Option<&str>) -> bool {
        match setting {
            "authenticated" => token.is_some(),
            "disabled" => token.is_some_and(|t| self.cfg.staff_tokens.iter().any(|s| s == t)),
            _ => true,
        }
    }

    /// The part a caller sees (Mastodon 4.5's `PublicFeed`), or the 401 of
    /// `require_auth?` for an anonymous caller.
    fn feed_part(&self, q: &BTreeMap<String, String>, token: Option<&str>) -> Result<Part, Resp> {
        let asked = part_of(q);
        let Some(access) = &self.cfg.feed_access else {
            return Ok(asked);
        };
        let require_auth = match asked {
            Part::Local => access.local != "public",
            Part::Remote => access.remote != "public",
            _ => access.local != "public" || access.remote != "public",
        };
        if require_auth && token.is_none() {
            return Err(Resp::error(
                401,
                "This method requires an authenticated user",
            ));
        }
        let (local, remote) = (
            self.may_read(access.local, token),
            self.may_read(access.remote, token),
        );
        let local_only = asked == Part::Local || !remote;
        let remote_only = asked == Part::Remote || !local;
        Ok(match (local_only, remote_only) {
            _ if (local_only && !local) || (remote_only && !remote) => Part::Nothing,
            (true, _) => Part::Local,
            (_, true) => Part::Remote,
            _ => Part::All,
        })
    }

    fn timeline(&self, r: &Request) -> Resp {
        let token = match self.token(r) {
            Ok(token) => token,
            Err(refusal) => return refusal,
        };
        if token.is_none() && self.cfg.require_token {
            return match self.cfg.kind {
                ServerKind::GoToSocial => Resp::error(401, "Unauthorized: token not supplied"),
                _ => Resp::error(
                    self.cfg.auth_status,
                    "This method requires an authenticated user",
                ),
            };
        }
        let part = match self.feed_part(r.q, token) {
            Ok(part) => part,
            Err(refusal) => return refusal,
        };
        let state = lock(&self.state);
        let (page, link): (Vec<&Status>, Option<String>) = match self.cfg.kind {
            ServerKind::GoToSocial => match state.gts_page(r.q) {
                GtsAnswer::Page { statuses, link } => (statuses, link),
                GtsAnswer::BadLimit(v) => {
                    let message =
                        format!("Bad Request: error parsing key limit with value {v} as int");
                    return Resp::error(400, &message);
                }
            },
            _ => {
                let mut q = r.q.clone();
                if self.cfg.ignore_max_id {
                    q.remove("max_id");
                }
                let page = state.page(&q, part);
                let link = link(&self.base, r.q, &page);
                (page, link)
            }
        };
        let body = format!(
            "[{}]",
            page.iter()
                .map(|s| s.json.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut resp = Resp::json(200, body);
        if let Some(link) = link {
            resp.headers.push(("Link", link));
        }
        resp
    }

    /// `GET /api/v2/instance`: Mastodon 4.5 names its feed settings; a server
    /// without them says nothing of the kind.
    fn instance(&self) -> Resp {
        let mut configuration = json!({ "statuses": { "max_characters": 500 } });
        if let Some(access) = self
            .cfg
            .feed_access
            .as_ref()
            .filter(|_| !self.cfg.hide_feed_settings)
        {
            configuration["timelines_access"] = json!({
                "live_feeds": { "local": access.local, "remote": access.remote },
                "hashtag_feeds": { "local": "public", "remote": "public" },
                "trending_link_feeds": { "local": "public", "remote": "public" }
            });
        }
        let version = match self.cfg.feed_access {
            Some(_) if !self.cfg.hide_feed_settings => "4.5.0",
            _ => "4.3.2",
        };
        Resp::json(
            200,
            json!({ "domain": super::feed::HOST, "version": version, "configuration": configuration }).to_string(),
        )
    }

    /// `GET /api/v1/accounts/verify_credentials`: the token's account and role.
    fn credentials(&self, r: &Request) -> Resp {
        match self.token(r) {
            Err(refusal) => refusal,
            Ok(None) => Resp::error(401, "The access token is invalid"),
            Ok(Some(token)) => {
                let staff = self.cfg.staff_tokens.iter().any(|s| s == token);
                let permissions = if staff { VIEW_FEEDS } else { INVITE_USERS };
                let body = json!({"id": "7", "username": "collector", "acct": "collector",
                    "role": {"id": "3", "name": if staff { "Moderator" } else { "" }, "permissions": permissions.to_string()}});
                Resp::json(200, body.to_string())
            }
        }
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

impl Resp {
    /// As written: a `Date` on every answer.
    fn into_response(self) -> Response {
        let mut r = Response::new(self.status)
            .header("Date", http_date(now_ms()))
            .header("Content-Type", self.ctype);
        r.headers.extend(self.headers);
        r.body = self.body;
        r
    }
}

impl Handler for Shared {
    /// Counts the timeline requests in flight while they are answered.
    async fn answer(&self, req: HttpRequest) -> Answer {
        let timeline = req.target().starts_with(TIMELINE);
        if timeline {
            let mut log = lock(&self.log);
            log.in_flight.0 += 1;
            log.in_flight.1 = log.in_flight.1.max(log.in_flight.0);
        }
        let resp = self.respond(&req).await;
        if timeline {
            lock(&self.log).in_flight.0 -= 1;
        }
        match resp {
            Some(resp) => resp.into_response().into(),
            None => Answer::Reset, // ResetConnection: RST, not a byte sent
        }
    }
}
