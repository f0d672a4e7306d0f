//! Test support: one real S3 server (SeaweedFS `weed mini`) per test process, behind a
//! counting, fault-injecting proxy written over tokio `TcpStream`.
//!
//! Use from an integration test as `use crate::support::s3::*;`. Point the code under test at
//! [`S3Server::endpoint`] (the proxy). The blocking helpers (`put`, `get`, ...) talk to
//! SeaweedFS directly: they are neither counted nor faulted. `SLOTFILL_S3_TRACE=1` prints every
//! proxied request and its framing to stderr. Needs tokio with `net`, and libc.
//!
//! Layout: this file holds the public types and the handle; `weed` starts and cleans up
//! SeaweedFS; `proxy` counts, faults and forwards requests, byte for byte, through the tests'
//! HTTP toolkit (`support/http`).
#![allow(dead_code)]

mod proxy;
mod weed;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use proxy::Proxy;

pub const ACCESS_KEY: &str = "AK";
pub const SECRET_KEY: &str = "SK";
pub const REGION: &str = "us-east-1";

/// Requests seen by the proxy for one bucket (faulted ones included). `bytes_out`: response
/// body bytes of 2xx object GETs as forwarded (a `ResetMidBody` GET counts the half it sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub list: u64,
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub delete: u64,
    pub other: u64,
    pub bytes_out: u64,
}

/// Requests a [`FaultRule`] applies to; `Any` also matches deletes and other requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Op {
    List,
    Get,
    Head,
    Put,
    Any,
}

#[derive(Debug, Clone)]
pub enum S3Fault {
    /// 503 `SlowDown` S3 error; the request never reaches SeaweedFS.
    SlowDown503,
    /// 500 `InternalError` S3 error; the request never reaches SeaweedFS.
    InternalError500,
    /// TCP RST on the client connection right after the request head.
    ResetConnection,
    /// Wait, then forward normally.
    Delay(Duration),
    /// Wait until the test opens the gate, then forward normally.
    Hold(Gate),
    /// Forward; send the response head and half the body (by Content-Length; without one,
    /// the head only), then close the connection.
    ResetMidBody,
    /// Forward; send the response head and half the body (by Content-Length), wait, then the
    /// rest: the client holds a download open mid-body meanwhile.
    PauseMidBody(Duration),
}

/// A gate a test opens once: requests held on it ([`S3Fault::Hold`]) wait until then, so a
/// test can act while a request is known to be under way.
#[derive(Debug, Clone)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Lets every held request, and any later one, through.
    pub fn open(&self) {
        self.0.close();
    }

    async fn pass(&self) {
        let _ = self.0.acquire().await;
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

/// The first `skip` matching requests of the bucket pass, the next `times` get `fault`, then
/// the rule is spent. Rules are checked in the order injected; a request gets one fault at most.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub op: S3Op,
    pub fault: S3Fault,
    pub times: u64,
    pub skip: u64,
}

/// aws-sdk-s3 config for the test server: `endpoint`, path-style, [`REGION`], static AK/SK.
/// Override retries or credentials on the returned builder as needed.
pub fn s3_config(endpoint: &str) -> aws_sdk_s3::config::Builder {
    let creds = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(REGION))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .force_path_style(true)
}

pub struct S3Server {
    s3_port: u16,
    proxy_addr: SocketAddr,
    weed_pid: u32,
    proxy: Arc<Proxy>,
    direct: aws_sdk_s3::Client,
    counter: AtomicU64,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).thread_name("s3-harness").enable_all();
        b.build().expect("build s3 harness runtime")
    })
}

/// Runs `fut` on the harness runtime and waits for it; works from any thread, also inside a
/// `#[tokio::test]` (its runtime is only blocked meanwhile, not re-entered).
fn run<F: Future<Output: Send> + Send + 'static>(fut: F) -> F::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move { tx.send(fut.await) });
    rx.recv().expect("s3 harness task panicked")
}

/// Runs one SDK call against SeaweedFS: None on 404, panics on other errors.
fn sdk<T: Send + 'static, E>(
    what: String,
    fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>> + Send + 'static,
) -> Option<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match run(fut) {
        Ok(v) => Some(v),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => None,
        Err(e) => panic!("{what}: {}", DisplayErrorContext(e)),
    }
}

impl S3Server {
    /// The process-wide server, started on first use.
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(S3Server::start)
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`: point the code under test here.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    /// SeaweedFS itself: not counted, never faulted.
    pub fn direct_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn weed_pid(&self) -> u32 {
        self.weed_pid
    }

    /// Creates a bucket named `{prefix}-{counter}-{pid}` (prefix lowercased, sanitized).
    pub fn new_bucket(&self, prefix: &str) -> String {
        let p: String = prefix.to_ascii_lowercase().chars().take(30).collect();
        let p = p.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let p = p.trim_matches('-');
        let p = if p.is_empty() { "b" } else { p };
        let n = self.counter.fetch_add(1, SeqCst);
        let name = format!("{p}-{n}-{}", std::process::id());
        let req = self.direct.create_bucket().bucket(&name);
        sdk(format!("create bucket {name}"), req.send()).expect("CreateBucket: 404");
        name
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.put_with_metadata(bucket, key, body, &[]);
    }

    pub fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        metadata: &[(&str, &str)],
    ) {
        let mut req = self.direct.put_object().bucket(bucket).key(key);
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        let req = req.body(ByteStream::from(body.to_vec())).send();
        sdk(format!("put {bucket}/{key}"), req).expect("PutObject: 404, no such bucket?");
    }

    /// The object's bytes, or None if it does not exist.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let req = self.direct.get_object().bucket(bucket).key(key).send();
        let out = sdk(format!("get {bucket}/{key}"), req)?;
        let body = run(out.body.collect()).unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"));
        Some(body.to_vec())
    }

    /// User metadata (`x-amz-meta-*` without the prefix), or None if the object does not exist.
    pub fn head_metadata(&self, bucket: &str, key: &str) -> Option<HashMap<String, String>> {
        let req = self.direct.head_object().bucket(bucket).key(key).send();
        sdk(format!("head {bucket}/{key}"), req).map(|o| o.metadata.unwrap_or_default())
    }

    /// The object's ETag as S3 returns it (quoted), or None if it does not exist.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let req = self.direct.head_object().bucket(bucket).key(key).send();
        sdk(format!("head {bucket}/{key}"), req).and_then(|o| o.e_tag)
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let req = self.direct.delete_object().bucket(bucket).key(key).send();
        sdk(format!("delete {bucket}/{key}"), req);
    }

    /// All keys under `prefix` (every page), in listing order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (mut keys, mut token) = (Vec::new(), None);
        loop {
            let req = self.direct.list_objects_v2().bucket(bucket).prefix(prefix);
            let req = req.set_continuation_token(token).send();
            let out = sdk(format!("list {bucket}/{prefix}"), req).expect("ListObjectsV2: 404");
            let page = out.contents().iter().filter_map(|o| o.key());
            keys.extend(page.map(str::to_string));
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() || out.is_truncated() != Some(true) {
                return keys;
            }
        }
    }

    pub fn counts(&self, bucket: &str) -> RequestCounts {
        self.proxy.with_bucket(bucket, |b| b.counts)
    }

    /// Also starts the peak of requests in flight afresh (from those in flight now).
    pub fn reset_counts(&self, bucket: &str) {
        let zero = RequestCounts::default();
        self.proxy.with_bucket(bucket, |b| {
            b.counts = zero;
            b.peak_in_flight = b.in_flight;
        });
    }

    /// The most requests to the bucket in flight at once at the proxy (from a request's
    /// head until its response was forwarded in full) since its counts were last reset.
    pub fn peak_in_flight(&self, bucket: &str) -> u64 {
        self.proxy.with_bucket(bucket, |b| b.peak_in_flight)
    }

    pub fn inject(&self, bucket: &str, rule: FaultRule) {
        let proxy = &self.proxy;
        proxy.with_bucket(bucket, |b| b.rules.push((rule, 0, 0)));
    }

    pub fn clear_faults(&self, bucket: &str) {
        self.proxy.with_bucket(bucket, |b| b.rules.clear());
    }
}
