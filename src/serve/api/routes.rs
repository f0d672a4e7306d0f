//! The route table: every path the server answers, once. The router is built
//! from it and the OpenAPI document is generated from it (both in the parent
//! module), so neither can list a route the other lacks.

/// Which handler answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Health,
    Overview,
    DatasetPage,
    SlotsPage,
    RunPage,
    Metrics,
    OpenApi,
    StartRun,
    RunRecord,
    Gaps,
    S3Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

/// The values a parameter takes (as JSON Schema types and formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A dataset name as configured.
    Name,
    /// A positive whole number.
    Count,
    /// `YYYY-MM-DD`.
    Date,
    /// The CLI's time syntax: `2025-08-14T00:20`, `-3d`, `now`.
    Time,
    Bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub at: In,
    pub kind: Kind,
    pub required: bool,
    pub about: &'static str,
}

/// What a route answers with when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Text,
    Html,
    OpenMetrics,
    /// JSON described by this schema of `components/schemas`.
    Json(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub handler: Handler,
    pub method: Method,
    /// axum's syntax, which is also OpenAPI's: `/api/runs/{id}`.
    pub path: &'static str,
    /// Needs the API token (when one is configured).
    pub token: bool,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// The JSON request body's schema, if the route takes one.
    pub body: Option<&'static str>,
    /// The success status and what it carries.
    pub ok: (u16, Answer),
    /// Error statuses the route answers besides 401 (token routes) and 413.
    pub errors: &'static [u16],
}

const DATASET: Param = Param {
    name: "dataset",
    at: In::Path,
    kind: Kind::Name,
    required: true,
    about: "a configured dataset",
};

const RUN_ID: Param = Param {
    name: "id",
    at: In::Path,
    kind: Kind::Count,
    required: true,
    about: "a run id (runs.id in the catalog)",
};

const fn query(name: &'static str, kind: Kind, about: &'static str) -> Param {
    Param {
        name,
        at: In::Query,
        kind,
        required: false,
        about,
    }
}

pub const ROUTES: &[Route] = &[
    Route {
        handler: Handler::Health,
        method: Method::Get,
        path: "/healthz",
        token: false,
        summary: "Liveness and readiness: `ok`",
        params: &[],
        body: None,
        ok: (200, Answer::Text),
        errors: &[],
    },
    Route {
        handler: Handler::Overview,
        method: Method::Get,
        path: "/",
        token: false,
        summary: "The dashboard: every dataset, its newest catalogued fortnight, runs in progress",
        params: &[],
        body: None,
        ok: (200, Answer::Html),
        errors: &[503],
    },
    Route {
        handler: Handler::DatasetPage,
        method: Method::Get,
        path: "/datasets/{dataset}",
        token: false,
        summary: "One dataset's page: the heatmap of the 14 days ending with `end`, with links to the previous and next fortnight",
        params: &[
            DATASET,
            query(
                "end",
                Kind::Date,
                "the last local day shown (default: the day of the newest catalogued slot)",
            ),
        ],
        body: None,
        ok: (200, Answer::Html),
        errors: &[400, 404, 503],
    },
    Route {
        handler: Handler::SlotsPage,
        method: Method::Get,
        path: "/datasets/{dataset}/slots",
        token: false,
        summary: "The slots of a period: state, deciding object, every fill attempt, its outcome and last error",
        params: &[
            DATASET,
            Param {
                required: true,
                ..query("start", Kind::Time, "the first slot (CLI time syntax)")
            },
            Param {
                required: true,
                ..query("end", Kind::Time, "the last slot (CLI time syntax)")
            },
        ],
        body: None,
        ok: (200, Answer::Html),
        errors: &[400, 404, 503],
    },
    Route {
        handler: Handler::RunPage,
        method: Method::Get,
        path: "/runs/{id}",
        token: false,
        summary: "One run's record: window, outcome, counts, the slots it attempted",
        params: &[RUN_ID],
        body: None,
        ok: (200, Answer::Html),
        errors: &[400, 404, 503],
    },
    Route {
        handler: Handler::Metrics,
        method: Method::Get,
        path: "/metrics",
        token: true,
        summary: "Prometheus metrics (OpenMetrics text)",
        params: &[],
        body: None,
        ok: (200, Answer::OpenMetrics),
        errors: &[503],
    },
    Route {
        handler: Handler::OpenApi,
        method: Method::Get,
        path: "/api/openapi.json",
        token: false,
        summary: "This document",
        params: &[],
        body: None,
        ok: (200, Answer::Json("OpenApi")),
        errors: &[],
    },
    Route {
        handler: Handler::StartRun,
        method: Method::Post,
        path: "/api/datasets/{dataset}/runs",
        token: true,
        summary: "Start `slotfill run` (scan, fill, verify) over a window: the body, or `?date=&days=`",
        params: &[
            DATASET,
            query("start", Kind::Time, "the first slot (with end)"),
            query("end", Kind::Time, "the last slot (with start)"),
            query(
                "date",
                Kind::Date,
                "the last local day of the window (with days)",
            ),
            query(
                "days",
                Kind::Count,
                "local days ending with date (default 1)",
            ),
            query("max_slots", Kind::Count, "fill at most this many slots"),
            query("dry_run", Kind::Bool, "plan only: fetch and write nothing"),
        ],
        body: Some("RunRequest"),
        ok: (202, Answer::Json("RunStarted")),
        errors: &[400, 404, 409, 503],
    },
    Route {
        handler: Handler::RunRecord,
        method: Method::Get,
        path: "/api/runs/{id}",
        token: true,
        summary: "A run record, with its progress while it runs",
        params: &[RUN_ID],
        body: None,
        ok: (200, Answer::Json("RunRecord")),
        errors: &[400, 404, 503],
    },
    Route {
        handler: Handler::Gaps,
        method: Method::Get,
        path: "/api/datasets/{dataset}/gaps",
        token: true,
        summary: "What `slotfill gaps --format json` prints (without a window: everything catalogued)",
        params: &[
            DATASET,
            query("start", Kind::Time, "the first slot (with end)"),
            query("end", Kind::Time, "the last slot (with start)"),
        ],
        body: None,
        ok: (200, Answer::Json("Gaps")),
        errors: &[400, 404, 503],
    },
    Route {
        handler: Handler::S3Events,
        method: Method::Post,
        path: "/api/events/s3",
        token: true,
        summary: "S3 event notifications (AWS, MinIO, SNS, EventBridge); 503 asks the sender to retry",
        params: &[],
        body: Some("S3Event"),
        ok: (200, Answer::Json("EventsApplied")),
        errors: &[400, 503],
    },
];
