//! Object storage: one small trait, an S3 backend and a local-directory backend.
//!
//! A store is opened for one *location* (`s3://bucket/prefix` or
//! `file:///dir`); every key it takes or returns is relative to that location.
//! Reads are streamed and writes come from a file on disk, so memory never
//! grows with object size. [`copy`] moves an object between two locations
//! (server-side when both are on one S3 endpoint).

mod copy;
pub mod count;
mod http;
mod local;
mod s3;
mod url;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use thiserror::Error;
use tokio::io::AsyncRead;

pub use copy::{CopyMethod, CopyOutcome, CopyRequest, CopySource, copy, normalize_etag};
pub use count::LineCount;
pub use local::LocalStore;
pub use s3::{MAX_CONNECTIONS, S3Store};
use serde::Deserialize;
pub use url::{normalize_location, overlaps};

/// `[s3]`: how the S3 locations are reached. Credentials always come from
/// aws-config's standard chain, never from this file.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("{location}: access denied ({code}); check the credentials and their permissions")]
    Denied { location: String, code: String },
    #[error(
        "{location}: no AWS credentials found (tried the environment, profiles, SSO, web identity, container and instance roles); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    )]
    NoCredentials { location: String },
    #[error("cannot reach the S3 endpoint for {location}: {message}")]
    Unreachable { location: String, message: String },
    #[error("{location}: {message}")]
    Service { location: String, message: String },
    #[error("{location}: {key}: {message}")]
    Io {
        location: String,
        key: String,
        message: String,
    },
    #[error("{0}")]
    BadLocation(String),
}

impl StoreError {
    /// Errors that a retry later might fix (as opposed to configuration errors).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StoreError::NoSuchBucket(_)
                | StoreError::Denied { .. }
                | StoreError::NoCredentials { .. }
                | StoreError::BadLocation(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A listed prefix: every object under it, and how many pages it took.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    pub pages: u32,
}

/// An object being read: its user metadata and a streaming body.
pub struct ObjectRead {
    pub metadata: HashMap<String, String>,
    pub body: Box<dyn AsyncRead + Send + Unpin>,
}

/// An object read through the line counter: what counting found, and its user metadata.
#[derive(Debug, Clone, Default)]
pub struct CountedRead {
    pub count: LineCount,
    pub metadata: HashMap<String, String>,
}

/// When a write may take place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// Only if no object exists at the key (`If-None-Match: *`): never clobber.
    #[default]
    IfAbsent,
    /// Only if the object at the key still has this ETag (`If-Match`).
    IfMatch(String),
    /// Unconditionally (`--overwrite`).
    Always,
}

/// What a write should carry.
#[derive(Debug, Clone, Default)]
pub struct PutRequest {
    pub content_type: String,
    pub metadata: Vec<(String, String)>,
    pub condition: WriteCondition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created {
        etag: Option<String>,
    },
    /// The condition failed: an object exists (`IfAbsent`), or the object is no
    /// longer the one expected (`IfMatch`; also when it is gone).
    AlreadyExists,
}

/// Facts from a HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub metadata: HashMap<String, String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The location URL, for messages.
    fn location(&self) -> &str;
    /// Every object whose key starts with `prefix`, paginated internally.
    async fn list(&self, prefix: &str) -> Result<Listing>;
    async fn read(&self, key: &str) -> Result<ObjectRead>;
    /// Reads an object through a line counter that stops at `cap` lines. Each
    /// backend feeds the counter its own buffers (S3: the HTTP body's chunks as
    /// they arrive; a directory: one buffer on a blocking thread), so bytes are
    /// not copied on the way and memory does not grow with the object.
    async fn count(&self, key: &str, cap: Option<u64>) -> Result<CountedRead>;
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>>;
    /// Writes the file at `path` to `key`.
    async fn put_file(&self, key: &str, path: &Path, request: &PutRequest) -> Result<PutOutcome>;
    /// Proves, leaving nothing behind, that the location exists and accepts writes.
    async fn check_writable(&self) -> Result<()>;
    /// The address of `key` for a server-side copy, if this store has one (S3).
    fn copy_source(&self, _key: &str) -> Option<CopySource> {
        None
    }
    /// Copies `source` into `key` without the bytes leaving the server;
    /// `Ok(None)` when this store cannot (not S3, or another endpoint): the
    /// caller then streams the object instead.
    async fn copy_within(
        &self,
        _source: &CopySource,
        _key: &str,
        _request: &PutRequest,
    ) -> Result<Option<PutOutcome>> {
        Ok(None)
    }
    /// Requests made so far (lists count per page).
    fn stats(&self) -> &StoreStats;
}

/// Request counters of one store.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub lists: AtomicU64,
    pub gets: AtomicU64,
    pub heads: AtomicU64,
    pub puts: AtomicU64,
    pub bytes_read: AtomicU64,
}

impl StoreStats {
    pub fn requests(&self) -> u64 {
        [&self.lists, &self.gets, &self.heads, &self.puts]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Opens the store for a location URL.
pub async fn open(location: &str, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Arc::new(
            S3Store::connect(location, bucket, prefix, s3).await?,
        ));
    }
    if let Some(dir) = location.strip_prefix("file://") {
        return Ok(Arc::new(LocalStore::new(location, Path::new(dir))));
    }
    Err(StoreError::BadLocation(format!(
        "location {location:?} must start with s3:// or file://"
    )))
}
