//! How slotfill writes and reads the small things people see: a count and its
//! noun, a list cut short, a duration setting. A leaf: it imports nothing of
//! the crate, and every layer may use it.

/// A count and its noun, singular or plural: `1 slot`, `2 slots`, `3 day prefixes`.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        return format!("1 {noun}");
    }
    let es = ["s", "x", "ch", "sh"].iter().any(|end| noun.ends_with(end));
    format!("{n} {noun}{}", if es { "es" } else { "s" })
}

/// The first slots of a list of `total`, comma-separated, with "…" when some are left out.
pub fn name_some<S: AsRef<str>>(named: &[S], total: u64) -> String {
    let names: Vec<&str> = named.iter().map(AsRef::as_ref).collect();
    let more = if total as usize > names.len() {
        ", …"
    } else {
        ""
    };
    format!("{}{more}", names.join(", "))
}

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
