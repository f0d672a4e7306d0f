//! The proxy in front of SeaweedFS: counts each bucket's requests, injects the faults a
//! test asked for, and forwards everything else unchanged over pooled upstream connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::http::{Conn, Framing, Head, Reader, Response, Writer, conn, forward_body};
use super::super::http::{read_final_head, read_head, reset, write_response};
use super::{FaultRule, RequestCounts, S3Fault, S3Op, run};

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

pub(super) struct Proxy {
    upstream: SocketAddr,
    buckets: Mutex<HashMap<String, Bucket>>,
    pool: Mutex<Vec<Conn>>,
    trace: bool,
}

#[derive(Default)]
pub(super) struct Bucket {
    pub(super) counts: RequestCounts,
    pub(super) rules: Vec<(FaultRule, u64, u64)>, // (rule, skipped, fired)
    /// Requests received and not yet answered in full.
    pub(super) in_flight: u64,
    /// The most requests ever in flight at once since the counts were last reset.
    pub(super) peak_in_flight: u64,
}

/// One request in flight at the proxy, from its head until its response is
/// forwarded in full (or the exchange fails): counted while it lives.
struct InFlight<'a> {
    proxy: &'a Proxy,
    bucket: &'a str,
}

impl<'a> InFlight<'a> {
    fn enter(proxy: &'a Proxy, bucket: &'a str) -> InFlight<'a> {
        proxy.with_bucket(bucket, |b| {
            b.in_flight += 1;
            b.peak_in_flight = b.peak_in_flight.max(b.in_flight);
        });
        InFlight { proxy, bucket }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.proxy.with_bucket(self.bucket, |b| b.in_flight -= 1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    List,
    Get,
    Head,
    Put,
    Delete,
    Other,
}

/// Path-style: the first path segment is the bucket. Any GET on the bucket root is a list.
pub(super) fn classify(method: &str, target: &str) -> (String, Class) {
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
    pub(super) fn start(port: u16) -> (Arc<Proxy>, SocketAddr) {
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

    pub(super) fn with_bucket<R>(&self, bucket: &str, f: impl FnOnce(&mut Bucket) -> R) -> R {
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
        return reset((cr, cw));
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
    let _in_flight = InFlight::enter(proxy, &bucket);
    let fault = proxy.record(&bucket, class);
    if proxy.trace {
        let (start, framing) = (&req.start[..2], req.framing());
        let ce = req.header("content-encoding");
        eprintln!("[s3-proxy] {start:?} {class:?} {framing:?} {fault:?} content-encoding={ce:?}");
    }
    let (status, code, reason) = match fault {
        None => return forward(proxy, cr, cw, req, &bucket, class, Body::Whole).await,
        Some(S3Fault::ResetConnection) => return Ok(After::Reset),
        Some(S3Fault::ResetMidBody) => {
            return forward(proxy, cr, cw, req, &bucket, class, Body::Reset).await;
        }
        Some(S3Fault::PauseMidBody(d)) => {
            return forward(proxy, cr, cw, req, &bucket, class, Body::Pause(d)).await;
        }
        Some(S3Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            return forward(proxy, cr, cw, req, &bucket, class, Body::Whole).await;
        }
        Some(S3Fault::Hold(gate)) => {
            gate.pass().await;
            return forward(proxy, cr, cw, req, &bucket, class, Body::Whole).await;
        }
        Some(S3Fault::SlowDown503) => (503, "SlowDown", "Slow Down"),
        Some(S3Fault::InternalError500) => (500, "InternalError", "Internal Server Error"),
    };
    // An S3 error reply. Without `Expect: 100-continue` the request body is on its way: read
    // it first so the connection stays usable. With it, the client may wait: answer and close.
    let expect = req.has_token("expect", "100-continue");
    if !expect {
        forward_body(cr, &mut tokio::io::sink(), req.framing()?, None, |_| {}).await?;
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
    let mut reply = Response::new(status)
        .header("Content-Type", "application/xml")
        .header("x-amz-request-id", "test-proxy")
        .body(body);
    reply.reason = reason;
    write_response(cw, &reply, !close, false).await?;
    keep_alive_unless(close)
}

/// How a forwarded response body goes out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    Whole,
    /// Half of it (by Content-Length; without one, none), then the connection closes.
    Reset,
    /// Half of it (by Content-Length; without one, all at once), a pause, the rest.
    Pause(Duration),
}

/// Forwards one request unchanged and streams the response back.
async fn forward(
    proxy: &Proxy,
    cr: &mut Reader,
    cw: &mut Writer,
    req: Head,
    bucket: &str,
    class: Class,
    body: Body,
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
            let body = forward_body(cr, &mut uw, framing, None, |_| {});
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
    let reset_mid_body = body == Body::Reset;
    let reuse = !(early || reset_mid_body || until_close || resp.wants_close());
    let close = !reuse || req.wants_close();
    match close && !resp.has_token("connection", "close") {
        true => cw.write_all(&resp.with_close()).await?,
        false => cw.write_all(&resp.raw).await?,
    }
    let stop = match (resp_framing, body) {
        (Framing::Length(n), Body::Reset | Body::Pause(_)) => Some(n / 2),
        (_, Body::Reset) => Some(0),
        _ => None,
    };
    // bytes_out is counted before each write, so a client never sees bytes not yet counted.
    let count = class == Class::Get && (200..300).contains(&status);
    let on_payload = |n| _ = count.then(|| proxy.with_bucket(bucket, |b| b.counts.bytes_out += n));
    let sent = forward_body(&mut ur, cw, resp_framing, stop, on_payload).await?;
    if let (Body::Pause(pause), Framing::Length(n)) = (body, resp_framing) {
        tokio::time::sleep(pause).await;
        forward_body(&mut ur, cw, Framing::Length(n - sent), None, on_payload).await?;
    }
    if reuse {
        proxy.checkin((ur, uw));
    }
    keep_alive_unless(close)
}
