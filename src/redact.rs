//! Keeping secrets out of logs, error text and the catalog.
//!
//! Three layers: secret flags are masked in the recorded command line
//! ([`command_line`]); the origin client scrubs its token from its own
//! messages ([`scrub`]); and every log line and printed error passes through
//! [`scrub_log`], which masks every secret value the process knows of
//! ([`register_secret`]: the token, the AWS secret key and session token, the
//! webhook URL) and any request signature or bearer token, whatever crate
//! logged it and whatever `RUST_LOG` says.

use std::sync::RwLock;

/// Flags whose values are secrets (webhook URLs embed tokens).
const SECRET_FLAGS: [&str; 2] = ["--token", "--notify-webhook"];

/// Environment variables whose values are secrets.
const SECRET_VARIABLES: [&str; 3] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MISSKEY_TOKEN",
];

/// Secret values masked in every log line.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// From now on, `secret` is masked in every log line and printed error.
/// Values shorter than 4 characters are ignored (masking them would mangle text).
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
}

/// Registers the secrets of the environment and of the command line.
pub fn register_process_secrets(args: impl IntoIterator<Item = String>) {
    for variable in SECRET_VARIABLES {
        if let Ok(value) = std::env::var(variable) {
            register_secret(&value);
        }
    }
    let mut next_is_secret = false;
    for arg in args {
        if std::mem::take(&mut next_is_secret) {
            register_secret(&arg);
            continue;
        }
        for flag in SECRET_FLAGS {
            if arg == flag {
                next_is_secret = true;
            } else if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                register_secret(value);
            }
        }
    }
}

/// A log line or message with every registered secret, request signature
/// (`Signature=…`, `chunk-signature=…`, `x-amz-trailer-signature:…`) and
/// bearer token replaced by `***`.
pub fn scrub_log(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let known: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let text = scrub(text, &known);
    let text = mask_after(&text, "signature", |b| b.is_ascii_hexdigit(), 16);
    mask_after(
        &text,
        "bearer ",
        // RFC 6750's b64token: what follows it (a bracket, a comma) is kept.
        |b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b),
        1,
    )
}

/// Masks the value that follows each (ASCII case-insensitive) `marker`: after
/// separators (`=`, `:`, spaces, quotes, backslashes, ANSI colour codes), a run
/// of at least `min` bytes accepted by `part`.
fn mask_after(text: &str, marker: &str, part: impl Fn(u8) -> bool, min: usize) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(marker) {
        let mut start = from + found + marker.len();
        loop {
            match bytes.get(start) {
                Some(b'=' | b':' | b' ' | b'"' | b'\'' | b'\\') => start += 1,
                Some(0x1b) if bytes.get(start + 1) == Some(&b'[') => {
                    let end = bytes[start..].iter().position(|b| *b == b'm');
                    start += end.map_or(bytes.len() - start, |e| e + 1);
                }
                _ => break,
            }
        }
        let end = start + bytes[start..].iter().take_while(|b| part(**b)).count();
        if end - start >= min {
            out.push_str(&text[copied..start]);
            out.push_str("***");
            copied = end;
        }
        from = end.max(from + found + marker.len());
    }
    out.push_str(&text[copied..]);
    out
}

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

/// Errors are printed as one line, with secrets masked.
pub fn one_line(s: &str) -> String {
    scrub_log(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A URL as a metric or a page may show it: without a user or password
/// (a base URL may carry a proxy's basic-auth credentials).
pub fn url_without_credentials(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        _ => text.to_string(),
    }
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
    fn urls_lose_their_credentials() {
        assert_eq!(
            url_without_credentials("https://bot:hunter22@example.com/api/notes/search"),
            "https://example.com/api/notes/search"
        );
        assert_eq!(
            url_without_credentials("https://u:secret@m.example/"),
            "https://m.example"
        );
        assert_eq!(
            url_without_credentials("https://example.com/api"),
            "https://example.com/api"
        );
    }

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

    #[test]
    fn log_lines_lose_signatures_tokens_and_registered_secrets() {
        let signature = "3ba9fb1a6b49572cb104f254751eedd99c8d1bfe05b2283150b2e5099466d764";
        let lines = [
            format!(
                "remaining chunk data: b\"69FF;chunk-signature={signature}\\r\\n{{\\\"id\\\":1}}\""
            ),
            format!("final chunk: x-amz-trailer-signature:{signature}\\r\\n"),
            format!("authorization: AWS4-HMAC-SHA256 Credential=AK/x, Signature={signature}"),
            format!("\u{1b}[3msignature\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"{signature}\""),
        ];
        for line in &lines {
            let clean = scrub_log(line);
            assert!(!clean.contains(&signature[..16]), "{clean}");
            assert!(clean.contains("***"), "{clean}");
        }
        assert_eq!(
            scrub_log("authorization: Bearer tok-abc.123, next"),
            "authorization: Bearer ***, next"
        );
        assert_eq!(
            scrub_log("401 (a token was sent: Bearer tok-abc/12+3=)"),
            "401 (a token was sent: Bearer ***)"
        );
        // Words that merely contain the marker are left alone.
        let plain = "access denied (SignatureDoesNotMatch); signature_location: Headers";
        assert_eq!(scrub_log(plain), plain);
        register_secret("s3cr3t-value-42");
        register_secret("ab");
        assert_eq!(one_line("the   key\n s3cr3t-value-42 ab"), "the key *** ab");
    }
}
