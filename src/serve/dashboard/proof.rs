//! The run page's calibration and provenance (issue "Complete means
//! proven"): each calibration the run made (its verdict, recall, the
//! archived slot it compared and the gap slots it vouched for, linked to
//! their attempts), and how the run's attempts obtained their notes (mode,
//! engine, token class, visibility, host, filter) and what ended their
//! ranges. The token itself is never recorded, so it cannot be shown.

use std::fmt::Write as _;

use crate::catalog::{CalibrationRecord, ProvenanceSummary};
use crate::slot::SlotSpec;

use super::html::{escape, slots_link};

/// The dataset the run belongs to, when it is still configured (for links).
pub struct Linked<'a> {
    pub dataset: &'a str,
    pub spec: &'a SlotSpec,
}

/// `<section id="provenance">`.
pub fn section(
    calibrations: &[CalibrationRecord],
    provenance: &[ProvenanceSummary],
    linked: Option<&Linked<'_>>,
) -> String {
    let mut body = String::from("<section id=\"provenance\"><h3>Calibration and provenance</h3>");
    calibration_table(&mut body, calibrations, linked);
    provenance_table(&mut body, provenance);
    body.push_str("</section>");
    body
}

fn calibration_table(
    body: &mut String,
    calibrations: &[CalibrationRecord],
    linked: Option<&Linked<'_>>,
) {
    if calibrations.is_empty() {
        body.push_str("<p>No calibration: the run compared no origin answer with the archive.</p>");
        return;
    }
    body.push_str("<h4>The origin checked against the archive</h4><table class=\"calibrations\"><tr><th>calibration</th><th>verdict</th><th class=\"n\">recall</th><th class=\"n\">found / expected</th><th>archived slot compared</th><th>gap slots vouched for</th><th class=\"n\">origin calls</th><th>what was found</th><th>at</th></tr>");
    for c in calibrations {
        let verdict = match &c.blind_to {
            Some(to) => format!("{} to {} notes", c.verdict, to),
            None => c.verdict.clone(),
        };
        let recall = c.recall.map(|r| format!("{r:.3}")).unwrap_or_default();
        let counts = match (c.found, c.expected) {
            (Some(f), Some(e)) => format!("{f} / {e}"),
            _ => String::new(),
        };
        let reference = match (c.reference_start, &c.reference_slot, linked) {
            (Some(slot), Some(text), Some(l)) => format!(
                "<a href=\"{}\">{}</a>",
                slots_link(l.dataset, l.spec, slot, slot),
                escape(text)
            ),
            (_, Some(text), _) => escape(text),
            _ => "none".to_string(),
        };
        let gaps = span_text(c.first_gap.as_deref(), c.last_gap.as_deref());
        let gaps = match linked {
            Some(l) => format!(
                "<a href=\"{}\">{gaps}</a>",
                slots_link(l.dataset, l.spec, c.scope.0, c.scope.1)
            ),
            None => gaps,
        };
        let _ = write!(
            body,
            "<tr id=\"calibration-{id}\"><td>{id}</td><td><span class=\"verdict-{v}\">{verdict}</span></td><td class=\"n\">{recall}</td><td class=\"n\">{counts}</td><td>{reference}</td><td>{gaps}</td><td class=\"n\">{calls}</td><td>{message}</td><td>{at}</td></tr>",
            id = c.id,
            v = escape(&c.verdict),
            verdict = escape(&verdict),
            calls = c.origin_calls,
            message = escape(c.message.as_deref().unwrap_or("")),
            at = escape(&c.calibrated_at),
        );
    }
    body.push_str("</table>");
}

fn span_text(first: Option<&str>, last: Option<&str>) -> String {
    match (first, last) {
        (Some(a), Some(b)) if a == b => escape(a),
        (Some(a), Some(b)) => format!("{} … {}", escape(a), escape(b)),
        (Some(a), None) | (None, Some(a)) => escape(a),
        (None, None) => String::new(),
    }
}

fn provenance_table(body: &mut String, provenance: &[ProvenanceSummary]) {
    if provenance.is_empty() {
        body.push_str("<p>No attempt of this run fetched from an origin.</p>");
        return;
    }
    body.push_str("<h4>How the attempts obtained their notes</h4><table class=\"provenance\"><tr><th class=\"n\">attempts</th><th>origin</th><th>mode</th><th>engine</th><th>token</th><th>visibility</th><th>host</th><th>filter</th><th>ranges ended by</th><th>calibrations</th><th>endpoint</th></tr>");
    for p in provenance {
        let how = &p.how;
        let ends = p
            .range_ends
            .iter()
            .map(|(end, n)| format!("{} × {n}", escape(end)))
            .collect::<Vec<_>>()
            .join(", ");
        let calibrations = p
            .calibration_ids
            .iter()
            .map(|id| format!("<a href=\"#calibration-{id}\">{id}</a>"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            body,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ends}</td><td>{calibrations}</td><td>{}</td></tr>",
            p.attempts,
            escape(&how.origin),
            escape(&how.mode),
            escape(&how.engine),
            escape(&how.token),
            escape(&how.visibility.join(", ")),
            escape(how.host.as_deref().unwrap_or("any")),
            escape(&how.filter),
            escape(&how.endpoint),
        );
    }
    body.push_str("</table>");
}
