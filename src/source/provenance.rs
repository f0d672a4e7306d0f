//! How a source reads its origin, said without secrets: what every complement
//! object and attempt records so that someone holding only the bucket can tell
//! how its notes were obtained, and the advice given when an origin is blind.

use serde::Serialize;

/// Whether calls carry a token. The token itself is never recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenClass {
    Anonymous,
    User,
}

impl TokenClass {
    pub fn of(token: Option<&str>) -> TokenClass {
        match token {
            Some(_) => TokenClass::User,
            None => TokenClass::Anonymous,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenClass::Anonymous => "anonymous",
            TokenClass::User => "user",
        }
    }
}

/// How a source reads its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// `misskey`, `mastodon` or `archive`.
    pub origin: String,
    /// The mode or timeline (`search`, `local-timeline`, `timeline:local`).
    pub mode: String,
    /// The URL asked (or the archive's location).
    pub endpoint: String,
    /// What answers: `sql` (bounds compared as strings inside the query),
    /// `millisecond` (a search engine comparing bounds by millisecond, whose
    /// pages are thinned after the limit), `timeline`, `unknown` (not yet
    /// probed), or the server software for Mastodon-API origins.
    pub engine: String,
    pub token: TokenClass,
}

/// What a calibration found the origin does not return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlindTo {
    /// Nothing at all in the archived window.
    All,
    /// None of the remote notes (other hosts' authors), local ones came back.
    Remote,
    /// None of the local notes, remote ones came back.
    Local,
}

impl BlindTo {
    pub fn name(self) -> &'static str {
        match self {
            BlindTo::All => "all",
            BlindTo::Remote => "remote",
            BlindTo::Local => "local",
        }
    }
}

/// Advice that fits any origin.
pub fn generic_advice(to: BlindTo, answers_recent: Option<bool>) -> String {
    match (to, answers_recent) {
        (BlindTo::All, Some(true)) => {
            "it answers recent records, so it cannot see records this old: \
            the endpoint serves only a recent window; use another mode or timeline"
                .to_string()
        }
        (BlindTo::All, _) => "it may be disabled or hidden for this caller; \
            check the token and the mode or timeline"
            .to_string(),
        (BlindTo::Remote, _) => "it may show this caller only local records; try a token, \
            or host = \".\" to archive local records only"
            .to_string(),
        (BlindTo::Local, _) => {
            "it may hide local records from this caller; try a token".to_string()
        }
    }
}
