//! `GET /api/openapi.json`: an OpenAPI 3.1 document generated from the route
//! table, so it lists exactly the routes the router serves. The schemas of
//! the JSON bodies are written here, next to the generation, and tested
//! against what the handlers answer (tests/serve/api.rs).

use axum::Json;
use serde_json::{Map, Value, json};

use super::routes::{Answer, In, Kind, ROUTES, Route};

/// The document, built once per request (it is small).
pub async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "slotfill serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The always-on mode of slotfill (docs/serve.md). Errors are {\"error\": \"one line\"}; routes marked with a security requirement need the API token when one is configured.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "the token as the password (SNS)"},
            },
            "schemas": schemas(),
        },
    })
}

fn operation(route: &Route) -> Value {
    let mut op = json!({
        "operationId": format!("{:?}", route.handler),
        "summary": route.summary,
        "parameters": route.params.iter().map(|p| json!({
            "name": p.name,
            "in": match p.at { In::Path => "path", In::Query => "query" },
            "required": p.required,
            "description": p.about,
            "schema": kind_schema(p.kind),
        })).collect::<Vec<_>>(),
        "responses": responses(route),
    });
    if route.token {
        op["security"] = json!([{"bearer": []}, {"basic": []}]);
    } else {
        op["security"] = json!([]);
    }
    if let Some(schema) = route.body {
        op["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": reference(schema)}},
        });
    }
    op
}

fn responses(route: &Route) -> Value {
    let (status, answer) = route.ok;
    let content = match answer {
        Answer::Text => json!({"text/plain": {"schema": {"type": "string"}}}),
        Answer::Html => json!({"text/html": {"schema": {"type": "string"}}}),
        Answer::OpenMetrics => {
            json!({"application/openmetrics-text": {"schema": {"type": "string"}}})
        }
        Answer::Json(schema) => json!({"application/json": {"schema": reference(schema)}}),
    };
    let mut out = Map::new();
    out.insert(
        status.to_string(),
        json!({"description": "success", "content": content}),
    );
    let mut errors: Vec<u16> = route.errors.to_vec();
    if route.token {
        errors.push(401);
    }
    if route.body.is_some() {
        errors.push(413);
    }
    errors.sort_unstable();
    for code in errors {
        out.insert(
            code.to_string(),
            json!({
                "description": describe_status(code),
                "content": {"application/json": {"schema": reference("Error")}},
            }),
        );
    }
    Value::Object(out)
}

fn describe_status(code: u16) -> &'static str {
    match code {
        400 => "bad input: the message says what and how to give it",
        401 => "missing or wrong API token",
        404 => "unknown dataset, run or path",
        409 => "the dataset has a run in progress",
        413 => "the body is larger than 1 MiB",
        503 => "the catalog or the store cannot be read now: retry",
        _ => "error",
    }
}

fn reference(schema: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{schema}")})
}

fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::Name => json!({"type": "string", "minLength": 1}),
        Kind::Count => json!({"type": "integer", "minimum": 1}),
        Kind::Date => json!({"type": "string", "format": "date", "examples": ["2025-08-14"]}),
        Kind::Time => json!({"type": "string", "examples": ["2025-08-14T00:20", "-3d", "now"]}),
        Kind::Bool => json!({"type": "boolean"}),
    }
}

fn schemas() -> Value {
    let count = json!({"type": ["integer", "null"]});
    let text = json!({"type": ["string", "null"]});
    json!({
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": false,
            "properties": {"error": {"type": "string", "description": "one line"}},
        },
        "OpenApi": {"type": "object", "description": "this document"},
        "RunRequest": {
            "type": "object", "additionalProperties": false,
            "description": "start and end, or date with days",
            "properties": {
                "start": kind_schema(Kind::Time), "end": kind_schema(Kind::Time),
                "date": kind_schema(Kind::Date), "days": kind_schema(Kind::Count),
                "max_slots": {"type": "integer", "minimum": 0},
                "dry_run": {"type": "boolean"},
            },
        },
        "RunStarted": {
            "type": "object", "required": ["run_id"],
            "properties": {"run_id": {"type": "integer"}},
        },
        "RunRecord": {
            "type": "object",
            "required": ["run_id", "command", "args", "started_at", "state", "exit_status", "calibrations", "provenance"],
            "properties": {
                "run_id": {"type": "integer"}, "dataset": text, "command": {"type": "string"},
                "args": {"type": "string"}, "window_start": text, "window_end": text,
                "started_at": {"type": "string"}, "finished_at": text,
                "outcome": {"type": ["string", "null"], "enum": ["ok", "gaps_remain", "dry_run", "stopped", "failed", "interrupted", null]},
                "slots": count, "missing_before": count, "filled": count, "still_missing": count,
                "requests": count, "downloads": count, "bytes_read": count, "origin_calls": count,
                "error": text,
                "state": {"type": "string", "enum": ["running", "finished", "abandoned"]},
                "exit_status": {"type": ["integer", "null"]},
                "progress": {
                    "type": "object",
                    "properties": {
                        "phase": {"type": "string", "enum": ["starting", "scanning", "filling", "verifying", "done"]},
                        "slots_attempted": {"type": "integer"},
                    },
                },
                "calibrations": {"type": "array", "items": reference("Calibration")},
                "provenance": {"type": "array", "items": reference("Provenance")},
            },
        },
        "Calibration": {
            "type": "object", "additionalProperties": false,
            "description": "the origin's answer for an archived slot compared with the archive (docs/catalog.md, calibrations)",
            "required": ["id", "verdict", "source", "origin_calls", "calibrated_at"],
            "properties": {
                "id": {"type": "integer"},
                "verdict": {"type": "string", "enum": ["ok", "partial", "low_recall", "blind", "inconclusive", "skipped"]},
                "blind_to": {"type": ["string", "null"], "enum": ["all", "remote", "local", null]},
                "recall": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "expected": count, "found": count,
                "reference_slot": text, "reference_key": text,
                "first_gap": text, "last_gap": text,
                "source": {"type": "string", "description": "the endpoint asked"},
                "origin_calls": {"type": "integer"},
                "message": text,
                "calibrated_at": {"type": "string"},
            },
        },
        "Provenance": {
            "type": "object", "additionalProperties": false,
            "description": "the run's attempts that obtained their notes one way; the token's class, never the token",
            "required": ["attempts", "mode", "engine", "token", "range_ends", "calibration_ids"],
            "properties": {
                "attempts": {"type": "integer"},
                "origin": {"type": "string"}, "mode": {"type": "string"},
                "endpoint": {"type": "string"}, "engine": {"type": "string"},
                "token": {"type": "string", "enum": ["anonymous", "user", ""]},
                "visibility": {"type": "array", "items": {"type": "string"}},
                "host": text, "filter": {"type": "string"},
                "range_ends": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "what ended the attempts' ranges, with a count each"},
                "calibration_ids": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "Gaps": {
            "type": "object", "required": ["slots_not_ok", "periods", "slots_empty", "slots_pending"],
            "properties": {
                "slots_not_ok": {"type": "integer"},
                "periods": {"type": "array", "items": {
                    "type": "object", "required": ["start", "last_slot", "slots", "reasons"],
                    "properties": {
                        "start": {"type": "string"}, "last_slot": {"type": "string"},
                        "slots": {"type": "integer"},
                        "reasons": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                }},
                "slots_empty": {"type": "integer"}, "slots_pending": {"type": "integer"},
            },
        },
        "S3Event": {
            "type": "object",
            "description": "an S3 notification ({\"Records\": [...]}, AWS or MinIO), an SNS notification wrapping one, or an EventBridge Object Created / Object Deleted event",
        },
        "EventsApplied": {
            "type": "object", "required": ["applied", "ignored", "unchanged"],
            "properties": {
                "applied": {"type": "integer"}, "ignored": {"type": "integer"},
                "unchanged": {"type": "integer", "description": "applied records the catalog already reflected"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once_with_its_parameters() {
        let doc = build();
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method.as_str()];
            assert!(op.is_object(), "{} {}", route.method.as_str(), route.path);
            for name in route.path.split('{').skip(1) {
                let name = name.split('}').next().unwrap();
                let described = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path");
                assert!(described, "{name} of {}", route.path);
            }
        }
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(operations, ROUTES.len());
        // Every schema referenced exists.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
