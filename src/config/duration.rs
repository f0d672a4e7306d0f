//! Duration settings (`settle_delay = "5m"`), read and written one way.

/// Parses a duration setting: a whole number and a unit, `90s`, `5m`, `12h`, `7d`,
/// `2w` (`0` alone is zero).
pub fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let s = text.trim();
    let bad = || format!("{text:?} is not a duration (a number and a unit: 90s, 5m, 12h, 7d, 2w)");
    if s == "0" {
        return Ok(chrono::Duration::zero());
    }
    let split = s.len().saturating_sub(1);
    let (amount, unit) = (s.get(..split).ok_or_else(bad)?, &s[split..]);
    let amount: i64 = amount.parse().map_err(|_| bad())?;
    if amount < 0 {
        return Err(bad());
    }
    let duration = match unit {
        "s" => chrono::Duration::try_seconds(amount),
        "m" => chrono::Duration::try_minutes(amount),
        "h" => chrono::Duration::try_hours(amount),
        "d" => chrono::Duration::try_days(amount),
        "w" => chrono::Duration::try_weeks(amount),
        _ => None,
    };
    duration.ok_or_else(bad)
}

/// Writes a duration the way [`parse_duration`] reads it, in its largest whole unit.
pub fn format_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| secs != 0 && secs % unit == 0)
        .map(|(unit, name)| format!("{}{name}", secs / unit))
        .unwrap_or_else(|| format!("{secs}s"))
}
