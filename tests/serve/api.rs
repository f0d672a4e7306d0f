//! The routes in process (`tower::ServiceExt::oneshot`): the OpenAPI document
//! lists exactly the routes the router serves, the answers match its
//! schemas, every error has one shape, and a run started over the API runs.

use serde_json::{Value, json};

use crate::support::serve::{InProcess, TOKEN};
use crate::support::*;

fn document(app: &InProcess) -> Value {
    let reply = app.send("GET", "/api/openapi.json", false, b"");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type().starts_with("application/json"));
    reply.json()
}

/// Every operation of the document: (method, path with its parameters filled in, the operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let filled = path.replace("{dataset}", "jp").replace("{id}", "1");
            out.push((method.to_uppercase(), filled, op.clone()));
        }
    }
    out
}

#[test]
fn the_document_lists_every_route_the_router_serves_and_no_other() {
    let app = InProcess::new();
    let doc = document(&app);
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert_eq!(ops.len(), 11, "{ops:?}");
    // A run to read, so that `/api/runs/1` and `/runs/1` exist.
    let started = app.send(
        "POST",
        "/api/datasets/jp/runs?date=2025-08-01&days=1&dry_run=true",
        true,
        b"",
    );
    assert_eq!(started.status, 202, "{}", started.body);
    for (method, path, op) in &ops {
        let secured = !op["security"].as_array().unwrap().is_empty();
        let query = if path.ends_with("/slots") {
            "?start=2025-08-01T00:00&end=2025-08-01T01:00"
        } else if path.ends_with("/runs") {
            "?date=2025-08-01&days=1&dry_run=true"
        } else {
            ""
        };
        let reply = app.send(method, &format!("{path}{query}"), secured, b"");
        // Served: not the fallback's "no such path", not a wrong method.
        let body = &reply.body;
        assert!(
            reply.status != 405 && !body.contains("no such path"),
            "{method} {path}: {} {body}",
            reply.status
        );
        assert!(
            reply.status < 500,
            "{method} {path}: {} {body}",
            reply.status
        );
        // Routes that need the token refuse to answer without it; others answer.
        let bare = app.send(method, &format!("{path}{query}"), false, b"");
        assert_eq!(
            bare.status == 401,
            secured,
            "{method} {path}: {}",
            bare.status
        );
    }
    // Paths and methods the document does not list are not served.
    let unknown = app.send("GET", "/api/nothing", true, b"");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json(), json!({"error": "no such path"}));
    let wrong_method = app.send("DELETE", "/api/runs/1", true, b"");
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"].is_string());
}

/// A small check of a value against the document's schema (types, required
/// properties, enums, items, references).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    let kind = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    match &schema["type"] {
        Value::String(t) => assert!(kind(t), "{at}: {value} is not {t}"),
        Value::Array(ts) => assert!(
            ts.iter().any(|t| kind(t.as_str().unwrap())),
            "{at}: {value} is none of {ts:?}"
        ),
        _ => {}
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        assert!(value.get(name).is_some(), "{at}: {name} missing in {value}");
    }
    if let (Some(props), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        for (name, v) in object {
            match props.get(name) {
                Some(p) => conforms(doc, p, v, &format!("{at}.{name}")),
                None => assert!(
                    schema["additionalProperties"] != false,
                    "{at}: {name} is not described"
                ),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"));
        }
    }
}

fn response_schema(op: &Value, status: u16) -> Value {
    op["responses"][status.to_string()]["content"]["application/json"]["schema"].clone()
}

#[test]
fn answers_match_the_documented_schemas_and_a_run_runs_in_process() {
    let app = InProcess::new();
    let doc = document(&app);
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    // An archived note for one slot, so the run fills it.
    let slot = AUG1_JST + 2 * SLOT;
    let archive = app.dir.path().join("archive").join(key_of(slot));
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let created = chrono::DateTime::from_timestamp(slot + 60, 0).unwrap();
    let note = json!({"id": "aaaaaaaaaa", "createdAt": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "visibility": "public", "text": "ノート", "user": {"host": null}, "userId": "u1"});
    std::fs::write(&archive, format!("{note}\n")).unwrap();

    let body = json!({"start": arg_time(AUG1_JST), "end": arg_time(AUG1_JST + 5 * SLOT)});
    let started = app.send(
        "POST",
        "/api/datasets/jp/runs",
        true,
        body.to_string().as_bytes(),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let run_op = op("/api/datasets/{dataset}/runs", "post");
    conforms(&doc, &response_schema(&run_op, 202), &started.json(), "202");
    let id = started.json()["run_id"].as_i64().unwrap();
    // Refused while it runs, or long finished: either way the document's shapes.
    let mut record = Value::Null;
    for _ in 0..600 {
        let reply = app.send("GET", &format!("/api/runs/{id}"), true, b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
        record = reply.json();
        conforms(
            &doc,
            &response_schema(&op("/api/runs/{id}", "get"), 200),
            &record,
            "run",
        );
        if record["state"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(record["state"], "finished", "{record}");
    assert_eq!(record["filled"], 1, "{record}");
    let filled = app.dir.path().join("complement").join(key_of(slot));
    assert!(filled.exists(), "the run wrote {}", filled.display());

    let gaps = app.send("GET", "/api/datasets/jp/gaps", true, b"");
    assert_eq!(gaps.status, 200);
    conforms(
        &doc,
        &response_schema(&op("/api/datasets/{dataset}/gaps", "get"), 200),
        &gaps.json(),
        "gaps",
    );
    assert_eq!(
        gaps.json()["slots_not_ok"],
        0,
        "the archive held the only notes"
    );
    let events = app.send("POST", "/api/events/s3", true, br#"{"Records": []}"#);
    conforms(
        &doc,
        &response_schema(&op("/api/events/s3", "post"), 200),
        &events.json(),
        "events",
    );

    // Errors: one shape, the documented statuses.
    for (method, uri, token, body, status) in [
        ("POST", "/api/datasets/nope/runs", true, &b"{}"[..], 404),
        (
            "POST",
            "/api/datasets/jp/runs",
            true,
            b"{\"start\": 1}",
            400,
        ),
        ("POST", "/api/datasets/jp/runs", false, b"{}", 401),
        ("GET", "/api/runs/0", true, b"", 400),
        ("GET", "/api/runs/424242", true, b"", 404),
        ("GET", "/api/datasets/jp/gaps?start=-1d", true, b"", 400),
        ("GET", "/api/datasets/jp/gaps?colour=red", true, b"", 400),
        ("POST", "/api/events/s3", true, b"[]", 400),
    ] {
        let reply = app.send(method, uri, token, body);
        assert_eq!(reply.status, status, "{method} {uri}: {}", reply.body);
        conforms(
            &doc,
            &json!({"$ref": "#/components/schemas/Error"}),
            &reply.json(),
            uri,
        );
        let message = reply.json()["error"].as_str().unwrap().to_string();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
        assert!(!reply.body.contains(TOKEN));
    }
    // A body over 1 MiB: 413, the same shape.
    let huge = vec![b' '; (1 << 20) + 1];
    let reply = app.send("POST", "/api/events/s3", true, &huge);
    assert_eq!(reply.status, 413);
    assert!(reply.json()["error"].as_str().unwrap().contains("larger"));
    // A browser asking for a page gets an HTML error page instead.
    let page = app.call(
        axum::http::Request::get("/datasets/nope")
            .header("accept", "text/html")
            .body(axum::body::Body::empty())
            .unwrap(),
    );
    assert_eq!(page.status, 404);
    assert!(page.content_type().starts_with("text/html"));
    assert!(page.body.contains("unknown dataset"), "{}", page.body);
}

/// The value of the sample `series` (name and labels, as written) in an
/// OpenMetrics body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn metrics_carry_the_latest_calibration_and_the_budget_the_origin_announced() {
    use crate::support::mastodon::{
        MastodonConfig, MastodonEmulator, RateLimitForm, StatusSpec, Throttle,
    };
    // A window that starts at the first call (no aligned boundary to cross).
    let e = MastodonEmulator::start(MastodonConfig {
        rate_limit_form: RateLimitForm::GoToSocialIso,
        throttles: vec![Throttle {
            limit: 1000,
            period_secs: 3600,
            paging_only: false,
        }],
        ..Default::default()
    });
    let base = e.base_url();
    let app = InProcess::with_source(|_| {
        format!("kind = \"mastodon\"\nbase_url = \"{base}\"\ntimeline = \"local\"\n")
    });
    let (reference, gap) = (AUG1_JST, AUG1_JST + SLOT);
    for slot in [reference, gap] {
        e.add_statuses((0..20).map(|i| StatusSpec::local((slot + 10 + 25 * i) * 1000, "ノート")));
    }
    // The collector archived 5 statuses the origin no longer returns (deleted since).
    let mut archived = e.expected("local", reference * 1000, (reference + SLOT) * 1000);
    let gone: Vec<Value> = archived[10..15]
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let id: u64 = s["id"].as_str().unwrap().parse().unwrap();
            s["id"] = json!((id + 30_000).to_string());
            s
        })
        .collect();
    archived.extend(gone);
    let body: String = archived.iter().map(|s| format!("{s}\n")).collect();
    let object = app.dir.path().join("primary").join(key_of(reference));
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, body).unwrap();

    let window = json!({"start": arg_time(reference), "end": arg_time(gap)});
    let started = app.send(
        "POST",
        "/api/datasets/jp/runs",
        true,
        window.to_string().as_bytes(),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.json()["run_id"].as_i64().unwrap();
    let mut record = Value::Null;
    for _ in 0..600 {
        record = app
            .send("GET", &format!("/api/runs/{id}"), true, b"")
            .json();
        if record["state"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(record["filled"], 1, "{record}");
    let recorded: f64 = rusqlite::Connection::open(app.dir.path().join("slotfill.db"))
        .unwrap()
        .query_row(
            "SELECT recall FROM calibrations WHERE verdict = 'partial'",
            [],
            |r| r.get(0),
        )
        .expect("a partial calibration");
    assert!(recorded > 0.5 && recorded < 1.0, "{recorded}");

    let metrics = app.send("GET", "/metrics", true, b"").body;
    let jp = "{dataset=\"jp\"}";
    let recall = sample(&metrics, &format!("slotfill_calibration_recall{jp}"));
    assert_eq!(recall, Some(recorded), "{metrics}");
    let blind = sample(&metrics, &format!("slotfill_calibration_blind{jp}"));
    assert_eq!(blind, Some(0.0), "{metrics}");
    // The budget the origin's last answer announced: every call it counted is spent.
    let origin = format!("{{origin=\"{base}\"}}");
    let remaining = sample(
        &metrics,
        &format!("slotfill_origin_ratelimit_remaining{origin}"),
    );
    assert_eq!(remaining, Some(1000.0 - e.calls() as f64), "{metrics}");
    let limit = sample(
        &metrics,
        &format!("slotfill_origin_ratelimit_limit{origin}"),
    );
    assert_eq!(limit, Some(1000.0), "{metrics}");
    let reset = sample(
        &metrics,
        &format!("slotfill_origin_ratelimit_reset_seconds{origin}"),
    )
    .expect("the reset");
    assert!(reset > 3000.0 && reset <= 3602.0, "{reset} s in\n{metrics}");
}
