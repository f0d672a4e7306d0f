//! The archive source: notes read from JSON Lines files at another location
//! (`file://` or `s3://`), assigned to slots by their `createdAt`.
//!
//! On first use every file is read once to learn the time span it covers
//! (once per run: concurrent slots wait for that index); a range then reads
//! only the files whose span overlaps it. Memory holds one
//! (key, first, last) triple per file, never the notes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::OnceCell;

use super::settings::SourceFlags;
use super::sink::{NoteSink, parse_created_at};
use super::{Failure, Fetch, NoteSource, Provenance, RangeEnd, SourceError, TokenClass};
use crate::store::ObjectStore;

/// `[datasets.X.source]` of a dataset filled from an archive, as read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Where the JSON Lines files are: `s3://bucket/prefix` or `file:///dir`.
    pub location: Option<String>,
}

impl ArchiveConfig {
    pub const KEYS: &[&str] = &["location"];

    /// The archive's location, checked.
    pub fn plan(&self, flags: &SourceFlags) -> Result<String, String> {
        if flags.mode.is_some() {
            return Err("--mode chooses a Misskey endpoint; an archive source has none".into());
        }
        let location = self
            .location
            .as_deref()
            .ok_or_else(|| "source kind \"archive\" needs location".to_string())?;
        crate::store::normalize_location(location)
    }
}

struct FileSpan {
    key: String,
    first_ms: i64,
    last_ms: i64,
}

pub struct Archive {
    store: Arc<dyn ObjectStore>,
    spans: OnceCell<Vec<FileSpan>>,
}

impl Archive {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Archive {
            store,
            spans: OnceCell::new(),
        }
    }

    /// Visits every note line of one file.
    async fn each_note(
        &self,
        key: &str,
        mut visit: impl FnMut(&RawValue, i64),
    ) -> Result<(), SourceError> {
        let read = self
            .store
            .read(key)
            .await
            .map_err(|e| SourceError::Origin(e.to_string()))?;
        let mut reader = BufReader::new(read.body);
        let mut line = Vec::new();
        let mut bad = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).await.map_err(|e| {
                SourceError::Origin(format!("{}: {key}: {e}", self.store.location()))
            })?;
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let trimmed = text.trim();
            if trimmed.is_empty() {
                continue;
            }
            match serde_json::from_str::<Box<RawValue>>(trimmed) {
                Ok(raw) => match created_ms(&raw) {
                    Some(ms) => visit(&raw, ms),
                    None => bad += 1,
                },
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(key, bad, "skipped archive lines that are not notes");
        }
        Ok(())
    }

    /// The archive's index, built once per run however many slots ask at once:
    /// concurrent fetches wait for the first one's, which alone counts its reads.
    async fn spans(&self, stats: &mut Fetch) -> Result<&Vec<FileSpan>, SourceError> {
        self.spans.get_or_try_init(|| self.index(stats)).await
    }

    /// Reads every file once to learn the time span it covers.
    async fn index(&self, stats: &mut Fetch) -> Result<Vec<FileSpan>, SourceError> {
        let listing = self
            .store
            .list("")
            .await
            .map_err(|e| SourceError::Config(format!("archive source: {e}")))?;
        let mut spans = Vec::new();
        for object in listing.objects {
            stats.calls += 1;
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            self.each_note(&object.key, |_, ms| {
                first = first.min(ms);
                last = last.max(ms);
            })
            .await?;
            if first <= last {
                spans.push(FileSpan {
                    key: object.key,
                    first_ms: first,
                    last_ms: last,
                });
            }
        }
        tracing::info!(files = spans.len(), "indexed the archive source");
        Ok(spans)
    }
}

fn created_ms(raw: &RawValue) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "createdAt")]
        created_at: String,
    }
    let head: Head = serde_json::from_str(raw.get()).ok()?;
    parse_created_at(&head.created_at)
}

#[async_trait]
impl NoteSource for Archive {
    fn describe(&self) -> String {
        format!("archive:{}", self.store.location())
    }

    /// Indexing the archive is the probe: done once, before the first slot.
    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        self.spans(stats).await.map(|_| ())
    }

    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        let mut stats = Fetch::default();
        let spans = self.spans(&mut stats).await?;
        let mut failed = None;
        for span in spans
            .iter()
            .filter(|s| s.first_ms < end_ms && s.last_ms >= start_ms)
        {
            stats.calls += 1;
            let result = self
                .each_note(&span.key, |raw, _| {
                    if let Err(e) = sink.push(raw) {
                        failed.get_or_insert(e.to_string());
                    }
                })
                .await;
            if let Err(e) = result {
                failed.get_or_insert(e.to_string());
            }
        }
        match failed {
            Some(message) => {
                tracing::warn!(%message, "archive read failed");
                stats.failure = Some(Failure::ArchiveRead(message));
            }
            None => stats.ended(RangeEnd::ArchiveRead),
        }
        Ok(stats)
    }

    fn estimated_calls(&self, _notes: u64) -> u64 {
        1
    }

    fn provenance(&self) -> Provenance {
        Provenance {
            origin: "archive".into(),
            mode: "archive".into(),
            endpoint: self.store.location().to_string(),
            engine: "archive".into(),
            token: TokenClass::Anonymous,
        }
    }

    /// A dump holds what it holds: there is no answer to check against the archive.
    fn calibrates(&self) -> bool {
        false
    }

    async fn sample(
        &self,
        _window: Option<(i64, i64)>,
        _stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        Ok(Vec::new())
    }
}
