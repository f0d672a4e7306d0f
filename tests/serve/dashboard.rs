//! The dashboard, in a real browser: the window follows the newest catalogued
//! data (however long ago), previous/next links move it, a gap period links
//! to its slots' attempts, outcomes and last errors, a run links to its
//! record, no page needs script, and a 5-minute dataset stays small.

use crate::support::misskey::NoteSpec;
use crate::support::s3::S3Server;
use crate::support::serve::{Browser, Serve, ServeFixture};
use crate::support::*;

/// The first `href` on the page that starts with `prefix`, unescaped.
fn first_link(page: &str, prefix: &str) -> String {
    let start = page
        .find(&format!("href=\"{prefix}"))
        .unwrap_or_else(|| panic!("a link to {prefix} in\n{page}"));
    let rest = &page[start + 6..];
    rest[..rest.find('"').unwrap()].replace("&amp;", "&")
}

/// The link to one slot of jp's slots page, as the pages write it.
fn slot_href(slot: i64) -> String {
    let t = arg_time(slot);
    format!("href=\"/datasets/jp/slots?start={t}&amp;end={t}\"")
}

#[test]
fn the_dashboard_follows_the_data_and_links_to_the_detail_of_gaps_and_runs() {
    let five_dir = tempfile::tempdir().unwrap();
    let five = format!(
        "[datasets.five]\nslot_minutes = 5\nutc_offset = \"+09:00\"\nprimary = \"file://{}\"\n\
         [datasets.five.rules]\nmin_bytes = 200\nmin_lines = 3\nmax_lines = 40\n",
        five_dir.path().display()
    );
    let f = ServeFixture::new("", &five);
    // jp: 45 days catalogued, long before the clock; the last day has data.
    let last_day = AUG1_JST + 13 * 86_400;
    for i in 0..5 {
        f.put_primary(last_day + i * SLOT);
    }
    // The archived slot a fill calibrates against: 20 notes the collector
    // saw, 4 of them deleted at the origin since. The oldest note the origin
    // returns bounds the comparison, so 15 of the 19 newer ones come back.
    let reference = last_day + 5 * SLOT;
    let ids = f.emulator.add_notes(
        (0..20).map(|i| NoteSpec::public_local((reference + 20 + 25 * i) * 1000, "ノート")),
    );
    let archived = f
        .emulator
        .archive(reference * 1000, (reference + SLOT) * 1000);
    S3Server::shared().put(&f.primary, &format!("m/{}", key_of(reference)), &archived);
    f.emulator.delete_since_indexed(&ids[8..12]);
    f.ws.slotfill(&[
        "scan",
        "-d",
        "jp",
        "--start",
        "2025-07-01T00:00",
        "--end",
        "2025-08-14T23:50",
    ])
    .ok();
    // A slot whose fill stops at the page budget: a partial attempt with its error.
    let partial = last_day + 8 * SLOT;
    f.emulator
        .add_notes((0..150).map(|i| NoteSpec::public_local((partial + 3 * i) * 1000, "ノート")));
    let (p, q) = (arg_time(partial), arg_time(partial));
    f.ws.slotfill(&[
        "fill",
        "-d",
        "jp",
        "--start",
        &p,
        "--end",
        &q,
        "--max-pages",
        "1",
    ]);
    let error_code: String =
        f.ws.catalog()
            .query_row(
                "SELECT error_code FROM fill_attempts WHERE outcome = 'partial'",
                [],
                |r| r.get(0),
            )
            .expect("a partial attempt");
    // five: a fortnight of 5-minute slots, a few of them written.
    for (h, m) in [(0, 0), (0, 5), (3, 35), (23, 55)] {
        let dir = five_dir.path().join(format!("2025/08/14/{h:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("2025-08-14_{h:02}-{m:02}.jsonl");
        std::fs::write(dir.join(name), jsonl(10, 100)).unwrap();
    }
    f.ws.slotfill(&[
        "scan",
        "-d",
        "five",
        "--start",
        "2025-08-01T00:00",
        "--end",
        "2025-08-14T23:55",
    ])
    .ok();

    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2026-03-01T12:00:00+09:00")]);
    let overview = serve.get("/", None);
    assert_eq!(overview.status, 200);
    let page = &overview.body;
    assert!(!page.contains("<script"), "no script");
    // The newest catalogued fortnight, not the one before the clock.
    assert!(
        page.contains("Coverage, 2025-08-01 to 2025-08-14"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/datasets/jp?end=2025-07-31\""),
        "{page}"
    );
    assert!(!page.contains("rel=\"next\""), "nothing newer: {page}");
    // The five-minute dataset: every slot drawn, in a page of reasonable size.
    assert!(
        overview.body.len() < 200_000,
        "{} bytes",
        overview.body.len()
    );

    // Previous, then next again.
    let earlier = serve.get("/datasets/jp?end=2025-07-31", None);
    assert_eq!(earlier.status, 200);
    assert!(earlier.body.contains("Coverage, 2025-07-18 to 2025-07-31"));
    assert!(
        earlier
            .body
            .contains("href=\"/datasets/jp?end=2025-07-17\"")
            && earlier
                .body
                .contains("href=\"/datasets/jp?end=2025-08-14\""),
        "{}",
        earlier.body
    );
    let oldest = serve.get("/datasets/jp?end=2025-07-17", None);
    assert!(oldest.body.contains("Coverage, 2025-07-04 to 2025-07-17"));
    let start = serve.get(
        &first_link(&oldest.body, "/datasets/jp?end=2025-07-03"),
        None,
    );
    assert!(start.body.contains("to 2025-07-03"));
    assert!(!start.body.contains("rel=\"prev\""), "nothing older");

    // The newest gap period links to its slots: the partial attempt, its error.
    let jp = &page[page.find("id=\"dataset-jp\"").unwrap()..];
    let gaps = &jp[jp.find("class=\"gaps\"").unwrap()..];
    let period = first_link(gaps, "/datasets/jp/slots?");
    let detail = serve.get(&period, None);
    assert_eq!(detail.status, 200, "{period}");
    assert!(detail.body.contains("outcome-partial"), "{}", detail.body);
    assert!(detail.body.contains(&error_code), "{}", detail.body);
    // The attempt links to the calibration that vouched for it.
    assert!(
        detail.body.contains("#calibration-1\">partial</a>"),
        "{}",
        detail.body
    );
    // The run that made it links to its record: its calibration (the verdict,
    // the recall, the archived slot compared, linked) and provenance.
    let run = first_link(jp, "/runs/");
    let record = serve.get(&run, None);
    assert_eq!(record.status, 200);
    let proof = &record.body[record.body.find("id=\"provenance\"").expect("the section")..];
    let calibration = &proof[proof.find("id=\"calibration-1\"").expect("its calibration")..];
    let calibration = &calibration[..calibration.find("</tr>").unwrap()];
    for expected in [
        "class=\"verdict-partial\">partial<",
        ">0.789<",
        ">15 / 19<",
        &slot_href(reference),
    ] {
        assert!(
            calibration.contains(expected),
            "{expected:?} in {calibration}"
        );
    }
    let provenance = &proof[proof.find("class=\"provenance\"").expect("the provenance")..];
    for expected in [
        "<td>search</td>",
        "<td>sql</td>",
        "<td>anonymous</td>",
        "<td>public, home</td>",
    ] {
        assert!(
            provenance.contains(expected),
            "{expected:?} in {provenance}"
        );
    }
    assert!(record.body.contains(&error_code));
    // The same as JSON.
    let api = serve.get(&format!("/api{run}"), None).json();
    assert_eq!(api["calibrations"][0]["verdict"], "partial", "{api}");
    let recall = api["calibrations"][0]["recall"].as_f64().unwrap();
    assert!((recall - 15.0 / 19.0).abs() < 1e-9, "{api}");
    assert_eq!(
        api["calibrations"][0]["reference_slot"],
        local_iso(reference)
    );
    assert_eq!(api["provenance"][0]["mode"], "search", "{api}");
    assert_eq!(api["provenance"][0]["token"], "anonymous", "{api}");

    // In a real browser: the heatmaps are drawn, the pages render; screenshots.
    let Some(browser) = Browser::find() else {
        return;
    };
    let dom = browser.dom(&serve.url("/"));
    for expected in [
        "<h2><a href=\"/datasets/jp\">jp</a></h2>",
        "Slots by state",
        "Coverage, 2025-08-01 to 2025-08-14",
        "Open gaps",
        "Recent runs",
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} in the rendered page:\n{dom}"
        );
    }
    let drawn = |name: &str| -> usize {
        let section = &dom[dom.find(&format!("id=\"dataset-{name}\"")).unwrap()..];
        let section = &section[..section.find("</svg>").unwrap()];
        section
            .split("data-slots=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse::<usize>().unwrap())
            .sum()
    };
    assert_eq!(drawn("jp"), 14 * 144, "every slot of the fortnight");
    assert_eq!(drawn("five"), 14 * 288, "every slot of the fortnight");
    browser.screenshot(&serve.url("/"), "serve-dashboard.png");
    browser.screenshot(&serve.url(&period), "serve-dashboard-slots.png");
    let slots_dom = browser.dom(&serve.url(&period));
    assert!(slots_dom.contains("Fill attempts"), "{slots_dom}");
    let run_dom = browser.dom(&serve.url(&run));
    assert!(run_dom.contains("verdict-partial"), "{run_dom}");
    browser.screenshot(&serve.url(&run), "serve-dashboard-run.png");
}
