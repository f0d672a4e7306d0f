//! The S3 backend: aws-sdk-s3 with aws-config's standard credential chain,
//! an optional custom endpoint and path-style addressing for MinIO and friends.
//!
//! Every location of a process shares one client, hence one connection pool
//! (see `http` for its limits): with a pool per location, a scan of primary +
//! backup kept twice the connections open, each holding its read buffer.
//! Callers bound the requests in flight ([`MAX_CONNECTIONS`]); the pool keeps
//! no more idle connections than that.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::ResponseChecksumValidation;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::date_time::Format;
use tokio_util::task::AbortOnDropHandle;

use super::S3Settings;
use super::count::{LineCount, LineCounter};
use super::{
    CopySource, CountedRead, ListedObject, Listing, ObjectHead, ObjectRead, ObjectStore,
    PutOutcome, PutRequest, Result, StoreError, StoreStats, WriteCondition,
};

/// S3 requests a scan has in flight at most, whatever `--concurrency` says, and
/// the idle connections the pool keeps: each open connection costs about
/// 0.5 MB of HTTP buffers, and past 16 downloads the benchmark shows no
/// throughput gain on 2 cores (docs/BENCHMARKS.md).
pub const MAX_CONNECTIONS: usize = 32;

/// The clients made so far, one per distinct `[s3]` settings (in practice one).
static CLIENTS: Mutex<Vec<(S3Settings, Client)>> = Mutex::new(Vec::new());

pub struct S3Store {
    location: String,
    client: Client,
    bucket: String,
    /// The key prefix of the location, with a trailing `/` unless empty.
    root: String,
    /// The configured endpoint: server-side copies only happen within one.
    endpoint: Option<String>,
    stats: StoreStats,
}

impl S3Store {
    /// One GET of an object, counted.
    async fn get(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        StoreStats::bump(&self.stats.gets, 1);
        response.map_err(|e| self.error(e))
    }

    pub async fn connect(
        location: &str,
        bucket: &str,
        prefix: &str,
        settings: &S3Settings,
    ) -> Result<S3Store> {
        let root = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(S3Store {
            location: location.to_string(),
            client: shared_client(settings).await,
            bucket: bucket.to_string(),
            root,
            endpoint: settings.endpoint_url.clone(),
            stats: StoreStats::default(),
        })
    }

    /// Creates the bucket if it does not exist yet (for the demo; slotfill never
    /// creates the buckets of a configured dataset).
    pub async fn ensure_bucket(&self) -> Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn error<E>(&self, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let location = self.location.clone();
        match &err {
            // The credential chain fails before any byte is sent, as a dispatch failure.
            SdkError::DispatchFailure(_) if is_credentials_error(&err) => {
                return StoreError::NoCredentials { location };
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                return StoreError::Unreachable {
                    location,
                    message: innermost_message(&err),
                };
            }
            SdkError::ConstructionFailure(_) => {
                return StoreError::Service {
                    location,
                    message: format!("cannot build the request: {}", innermost_message(&err)),
                };
            }
            _ => {}
        }
        let code = err.code().unwrap_or("").to_string();
        match code.as_str() {
            "NoSuchBucket" => StoreError::NoSuchBucket(self.bucket.clone()),
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden" => {
                StoreError::Denied { location, code }
            }
            _ => {
                let status = status_of(&err);
                let message = err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| innermost_message(&err));
                StoreError::Service {
                    location,
                    message: match (code.is_empty(), status) {
                        (false, _) => format!("{code}: {message}"),
                        (true, Some(status)) => format!("HTTP {status}: {message}"),
                        (true, None) => message,
                    },
                }
            }
        }
    }
}

/// The process's client for these settings, made on first use.
async fn shared_client(settings: &S3Settings) -> Client {
    let cached = |clients: &[(S3Settings, Client)]| {
        clients
            .iter()
            .find(|(s, _)| s == settings)
            .map(|(_, c)| c.clone())
    };
    if let Some(client) = cached(&CLIENTS.lock().unwrap_or_else(|e| e.into_inner())) {
        return client;
    }
    let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .http_client(super::http::client(MAX_CONNECTIONS))
        .retry_config(RetryConfig::standard().with_max_attempts(6))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.force_path_style || settings.endpoint_url.is_some())
        // A scan counts lines and stops at the line cap: a CRC of every byte read
        // (the SDK's default when the server stores checksums) would cost CPU for
        // an answer it never gets to when counting stops early.
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let client = Client::from_conf(config);
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = cached(&clients) {
        return existing;
    }
    clients.push((settings.clone(), client.clone()));
    client
}

/// The deepest cause of an error chain: the part a person can act on.
/// Whether a failure before sending came from the credential chain finding nothing
/// (the last provider tried, often the instance metadata service, names itself).
fn is_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string().to_lowercase();
        if text.contains("credential") || text.contains("imds") {
            return true;
        }
        current = e.source();
    }
    false
}

fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let full_prefix = self.full_key(prefix);
        let mut listing = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .max_keys(1000)
                .set_continuation_token(token.take())
                .send()
                .await;
            StoreStats::bump(&self.stats.lists, 1);
            let page = page.map_err(|e| self.error(e))?;
            listing.pages += 1;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.root)) else {
                    continue;
                };
                listing.objects.push(ListedObject {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: object.e_tag().map(str::to_string),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| t.fmt(Format::DateTime).ok()),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(listing)
    }

    async fn read(&self, key: &str) -> Result<ObjectRead> {
        let response = self.get(key).await?;
        Ok(ObjectRead {
            metadata: response.metadata().cloned().unwrap_or_default(),
            body: Box::new(response.body.into_async_read()),
        })
    }

    async fn count(&self, key: &str, cap: Option<u64>) -> Result<CountedRead> {
        let response = self.get(key).await?;
        let metadata = response.metadata.unwrap_or_default();
        let count = count_on_a_worker(response.body, cap)
            .await
            .map_err(|message| StoreError::Io {
                location: self.location.clone(),
                key: key.to_string(),
                message,
            })?;
        Ok(CountedRead { count, metadata })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        let response = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        StoreStats::bump(&self.stats.heads, 1);
        match response {
            Ok(head) => Ok(Some(ObjectHead {
                size: head.content_length().unwrap_or(0).max(0) as u64,
                etag: head.e_tag().map(str::to_string),
                last_modified: head
                    .last_modified()
                    .and_then(|t| t.fmt(Format::DateTime).ok()),
                metadata: head.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path, request: &PutRequest) -> Result<PutOutcome> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StoreError::Io {
                location: self.location.clone(),
                key: key.to_string(),
                message: e.to_string(),
            })?;
        let metadata: HashMap<String, String> = request.metadata.iter().cloned().collect();
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(&request.content_type)
            .set_metadata(Some(metadata))
            .body(body);
        put = match &request.condition {
            WriteCondition::IfAbsent => put.if_none_match("*"),
            WriteCondition::IfMatch(etag) => put.if_match(etag),
            WriteCondition::Always => put,
        };
        let response = put.send().await;
        StoreStats::bump(&self.stats.puts, 1);
        match response {
            Ok(out) => Ok(PutOutcome::Created {
                etag: out.e_tag().map(str::to_string),
            }),
            Err(e) if e.code() == Some("NoSuchBucket") => Err(self.error(e)),
            // If-Match on a vanished key: 412 from SeaweedFS, 404 from AWS and moto.
            Err(e)
                if status_of(&e) == Some(412)
                    || e.code() == Some("PreconditionFailed")
                    || (matches!(request.condition, WriteCondition::IfMatch(_))
                        && (status_of(&e) == Some(404) || e.code() == Some("NoSuchKey"))) =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn copy_source(&self, key: &str) -> Option<CopySource> {
        Some(CopySource {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key: self.full_key(key),
            if_match: None,
        })
    }

    /// CopyObject with the metadata replaced and the target's condition sent
    /// (`If-None-Match: *` or `If-Match`), plus `x-amz-copy-source-if-match`
    /// so that a source replaced meanwhile is not copied either.
    async fn copy_within(
        &self,
        source: &CopySource,
        key: &str,
        request: &PutRequest,
    ) -> Result<Option<PutOutcome>> {
        if source.endpoint != self.endpoint {
            return Ok(None);
        }
        let metadata: HashMap<String, String> = request.metadata.iter().cloned().collect();
        let mut copy = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .copy_source(format!(
                "{}/{}",
                source.bucket,
                percent_encode_key(&source.key)
            ))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .content_type(&request.content_type)
            .set_metadata(Some(metadata))
            .set_copy_source_if_match(source.if_match.clone());
        copy = match &request.condition {
            WriteCondition::IfAbsent => copy.if_none_match("*"),
            WriteCondition::IfMatch(etag) => copy.if_match(etag),
            WriteCondition::Always => copy,
        };
        let response = copy.send().await;
        StoreStats::bump(&self.stats.puts, 1);
        match response {
            Ok(out) => Ok(Some(PutOutcome::Created {
                etag: out
                    .copy_object_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_string),
            })),
            Err(e) if e.code() == Some("NoSuchBucket") => Err(self.error(e)),
            Err(e)
                if status_of(&e) == Some(412)
                    || e.code() == Some("PreconditionFailed")
                    || (matches!(request.condition, WriteCondition::IfMatch(_))
                        && e.code() == Some("NoSuchKey")) =>
            {
                Ok(Some(PutOutcome::AlreadyExists))
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// HEAD of the bucket, then a PUT conditional on an ETag no object has: S3
    /// checks the permission before the condition, so the refused condition
    /// proves the write would be allowed, and nothing is written.
    async fn check_writable(&self) -> Result<()> {
        let head = self.client.head_bucket().bucket(&self.bucket).send().await;
        StoreStats::bump(&self.stats.heads, 1);
        match head {
            // A HEAD has no body, hence no error code: the status says it. A refusal
            // is left to the PUT below, whose answer names the reason.
            Err(e) if status_of(&e) == Some(404) => {
                return Err(StoreError::NoSuchBucket(self.bucket.clone()));
            }
            Err(e) if status_of(&e) != Some(403) => return Err(self.error(e)),
            _ => {}
        }
        let empty = tempfile::NamedTempFile::new().map_err(|e| StoreError::Io {
            location: self.location.clone(),
            key: WRITE_PROBE_KEY.to_string(),
            message: format!("cannot create a temporary file: {e}"),
        })?;
        let probe = PutRequest {
            content_type: "text/plain".to_string(),
            metadata: Vec::new(),
            condition: WriteCondition::IfMatch("\"slotfill-write-probe\"".to_string()),
        };
        self.put_file(WRITE_PROBE_KEY, empty.path(), &probe)
            .await
            .map(|_| ())
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

/// `x-amz-copy-source` is a URL path: every byte but unreserved ones and `/` is escaped.
fn percent_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The key of the conditional write that proves a location accepts writes (never created).
const WRITE_PROBE_KEY: &str = ".slotfill-write-probe";

/// Counts a body in a task of its own. The caller's future may run on the thread
/// that called `block_on` (a scan's does), while hyper reads the socket on a
/// runtime worker: counted there, every chunk would cross to another core and be
/// read out of that core's cache. A task woken by the connection that received
/// the chunk runs next on the same worker, while the chunk is still in its cache
/// (a quarter less CPU for a cold scan, docs/BENCHMARKS.md section 8.1), and
/// counts run in parallel on every worker.
async fn count_on_a_worker(
    mut body: ByteStream,
    cap: Option<u64>,
) -> std::result::Result<LineCount, String> {
    let task = tokio::spawn(async move {
        let mut counter = LineCounter::new(cap);
        // The body's own chunks go to the counter: no copy into a read buffer.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| innermost_message(&e))?;
            if !counter.feed(&chunk) {
                break;
            }
        }
        Ok(counter.finish())
    });
    // A read that is dropped stops its count (a scan that stops at its first error
    // drops the reads still in flight).
    match AbortOnDropHandle::new(task).await {
        Ok(counted) => counted,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels it.
        Err(e) => Err(e.to_string()),
    }
}
