//! Key templates: render a slot to an object key and parse a key back.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::SlotError;

/// One piece of a parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

impl Token {
    fn digits(&self) -> usize {
        match self {
            Token::Year => 4,
            Token::Literal(_) => 0,
            _ => 2,
        }
    }
}

/// A parsed key template; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    tokens: Vec<Token>,
}

impl KeyTemplate {
    pub fn parse(template: &str) -> Result<Self, SlotError> {
        let bad = |reason: &str| SlotError::BadTemplate {
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let field = match chars.next() {
                Some('Y') => Token::Year,
                Some('m') => Token::Month,
                Some('d') => Token::Day,
                Some('H') => Token::Hour,
                Some('M') => Token::Minute,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(other) => {
                    return Err(bad(&format!(
                        "unsupported field %{other} (use %Y %m %d %H %M)"
                    )));
                }
                None => return Err(bad("ends with a lone %")),
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(field);
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        let first_time_field = tokens
            .iter()
            .position(|t| matches!(t, Token::Hour | Token::Minute))
            .unwrap_or(tokens.len());
        let day_part = &tokens[..first_time_field];
        for (needed, name) in [
            (Token::Year, "%Y"),
            (Token::Month, "%m"),
            (Token::Day, "%d"),
        ] {
            if !day_part.contains(&needed) {
                return Err(bad(&format!(
                    "needs a day field {name} before any hour or minute field"
                )));
            }
        }
        if template.starts_with('/') {
            return Err(bad("must be relative (no leading /)"));
        }
        Ok(KeyTemplate {
            source: template.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub(super) fn has(&self, token: &Token) -> bool {
        self.tokens.contains(token)
    }

    fn render_tokens(tokens: &[Token], t: &NaiveDateTime) -> String {
        let mut out = String::with_capacity(48);
        for token in tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Year => out.push_str(&format!("{:04}", t.year())),
                Token::Month => out.push_str(&format!("{:02}", t.month())),
                Token::Day => out.push_str(&format!("{:02}", t.day())),
                Token::Hour => out.push_str(&format!("{:02}", t.hour())),
                Token::Minute => out.push_str(&format!("{:02}", t.minute())),
            }
        }
        out
    }

    /// Renders a local time to a key.
    pub fn render(&self, local: &NaiveDateTime) -> String {
        Self::render_tokens(&self.tokens, local)
    }

    /// The literal key prefix shared by every object of one local day.
    pub fn day_prefix(&self, day: NaiveDate) -> String {
        let end = self
            .tokens
            .iter()
            .position(|t| matches!(t, Token::Hour | Token::Minute))
            .unwrap_or(self.tokens.len());
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        Self::render_tokens(&self.tokens[..end], &midnight)
    }

    /// Parses a key back to the local time it names; `None` if it does not match.
    pub fn parse_key(&self, key: &str) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day, mut hour, mut minute) = (None, None, None, 0, 0);
        let mut rest = key;
        for token in &self.tokens {
            if let Token::Literal(s) = token {
                rest = rest.strip_prefix(s.as_str())?;
                continue;
            }
            let n = token.digits();
            let digits = rest.get(..n)?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: u32 = digits.parse().ok()?;
            rest = &rest[n..];
            let consistent = |slot: &mut Option<u32>| match *slot {
                Some(previous) => previous == value,
                None => {
                    *slot = Some(value);
                    true
                }
            };
            let ok = match token {
                Token::Year => consistent(&mut year),
                Token::Month => consistent(&mut month),
                Token::Day => consistent(&mut day),
                Token::Hour => {
                    hour = value;
                    true
                }
                Token::Minute => {
                    minute = value;
                    true
                }
                Token::Literal(_) => true,
            };
            if !ok {
                return None;
            }
        }
        if !rest.is_empty() {
            return None;
        }
        NaiveDate::from_ymd_opt(year? as i32, month?, day?)?.and_hms_opt(hour, minute, 0)
    }
}
