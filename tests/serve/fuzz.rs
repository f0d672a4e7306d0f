//! Every route and parameter of the OpenAPI document, fed generated bad input
//! in process: no answer is a 5xx, every error is `{"error": "one line"}`,
//! nothing panics, and the token is never echoed. The dataset is held by a
//! claim meanwhile, so a request that passes validation is refused with 409
//! instead of starting real work.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::support::serve::{InProcess, InReply, TOKEN};

/// Values that have broken parsers before: empty, huge, negative, out of the
/// calendar, the token itself, markup, traversal, encodings.
const NASTY: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1e9",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "NaN",
    "true",
    "null",
    "2025-02-30",
    "2025-08-14T25:61",
    "0000-01-01",
    "9999-12-31",
    "+262143-12-31",
    "-99999999d",
    "99999999999h",
    "-3660d",
    "now",
    "yesterday",
    "<script>alert(1)</script>",
    "../../../etc/passwd",
    "%00",
    "%FF%FE",
    "ノート",
    "\u{202e}",
    "a,b;c",
    TOKEN,
];

/// Percent-encodes anything a URL cannot carry as is.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One documented operation.
#[derive(Clone, Debug)]
struct Op {
    method: String,
    path: String,
    secured: bool,
    path_params: Vec<String>,
    query_params: Vec<String>,
    takes_body: bool,
}

fn operations(app: &InProcess) -> Vec<Op> {
    let doc = app.send("GET", "/api/openapi.json", false, b"").json();
    let mut ops = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let params = op["parameters"].as_array().unwrap();
            let named = |at: &str| {
                params
                    .iter()
                    .filter(|p| p["in"] == at)
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            ops.push(Op {
                method: method.to_uppercase(),
                path: path.clone(),
                secured: !op["security"].as_array().unwrap().is_empty(),
                path_params: named("path"),
                query_params: named("query"),
                takes_body: op.get("requestBody").is_some(),
            });
        }
    }
    ops
}

/// A request of `op` with these parameter values and body.
fn uri(op: &Op, path_values: &[String], query: &[(String, String)]) -> String {
    let mut path = op.path.clone();
    for (name, value) in op.path_params.iter().zip(path_values) {
        path = path.replace(&format!("{{{name}}}"), &encode(value));
    }
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// What every answer must be, whatever it was asked.
fn check(what: &str, reply: &InReply) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.status < 500,
        "{what}: {} {}",
        reply.status,
        reply.body
    );
    let headers = format!("{:?}", reply.headers);
    prop_assert!(
        !reply.body.contains(TOKEN) && !headers.contains(TOKEN),
        "{what}: the token echoed: {reply:?}"
    );
    if reply.status >= 400 {
        prop_assert!(
            reply.content_type().starts_with("application/json"),
            "{what}: {} {}",
            reply.status,
            reply.content_type()
        );
        let body: Value = serde_json::from_str(&reply.body)
            .map_err(|e| TestCaseError::fail(format!("{what}: not JSON ({e}): {}", reply.body)))?;
        let object = body.as_object().cloned().unwrap_or_default();
        prop_assert!(
            object.len() == 1 && object["error"].is_string(),
            "{what}: {}",
            reply.body
        );
        let message = object["error"].as_str().unwrap();
        prop_assert!(
            !message.is_empty() && !message.contains('\n'),
            "{what}: {message:?}"
        );
    }
    Ok(())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(NASTY).prop_map(str::to_string),
        proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        (0u8..4, any::<i64>()).prop_map(|(k, n)| match k {
            0 => n.to_string(),
            1 => format!("{}d", n % 100_000),
            2 => format!("2025-{:02}-{:02}", n.rem_euclid(15), n.rem_euclid(35)),
            _ => format!("2025-08-14T{:02}:{:02}", n.rem_euclid(30), n.rem_euclid(70)),
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(
                        &[
                            "start",
                            "end",
                            "date",
                            "days",
                            "max_slots",
                            "dry_run",
                            "Records",
                            "Type",
                            "Message",
                            "detail-type",
                            "detail",
                            "EventName",
                            "Key",
                            "s3",
                            "eventName",
                            "bucket",
                            "object",
                            "key",
                            "size",
                            "eTag",
                        ][..]
                    )
                    .prop_map(str::to_string),
                    text(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(Vec::new()),
    ]
}

#[test]
fn generated_bad_input_never_gets_a_5xx_an_odd_error_or_the_token() {
    let app = InProcess::new();
    // Holds the dataset: valid run requests are answered 409, no run starts.
    let _claim =
        slotfill::serve::state::Claim::take(&app.state, "jp", slotfill::serve::state::RunKind::Run)
            .expect("claim the dataset");
    let ops = operations(&app);
    assert!(ops.len() >= 11);

    // Every parameter of every route, with every value of the corpus.
    for op in &ops {
        for nasty in NASTY {
            let values: Vec<String> = op.path_params.iter().map(|_| nasty.to_string()).collect();
            let uri_path = uri(op, &values, &[]);
            check(&uri_path, &app.send(&op.method, &uri_path, true, b"")).unwrap();
            let fixed: Vec<String> = op.path_params.iter().map(|_| "jp".to_string()).collect();
            for param in &op.query_params {
                let query = [(param.clone(), nasty.to_string())];
                let u = uri(op, &fixed, &query);
                check(&u, &app.send(&op.method, &u, true, b"")).unwrap();
            }
            if op.takes_body {
                let u = uri(op, &fixed, &[]);
                for body in [
                    nasty.as_bytes().to_vec(),
                    json!({"start": nasty, "end": nasty}).to_string().into_bytes(),
                    json!({"date": nasty, "days": nasty}).to_string().into_bytes(),
                    json!({"Records": [{"eventName": nasty, "s3": {"bucket": {"name": nasty}, "object": {"key": nasty}}}]}).to_string().into_bytes(),
                ] {
                    check(&u, &app.send(&op.method, &u, true, &body)).unwrap();
                }
            }
        }
    }

    // Then generated requests: any route, any parameters, any body, any token.
    // A fixed seed: the suite gives the same cases every run (a failure can be replayed).
    let config = Config {
        cases: 768,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = (
        (0..ops.len(), proptest::sample::select(METHODS), any::<u8>()),
        (
            proptest::collection::vec(text(), 2),
            proptest::sample::select(RAW),
            any::<bool>(),
        ),
        proptest::collection::vec((text(), text()), 0..4),
        proptest::collection::vec(text(), 0..4),
        (body(), 0u8..40),
        any::<bool>(),
    );
    runner
        .run(
            &strategy,
            |(
                (i, other_method, pick),
                (values, raw, use_raw),
                extra,
                documented,
                (body, big),
                token,
            )| {
                let op = &ops[i];
                // Mostly the documented method; sometimes another one.
                let method = if pick < 200 {
                    op.method.as_str()
                } else {
                    other_method
                };
                // Documented names with generated values, and generated names.
                let mut query: Vec<(String, String)> = op
                    .query_params
                    .iter()
                    .zip(documented)
                    .map(|(k, v)| (k.clone(), v))
                    .collect();
                query.extend(extra);
                let mut u = uri(op, &values, &query);
                // A path segment as sent, not encoded: broken escapes, dots.
                if use_raw && let Some(name) = op.path_params.first() {
                    u = op.path.replace(&format!("{{{name}}}"), raw);
                }
                prop_assume!(axum::http::Uri::try_from(u.as_str()).is_ok());
                // Now and then a body over the limit.
                let body = if big == 0 {
                    vec![b'{'; (1 << 20) + 10]
                } else {
                    body
                };
                let reply = app.send(method, &u, token, &body);
                check(&format!("{method} {u}"), &reply)?;
                // Without the token a guarded route answers 401 whatever else is
                // wrong; an empty or raw path segment can make it another path.
                if op.secured && !token && method == op.method {
                    let other_path = reply.status == 404 && reply.body.contains("no such path");
                    prop_assert!(reply.status == 401 || other_path, "{u}: {reply:?}");
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Methods tried on every path.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Path segments sent as they are: escapes that decode to no text, or to
/// nothing, dots, encoded slashes.
const RAW: &[&str] = &[
    "%FF%FE", "%", "%zz", "%C3%28", "%00", "..", ".", "%2F", "a%2Fb", "%E3%83",
];
