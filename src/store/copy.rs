//! Copying one object between locations, never clobbering: server-side
//! (CopyObject) when both are on the same S3 endpoint, streamed through a
//! temporary file otherwise (local directory ↔ S3), so memory stays flat
//! whatever the object's size.
//!
//! The source must still be the object the caller judged (its ETag is
//! checked by a HEAD, and again by the copy itself when it is server-side);
//! the target is written under the caller's [`WriteCondition`].

use tokio::io::AsyncWriteExt;

use super::{ObjectStore, PutOutcome, PutRequest, Result, StoreError};

/// Where a server-side copy reads its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The endpoint both stores must share (`None`: the SDK's default endpoint).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// The full key in the bucket.
    pub key: String,
    /// Copy only if the source still has this ETag.
    pub if_match: Option<String>,
}

/// How the bytes travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// CopyObject: the bytes never left the server.
    ServerSide,
    /// Read from the source and written to the target through a temporary file.
    Streamed,
}

impl CopyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::ServerSide => "copy",
            CopyMethod::Streamed => "stream",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    Copied {
        etag: Option<String>,
        size: u64,
        method: CopyMethod,
    },
    /// The target's condition failed: someone wrote (or replaced) it meanwhile.
    ConditionFailed,
    /// The source is gone or is no longer the object the caller judged.
    SourceChanged,
}

/// One copy: the source object, what it must still be, and what to add.
pub struct CopyRequest<'a> {
    pub source: &'a dyn ObjectStore,
    pub source_key: &'a str,
    /// The source's ETag as catalogued.
    pub source_etag: Option<&'a str>,
    /// Metadata added to the source's own (a key already present is replaced).
    pub extra_metadata: Vec<(String, String)>,
    pub content_type: String,
}

/// Copies `request.source_key` into `key` of `target` under `condition`.
pub async fn copy(
    target: &dyn ObjectStore,
    key: &str,
    request: &CopyRequest<'_>,
    condition: super::WriteCondition,
) -> Result<CopyOutcome> {
    let Some(head) = request.source.head(request.source_key).await? else {
        return Ok(CopyOutcome::SourceChanged);
    };
    if request
        .source_etag
        .is_some_and(|want| head.etag.as_deref().map(normalize_etag) != Some(normalize_etag(want)))
    {
        return Ok(CopyOutcome::SourceChanged);
    }
    let mut metadata: Vec<(String, String)> = head
        .metadata
        .into_iter()
        .filter(|(k, _)| {
            !request
                .extra_metadata
                .iter()
                .any(|(extra, _)| extra.eq_ignore_ascii_case(k))
        })
        .collect();
    metadata.extend(request.extra_metadata.iter().cloned());
    metadata.sort();
    let put = PutRequest {
        content_type: request.content_type.clone(),
        metadata,
        condition,
    };
    if let Some(mut source) = request.source.copy_source(request.source_key) {
        source.if_match = head.etag.clone();
        if let Some(outcome) = target.copy_within(&source, key, &put).await? {
            return Ok(match outcome {
                PutOutcome::Created { etag } => CopyOutcome::Copied {
                    etag: etag.map(|e| normalize_etag(&e).to_string()),
                    size: head.size,
                    method: CopyMethod::ServerSide,
                },
                PutOutcome::AlreadyExists => CopyOutcome::ConditionFailed,
            });
        }
    }
    streamed(target, key, request, &put, head.size).await
}

/// Reads the source into a temporary file, then writes that file to the target.
async fn streamed(
    target: &dyn ObjectStore,
    key: &str,
    request: &CopyRequest<'_>,
    put: &PutRequest,
    size: u64,
) -> Result<CopyOutcome> {
    let io = |e: std::io::Error| StoreError::Io {
        location: request.source.location().to_string(),
        key: request.source_key.to_string(),
        message: e.to_string(),
    };
    let spool = tempfile::NamedTempFile::new().map_err(io)?;
    let mut file = tokio::fs::File::from_std(spool.reopen().map_err(io)?);
    let mut read = request.source.read(request.source_key).await?;
    let copied = tokio::io::copy(&mut read.body, &mut file)
        .await
        .map_err(io)?;
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    drop(file);
    if copied != size {
        // Replaced between the HEAD and the read, or cut off: not the object judged.
        tracing::warn!(
            key = request.source_key,
            copied,
            size,
            "the source changed while it was read"
        );
        return Ok(CopyOutcome::SourceChanged);
    }
    Ok(match target.put_file(key, spool.path(), put).await? {
        PutOutcome::Created { etag } => CopyOutcome::Copied {
            etag: etag.map(|e| normalize_etag(&e).to_string()),
            size,
            method: CopyMethod::Streamed,
        },
        PutOutcome::AlreadyExists => CopyOutcome::ConditionFailed,
    })
}

/// ETags compare with their quotes (listings quote them; some servers' CopyObject
/// results do not).
pub fn normalize_etag(etag: &str) -> std::borrow::Cow<'_, str> {
    if etag.starts_with('"') || etag.starts_with("W/") {
        std::borrow::Cow::Borrowed(etag)
    } else {
        std::borrow::Cow::Owned(format!("\"{etag}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, WriteCondition};

    #[tokio::test]
    async fn streams_between_local_stores_without_clobbering() {
        let dir = tempfile::tempdir().unwrap();
        let source = LocalStore::new("file:///s", &dir.path().join("s"));
        let target = LocalStore::new("file:///t", &dir.path().join("t"));
        let file = dir.path().join("body");
        std::fs::write(&file, b"a\nb\n").unwrap();
        let put = PutRequest {
            content_type: "application/x-ndjson".into(),
            metadata: vec![("note-count".into(), "2".into())],
            condition: WriteCondition::IfAbsent,
        };
        source.put_file("k", &file, &put).await.unwrap();
        let etag = source.head("k").await.unwrap().unwrap().etag.unwrap();
        let request = CopyRequest {
            source: &source,
            source_key: "k",
            source_etag: Some(&etag),
            extra_metadata: vec![("promoted-from".into(), "file:///s/k".into())],
            content_type: "application/x-ndjson".into(),
        };
        let copied = copy(&target, "k", &request, WriteCondition::IfAbsent)
            .await
            .unwrap();
        assert!(matches!(
            copied,
            CopyOutcome::Copied {
                size: 4,
                method: CopyMethod::Streamed,
                ..
            }
        ));
        let head = target.head("k").await.unwrap().unwrap();
        assert_eq!(head.metadata["note-count"], "2");
        assert_eq!(head.metadata["promoted-from"], "file:///s/k");
        let again = copy(&target, "k", &request, WriteCondition::IfAbsent).await;
        assert_eq!(again.unwrap(), CopyOutcome::ConditionFailed);
        let stale = CopyRequest {
            source_etag: Some("\"other\""),
            ..request
        };
        let changed = copy(&target, "k2", &stale, WriteCondition::IfAbsent).await;
        assert_eq!(changed.unwrap(), CopyOutcome::SourceChanged);
        assert!(target.head("k2").await.unwrap().is_none());
    }

    #[test]
    fn etags_are_compared_quoted() {
        assert_eq!(normalize_etag("abc"), "\"abc\"");
        assert_eq!(normalize_etag("\"abc\""), "\"abc\"");
    }
}
