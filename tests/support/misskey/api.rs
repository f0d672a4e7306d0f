//! Endpoints, validation and queries (§1, §2), and request handling.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::{Mutex, MutexGuard};

use super::http::*;
use super::ids::*;
use super::notes::*;
use super::*;

// ─────────────────────────────── endpoints, validation, queries (§1, §2) ───────────────────────────────

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ep {
    Notes,
    Ltl,
    Gtl,
    Search,
}

/// paramDef properties in source order as `name:type`: b = boolean, l = limit (1..=100),
/// i = integer, id / nid = (nullable) misskey:id, s / ns = (nullable) string.
pub(super) const NOTES_PARAMS: &str = "local:b reply:b renote:b withFiles:b poll:b limit:l sinceId:id \
    untilId:id sinceDate:i untilDate:i";
pub(super) const LTL_PARAMS: &str = "withFiles:b withRenotes:b withReplies:b limit:l sinceId:id \
    untilId:id sinceDate:i untilDate:i allowPartial:b";
pub(super) const GTL_PARAMS: &str =
    "withFiles:b withRenotes:b limit:l sinceId:id untilId:id sinceDate:i untilDate:i";
pub(super) const SEARCH_PARAMS: &str = "query:s sinceId:id untilId:id sinceDate:i untilDate:i limit:l \
    offset:i host:ns userId:nid channelId:nid";

impl Ep {
    pub(super) fn from_name(name: &str) -> Option<Ep> {
        Some(match name {
            "notes" => Ep::Notes,
            "notes/local-timeline" => Ep::Ltl,
            "notes/global-timeline" => Ep::Gtl,
            "notes/search" => Ep::Search,
            _ => return None,
        })
    }

    pub(super) fn params(self) -> &'static str {
        [NOTES_PARAMS, LTL_PARAMS, GTL_PARAMS, SEARCH_PARAMS][self as usize]
    }
}

/// Ajv's integer: a JSON number without fraction (no coercion from strings).
pub(super) fn as_int(v: &Value) -> Option<i64> {
    let whole = |f: &f64| f.is_finite() && f.fract() == 0.0;
    v.as_i64().or(v.as_f64().filter(whole).map(|f| f as i64))
}

pub(super) fn is_misskey_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(super) fn invalid_param(param: &str, reason: &str) -> Resp {
    let info = json!({"param": param, "reason": reason});
    api_error(400, INVALID_PARAM, Some(info))
}

/// Ajv validation (first error only) of the body against the endpoint's paramDef.
pub(super) fn validate(ep: Ep, body: Option<&Value>) -> Result<&Map<String, Value>, Resp> {
    let Some(Value::Object(obj)) = body else {
        return Err(invalid_param("#/type", "must be object"));
    };
    if ep == Ep::Search && !obj.contains_key("query") {
        let reason = "must have required property 'query'";
        return Err(invalid_param("#/required", reason));
    }
    let params = ep.params().split_whitespace();
    for (name, ty) in params.filter_map(|p| p.split_once(':')) {
        let Some(v) = obj.get(name) else { continue };
        let fail = |kw: &str, why: &str| {
            let param = format!("#/properties/{name}/{kw}");
            Err(invalid_param(&param, why))
        };
        let int = as_int(v);
        let string_ok = v.is_string() || (ty.starts_with('n') && v.is_null());
        let id_ok = v.as_str().is_none_or(is_misskey_id);
        match ty {
            "b" if !v.is_boolean() => return fail("type", "must be boolean"),
            "i" | "l" if int.is_none() => return fail("type", "must be integer"),
            "l" if int < Some(1) => return fail("minimum", "must be >= 1"),
            "l" if int > Some(100) => return fail("maximum", "must be <= 100"),
            "s" | "ns" | "id" | "nid" if !string_ok => return fail("type", "must be string"),
            "id" | "nid" if !id_ok => return fail("format", "must match format \"misskey:id\""),
            _ => {}
        }
    }
    Ok(obj)
}

/// The endpoint's filters after defaults. Emulated notes have no files and no polls.
pub(super) struct Filters {
    pub(super) local: bool,
    pub(super) reply: Option<bool>,
    pub(super) renote: Option<bool>,
    pub(super) nothing: bool,
    pub(super) with_renotes: bool,
    pub(super) with_replies: bool,
    pub(super) query: String,
    pub(super) host: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) channel_id: Option<String>,
}

impl Filters {
    pub(super) fn from(obj: &Map<String, Value>) -> Filters {
        let b = |k: &str| obj.get(k).and_then(Value::as_bool);
        let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        Filters {
            local: b("local").unwrap_or(false),
            reply: b("reply"),
            renote: b("renote"),
            nothing: b("withFiles") == Some(true) || b("poll") == Some(true),
            with_renotes: b("withRenotes").unwrap_or(true),
            with_replies: b("withReplies").unwrap_or(false),
            query: s("query").unwrap_or_default().to_lowercase(),
            host: s("host"),
            user_id: s("userId"),
            channel_id: s("channelId"),
        }
    }
}

pub(super) type Notes = BTreeMap<String, Note>;
pub(super) type NoteIter<'a> = Box<dyn Iterator<Item = &'a Note> + 'a>;

/// `notes.range(lo..hi)`, empty instead of panicking on inverted bounds.
pub(super) fn range<'a>(
    notes: &'a Notes,
    lo: Bound<&str>,
    hi: Bound<&str>,
) -> impl DoubleEndedIterator<Item = &'a Note> + use<'a> {
    let empty = match (lo, hi) {
        (Included(l), Included(h)) => l > h,
        (Included(l) | Excluded(l), Included(h) | Excluded(h)) => l >= h,
        _ => false,
    };
    let range = (!empty).then(|| notes.range::<str, _>((lo, hi)));
    range.into_iter().flatten().map(|(_, n)| n)
}

/// makePaginationQuery (§2.1): byte-string ids, exclusive bounds, sinceId-only ascending.
pub(super) fn page_sql<'a>(
    notes: &'a Notes,
    since: Option<&str>,
    until: Option<&str>,
) -> NoteIter<'a> {
    let lo = since.map_or(Unbounded, Excluded);
    let hi = until.map_or(Unbounded, Excluded);
    let asc = since.is_some() && until.is_none();
    let it = range(notes, lo, hi);
    if asc {
        Box::new(it)
    } else {
        Box::new(it.rev())
    }
}

/// Meilisearch (§2.7): strict `createdAt` millisecond filters, always newest first.
pub(super) fn page_meili(
    notes: &Notes,
    s: IdScheme,
    since: Option<i64>,
    until: Option<i64>,
) -> NoteIter<'_> {
    let lo = since.map(|m| time_part(s, m.saturating_add(1)));
    let hi = until.map(|m| time_part(s, m.saturating_sub(1)) + "~");
    let lo = lo.as_deref().map_or(Unbounded, Included);
    let hi = hi.as_deref().map_or(Unbounded, Excluded);
    let it = range(notes, lo, hi).rev();
    Box::new(it.filter(move |n| since.is_none_or(|m| n.ms > m) && until.is_none_or(|m| n.ms < m)))
}

/// Search is refused (400 UNAVAILABLE) for everyone, or for this caller's role (§2.7).
pub(super) fn refuses_search(engine: SearchEngine, viewer: Option<&Account>) -> bool {
    engine == SearchEngine::Disabled || viewer.is_some_and(|a| !a.can_search_notes)
}

/// Which notes an endpoint holds for `viewer` (None: anonymous) (§2.3–§2.7).
pub(super) fn holds(
    ep: Ep,
    engine: SearchEngine,
    st: &State,
    n: &Note,
    f: &Filters,
    viewer: Option<&Account>,
) -> bool {
    let (public, s) = (n.spec.visibility == "public", &n.spec);
    match ep {
        _ if f.nothing => false,
        Ep::Notes => {
            let reply_ok = f.reply.is_none_or(|r| r == n.reply_to.is_some());
            let renote_ok = f.renote.is_none_or(|r| r == n.renote_of.is_some());
            public && !s.local_only && (!f.local || s.local) && reply_ok && renote_ok
        }
        Ep::Ltl => public && s.local && !s.channel && (f.with_replies || n.reply_to.is_none()),
        Ep::Gtl => public && !s.channel && (f.with_renotes || !n.pure_renote()),
        Ep::Search => {
            let Some(text) = n.text() else { return false };
            let channel_id = n.channel.map(|c| st.channels[c].as_str());
            let scope = match (&f.user_id, &f.channel_id) {
                (Some(uid), _) => *uid == st.users[n.user],
                (None, Some(cid)) => channel_id == Some(cid),
                (None, None) => true,
            };
            let host = USERS[n.user].2;
            let host_ok = match f.host.as_deref() {
                Some(".") => host.is_none(),
                h => h.is_none_or(|h| host == Some(h)),
            };
            // Anonymous callers see public and home notes; a signed-in caller also sees its own
            // followers and specified notes and the followers notes of those it follows.
            let author = USERS[n.user].0;
            let own = viewer.is_some_and(|v| v.username == author);
            let visible = match s.visibility {
                "public" | "home" => true,
                "followers" => own || viewer.is_some_and(|v| v.follows.contains(&author)),
                "specified" => own,
                _ => false,
            };
            // Meilisearch indexes only local public and home notes.
            let indexed = engine != SearchEngine::Meilisearch
                || (s.local && (public || s.visibility == "home"));
            let matches = text.to_lowercase().contains(&f.query);
            visible && indexed && scope && host_ok && matches
        }
    }
}

// ─────────────────────────────── request handling ───────────────────────────────

#[derive(Default)]
pub(super) struct Log {
    pub(super) calls: u64,
    pub(super) per_endpoint: HashMap<String, u64>,
    pub(super) bodies: Vec<(String, Value)>,
    pub(super) auth: Vec<String>,
    pub(super) faults: FaultPlan,
}

pub(super) struct Shared {
    pub(super) cfg: EmulatorConfig,
    pub(super) state: Mutex<State>,
    pub(super) log: Mutex<Log>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fastify's content-type parsers: JSON (400 on empty or malformed), text/plain, else 415.
pub(super) fn parse_body(req: &Request) -> Result<Option<Value>, Resp> {
    let media = |c: &str| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let ct = req.header("content-type").map(media);
    match (ct.as_deref(), req.body.is_empty()) {
        (None, true) => Ok(None),
        (Some("application/json"), true) => Err(fastify_error(400, EMPTY_JSON)),
        (Some("application/json"), false) => {
            let parsed = serde_json::from_slice(&req.body).map(Some);
            parsed.map_err(|_| fastify_error(400, INVALID_JSON))
        }
        (Some("text/plain"), _) => Ok(Some(String::from_utf8_lossy(&req.body).into())),
        (other, _) => {
            let other = other.unwrap_or("undefined");
            let err = format!("FST_ERR_CTP_INVALID_MEDIA_TYPE|Unsupported Media Type: {other}");
            Err(fastify_error(415, &err))
        }
    }
}

impl Shared {
    /// Counts and logs the call, then picks its fault (queued first, then `fail_every`).
    pub(super) fn record(&self, endpoint: &str, req: &Request) -> Option<Fault> {
        let mut log = lock(&self.log);
        log.calls += 1;
        *log.per_endpoint.entry(endpoint.to_string()).or_default() += 1;
        if let Some(a) = req.header("authorization") {
            log.auth.push(a.to_string());
        }
        if let Ok(mut v) = serde_json::from_slice::<Value>(&req.body) {
            v.as_object_mut().map(|o| o.remove("i"));
            log.bodies.push((endpoint.to_string(), v));
        }
        log.faults.next()
    }

    /// None means: reset the connection without answering.
    pub(super) async fn respond(&self, req: &Request) -> Option<Resp> {
        let mut resp = self.answer(req).await?;
        if let (true, Some(token)) = (self.cfg.echo_token_in_errors, caller_token(req)) {
            echo_token(&mut resp, &token);
        }
        Some(resp)
    }

    async fn answer(&self, req: &Request) -> Option<Resp> {
        let path = req.target().split('?').next().unwrap_or_default();
        match self.record(path.strip_prefix("/api/").unwrap_or(path), req) {
            None => Some(self.handle(req, path)),
            Some(Fault::ResetConnection) => None,
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                Some(self.handle(req, path))
            }
            Some(Fault::TruncatedJson) => {
                let mut body = self.handle(req, path).body;
                body.truncate(body.len() / 2);
                Some(Resp::new(200, Some(JSON), body, true))
            }
            Some(f) => Some(fault_response(&f)),
        }
    }

    pub(super) fn handle(&self, req: &Request, path: &str) -> Resp {
        let route = format!("|Route {}:{} not found", req.method(), req.target());
        let name = path.strip_prefix("/api/");
        let ep = match (req.method(), name.map(Ep::from_name)) {
            ("GET" | "HEAD", Some(Some(_))) => return Resp::new(405, None, vec![], true),
            ("GET" | "HEAD", Some(None)) => return api_error(404, UNKNOWN_ENDPOINT, None),
            (_, None | Some(None)) => return fastify_error(404, &route),
            (_, Some(Some(ep))) => ep,
        };
        let body = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        // §1: `Authorization: Bearer` (case-sensitive) wins over the body's `i`
        let auth = req.header("authorization").unwrap_or_default();
        let token = match auth.strip_prefix("Bearer ") {
            Some(t) => Some(t.to_string()),
            None => match body.as_ref().and_then(|b| b.get("i")) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Resp::new(400, None, vec![], true),
            },
        };
        let viewer = token.as_deref().map(|t| self.cfg.account(t));
        if let Some(None) = viewer {
            // §1: an unknown token is never treated as anonymous.
            let mut r = api_error(401, AUTH_FAILED, None);
            let value = "Bearer realm=\"Misskey\", error=\"invalid_token\", \
                error_description=\"Failed to authenticate\"";
            r.headers.push(("WWW-Authenticate", value.into()));
            return r;
        }
        let viewer = viewer.flatten();
        let query = |obj| self.query(ep, obj, viewer.as_ref());
        match validate(ep, body.as_ref()).and_then(query) {
            Ok(notes) => Resp::json(200, &Value::Array(notes)),
            Err(r) => r,
        }
    }

    pub(super) fn query(
        &self,
        ep: Ep,
        obj: &Map<String, Value>,
        viewer: Option<&Account>,
    ) -> Result<Vec<Value>, Resp> {
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        let engine = self.cfg.search;
        if ep == Ep::Ltl && flag("withReplies") && flag("withFiles") {
            return Err(api_error(400, BOTH_REPLIES_FILES, None));
        } else if ep == Ep::Search && refuses_search(engine, viewer) {
            return Err(api_error(400, UNAVAILABLE, None));
        }
        let limit = obj.get("limit").and_then(as_int).unwrap_or(10) as usize;
        // allowPartial: emulate a fanout-timeline short page
        let partial = ep == Ep::Ltl && flag("allowPartial");
        let limit = if partial { (limit / 2).max(1) } else { limit };
        let id = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let date = |k: &str| obj.get(k).and_then(as_int).filter(|d| *d != 0);
        let (mut since, mut until) = (id("sinceId"), id("untilId"));
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if matches!(ep, Ep::Ltl | Ep::Search) {
            // style (a): per bound
            since = since.or_else(|| date("sinceDate").map(|t| st.ids.gen_bound(t)));
            until = until.or_else(|| date("untilDate").map(|t| st.ids.gen_bound(t)));
        } else if since.is_none() && until.is_none() {
            // style (b): all or nothing
            since = date("sinceDate").map(|t| st.ids.gen_bound(t));
            until = date("untilDate").map(|t| st.ids.gen_bound(t));
        }
        let st = &*st;
        let page = if ep == Ep::Search && engine == SearchEngine::Meilisearch {
            let nan = || internal_error("MeiliSearchApiError", "invalid filter: createdAt > NaN");
            let ms = |b: Option<String>| b.map(|s| parse_id_ms(st.scheme, &s).ok_or_else(nan));
            let (since, until) = (ms(since).transpose()?, ms(until).transpose()?);
            page_meili(&st.notes, st.scheme, since, until)
        } else {
            page_sql(&st.notes, since.as_deref(), until.as_deref())
        };
        let f = Filters::from(obj);
        let served = self.served(ep, st, viewer);
        let page = page.filter(|n| holds(ep, engine, st, n, &f, viewer) && served(n));
        let shown = |n: &&Note| st.shown(n, viewer);
        // Meilisearch: `limit` hits first, then Misskey loads and filters them (§9.1).
        let page: Vec<&Note> = if ep == Ep::Search && engine == SearchEngine::Meilisearch {
            page.take(limit).filter(shown).collect()
        } else {
            page.filter(shown).take(limit).collect()
        };
        Ok(page.into_iter().map(|n| st.pack(n)).collect())
    }

    /// What the server serves at all to `viewer` on `ep`: visitors' restrictions for anonymous
    /// callers, and the fanout timeline's horizon without database fallback (§9.1).
    pub(super) fn served<'a>(
        &self,
        ep: Ep,
        st: &'a State,
        viewer: Option<&Account>,
    ) -> impl Fn(&Note) -> bool + 'a {
        let visitors = if viewer.is_none() {
            self.cfg.visitors
        } else {
            Visitors::All
        };
        let horizon = match self.cfg.fanout {
            Some(Fanout {
                cached,
                db_fallback: false,
            }) if ep == Ep::Ltl => {
                let f = Filters::from(&Map::new());
                let engine = self.cfg.search;
                let listed = st.notes.values().rev();
                let listed = listed.filter(|n| holds(Ep::Ltl, engine, st, n, &f, None));
                // An empty list serves nothing: every id sorts below "~".
                Some(
                    listed
                        .take(cached)
                        .last()
                        .map_or("~".to_string(), |n| n.id.clone()),
                )
            }
            _ => None,
        };
        move |n: &Note| {
            let seen = match visitors {
                Visitors::All => true,
                Visitors::Local => USERS[n.user].2.is_none(),
                Visitors::None => false,
            };
            seen && horizon.as_ref().is_none_or(|h| n.id >= *h)
        }
    }
}

/// The token a request carries: the Bearer header, else the body's `i` (§1).
fn caller_token(req: &Request) -> Option<String> {
    let bearer = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let body = || serde_json::from_slice::<Value>(&req.body).ok();
    let field = || body().and_then(|b| b.get("i")?.as_str().map(str::to_string));
    bearer.map(str::to_string).or_else(field)
}
