//! Tests of the configuration file.

use super::*;
use crate::source::Visibility;

const EXAMPLE: &str = r#"
catalog = "slotfill.db"
[s3]
endpoint_url = "http://127.0.0.1:9000"
region = "us-east-1"
force_path_style = true
[datasets.jp]
slot_minutes = 10
utc_offset = "+09:00"
key_template = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl"
primary = "s3://miyazawa1s3/misskey"
backup = ["s3://miyazawa1s3-backup/misskey"]
complement = "s3://miyazawa1s3/misskey_complement"
[datasets.jp.rules]
min_bytes = 102400
min_lines = 100
max_lines = 10000
[datasets.jp.source]
kind = "misskey"
base_url = "https://misskey.io"
mode = "search"
token_env = "MISSKEY_TOKEN"
id_scheme = "auto"
host = "."
filter = "none"
"#;

#[test]
fn the_documented_example_loads() {
    let config = Config::from_toml(Path::new("/etc/slotfill/slotfill.toml"), EXAMPLE).unwrap();
    assert_eq!(config.catalog, Path::new("/etc/slotfill/slotfill.db"));
    let ds = config.dataset("jp", &Overrides::default()).unwrap();
    assert_eq!(ds.locations.len(), 3);
    assert_eq!(ds.complement(), Some("s3://miyazawa1s3/misskey_complement"));
    assert_eq!(ds.rules, Rules::default());
}

#[test]
fn mistakes_are_reported() {
    let path = Path::new("c.toml");
    let typo = EXAMPLE.replace("slot_minutes", "slot_minute");
    let err = Config::from_toml(path, &typo).unwrap_err().to_string();
    assert!(err.contains("line 8: unknown field `slot_minute`"), "{err}");
    let wrong_type = EXAMPLE.replace("slot_minutes = 10", "slot_minutes = \"ten\"");
    assert!(Config::from_toml(path, &wrong_type).is_err());
    let config = Config::from_toml(path, EXAMPLE).unwrap();
    let err = config.dataset("us", &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("configured: jp"), "{err}");
    let overlap = Overrides {
        complement: Some("s3://miyazawa1s3/misskey/fill".into()),
        ..Default::default()
    };
    let err = config.dataset("jp", &overlap).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");
    // A sibling prefix sharing a name stem is not an overlap.
    let sibling = Overrides {
        complement: Some("s3://miyazawa1s3/misskey2".into()),
        ..Default::default()
    };
    assert!(config.dataset("jp", &sibling).is_ok());
    let bad_delay = EXAMPLE.replace(
        "slot_minutes = 10",
        "slot_minutes = 10\nsettle_delay = \"5 minutes\"",
    );
    let config = Config::from_toml(path, &bad_delay).unwrap();
    let err = config
        .dataset("jp", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("settle_delay") && err.contains("90s, 5m"),
        "{err}"
    );
}

#[test]
fn typed_source_settings_name_the_accepted_spellings() {
    let path = Path::new("c.toml");
    let typo = EXAMPLE.replace("mode = \"search\"", "mode = \"serch\"");
    let err = Config::from_toml(path, &typo).unwrap_err().to_string();
    assert!(
        err.contains("line ") && err.contains("search, local-timeline, global-timeline, notes"),
        "{err}"
    );
    let typo = EXAMPLE.replace("id_scheme = \"auto\"", "id_scheme = \"aidxx\"");
    let err = Config::from_toml(path, &typo).unwrap_err().to_string();
    assert!(
        err.contains("line ") && err.contains("auto, snowflake, ulid, flake, aidx"),
        "{err}"
    );
    let fixed = EXAMPLE.replace("id_scheme = \"auto\"", "id_scheme = \"aidx\"");
    let config = Config::from_toml(path, &fixed).unwrap();
    let crate::source::open::OriginConfig::Misskey(misskey) = &config.datasets["jp"].source.origin
    else {
        panic!("a misskey source");
    };
    assert_eq!(
        misskey.id_scheme,
        Some(crate::source::settings::IdSchemeSetting::Fixed(
            crate::source::codec::IdCodec::Prefixed(crate::source::ids::IdScheme::Aidx)
        ))
    );
}

#[test]
fn durations_and_the_settled_slot() {
    assert_eq!(parse_duration("90s"), Ok(chrono::Duration::seconds(90)));
    assert_eq!(parse_duration("7d"), Ok(chrono::Duration::days(7)));
    assert_eq!(parse_duration("0"), Ok(chrono::Duration::zero()));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("-5m").is_err());
    assert_eq!(format_duration(chrono::Duration::minutes(90)), "90m");
    assert_eq!(format_duration(chrono::Duration::days(7)), "1w");
    assert_eq!(format_duration(chrono::Duration::seconds(45)), "45s");
    let config = Config::from_toml(Path::new("c.toml"), EXAMPLE).unwrap();
    let ds = config.dataset("jp", &Overrides::default()).unwrap();
    assert_eq!(ds.settle_delay, chrono::Duration::minutes(5));
    // At 00:44:59 the slot [00:20, 00:30) has settled (00:35) but [00:30, 00:40) has not (00:45).
    let now = chrono::DateTime::parse_from_rfc3339("2025-08-01T00:44:59Z")
        .unwrap()
        .to_utc();
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    assert_eq!(ds.last_settled_slot(now), t("2025-08-01T00:20:00Z"));
    let now = chrono::DateTime::parse_from_rfc3339("2025-08-01T00:55:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(ds.last_settled_slot(now), t("2025-08-01T00:40:00Z"));
}

#[test]
fn visibility_and_filter_names_are_checked_when_read() {
    let path = Path::new("c.toml");
    let config = Config::from_toml(path, EXAMPLE).unwrap();
    let ds = config.dataset("jp", &Overrides::default()).unwrap();
    assert_eq!(
        ds.source.scope.visibility, None,
        "the default is the policy's"
    );
    assert_eq!(
        ds.source.scope.filter,
        Some(crate::source::settings::TextFilter::None)
    );
    let listed = format!("{EXAMPLE}visibility = [\"public\", \"followers\"]\n");
    let ds = Config::from_toml(path, &listed)
        .unwrap()
        .dataset("jp", &Overrides::default())
        .unwrap();
    assert_eq!(
        ds.source.scope.visibility,
        Some(vec![Visibility::Public, Visibility::Followers])
    );
    let unknown = format!("{EXAMPLE}visibility = [\"public\", \"unlisted\"]\n");
    let err = Config::from_toml(path, &unknown).unwrap_err().to_string();
    for name in ["unlisted", "public", "home", "followers", "specified"] {
        assert!(err.contains(name), "{err}");
    }
    let typo = EXAMPLE.replace("filter = \"none\"", "filter = \"japanes\"");
    let err = Config::from_toml(path, &typo).unwrap_err().to_string();
    assert!(err.contains("japanes") && err.contains("japanese"), "{err}");
    let empty = format!("{EXAMPLE}visibility = []\n");
    // Refused when the file is read, naming the source table's line.
    let err = Config::from_toml(path, &empty).unwrap_err().to_string();
    assert!(
        err.contains("lists nothing") && err.contains("line "),
        "{err}"
    );
}
