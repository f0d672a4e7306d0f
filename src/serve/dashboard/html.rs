//! The pieces every dashboard page is made of: the page shell and its style,
//! escaping, and the links between pages (paths and query values encoded).

use axum::http::StatusCode;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::slot::{SlotSpec, SlotStart};

/// What a query value or path segment may keep unencoded.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b':');

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A path segment or query value, percent-encoded.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// A slot as the pages' links give it: local time without the offset, the
/// CLI's `--start` syntax (`2025-08-14T00:20`).
pub fn slot_param(spec: &SlotSpec, slot: SlotStart) -> String {
    spec.local_time(slot).format("%Y-%m-%dT%H:%M").to_string()
}

/// `/datasets/{name}/slots?start=…&end=…`, HTML-escaped for an attribute.
pub fn slots_link(dataset: &str, spec: &SlotSpec, first: SlotStart, last: SlotStart) -> String {
    escape(&format!(
        "/datasets/{}/slots?start={}&end={}",
        encode(dataset),
        encode(&slot_param(spec, first)),
        encode(&slot_param(spec, last))
    ))
}

/// `/datasets/{name}` (with `?end=` when given), HTML-escaped for an attribute.
pub fn dataset_link(dataset: &str, end: Option<chrono::NaiveDate>) -> String {
    let end = end.map(|d| format!("?end={d}")).unwrap_or_default();
    escape(&format!("/datasets/{}{end}", encode(dataset)))
}

pub fn run_link(run_id: crate::catalog::RunId) -> String {
    format!("<a href=\"/runs/{run_id}\">{run_id}</a>")
}

/// A whole page. `refresh`: reload every 30 s (pages that follow the newest data).
pub fn page(title: &str, body: &str, refresh: bool) -> String {
    let refresh = if refresh {
        "<meta http-equiv=\"refresh\" content=\"30\">"
    } else {
        ""
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #212121; }}
h1 {{ margin: 0 0 .3rem 0; }} h1 a {{ color: inherit; text-decoration: none; }}
h2 {{ border-bottom: 2px solid #1e88e5; padding-bottom: .2rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }} td, th {{ border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; font-size: .9rem; vertical-align: top; }}
td.n, th.n {{ text-align: right; }} tr.gap td {{ color: #c62828; }} .meta {{ color: #757575; }}
.running {{ background: #fff8e1; padding: .4rem; }} .idle {{ color: #757575; }}
.outcome-ok, .verdict-ok {{ color: #2e7d32; }} .outcome-gaps_remain, .outcome-failed, .outcome-interrupted, .outcome-stopped, .outcome-partial {{ color: #c62828; }}
.verdict-blind, .verdict-low_recall {{ color: #c62828; font-weight: bold; }} .verdict-partial {{ color: #ef6c00; }} .verdict-inconclusive, .verdict-skipped {{ color: #757575; }}
.heatmap {{ overflow-x: auto; }} .error {{ color: #c62828; }} nav.window a {{ margin-right: 1rem; }}
.placeholder {{ color: #757575; font-style: italic; }}
</style></head>
<body><h1><a href="/">slotfill</a></h1>
{body}
</body></html>
"#,
        title = escape(title)
    )
}

/// The page a browser gets for an error answer (an API client gets JSON).
pub fn error_page(status: StatusCode, message: &str) -> String {
    page(
        &format!("slotfill: {}", status.as_u16()),
        &format!(
            "<p class=\"error\">{} {}: {}</p><p><a href=\"/\">Back to the overview</a></p>",
            status.as_u16(),
            escape(status.canonical_reason().unwrap_or("error")),
            escape(message)
        ),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_what_a_url_cannot_hold() {
        let spec = SlotSpec::new(10, "+09:00", crate::config::DEFAULT_KEY_TEMPLATE).unwrap();
        let slot = 1_755_098_400; // 2025-08-14T00:20:00+09:00
        assert_eq!(slot_param(&spec, slot), "2025-08-14T00:20");
        assert_eq!(
            slots_link("a b&c", &spec, slot, slot),
            "/datasets/a%20b%26c/slots?start=2025-08-14T00:20&amp;end=2025-08-14T00:20"
        );
        assert_eq!(escape("<\"&>"), "&lt;&quot;&amp;&gt;");
    }
}
