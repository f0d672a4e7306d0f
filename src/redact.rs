//! Keeping secrets out of logs, error text and the catalog.

/// Flags whose values are secrets (webhook URLs embed tokens).
const SECRET_FLAGS: [&str; 2] = ["--token", "--notify-webhook"];

/// The command line as recorded in the runs table: secret values replaced by `***`.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
            continue;
        }
        match SECRET_FLAGS.iter().find(|f| arg.starts_with(*f)) {
            Some(flag) if arg == *flag => {
                hide_next = true;
                out.push(arg);
            }
            Some(flag) if arg.as_bytes().get(flag.len()) == Some(&b'=') => {
                out.push(format!("{flag}=***"))
            }
            _ => out.push(arg),
        }
    }
    out.join(" ")
}

/// Errors are printed as one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes every occurrence of the given secrets from a text.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_secret_flag_values() {
        let args = [
            "slotfill",
            "fill",
            "--token",
            "abc123",
            "--notify-webhook=https://x/y?t=1",
            "-d",
            "jp",
        ]
        .map(String::from);
        assert_eq!(
            command_line(args),
            "slotfill fill --token *** --notify-webhook=*** -d jp"
        );
        assert_eq!(
            scrub("bad token abcd1234!", &["abcd1234"]),
            "bad token ***!"
        );
    }
}
