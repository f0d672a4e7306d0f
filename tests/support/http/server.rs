//! A loopback HTTP/1.1 server for a [`Handler`]: its own thread and tokio runtime (so plain
//! `#[test]` functions can use it), keep-alive, bodies by Content-Length or chunked,
//! `Expect: 100-continue`, and answers that may be a response, an RST or raw bytes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::wire::{Conn, conn, read_request, reset, write_response};
use super::{Request, Response};

/// What a server does with one request.
pub enum Answer {
    /// Write the response; the connection stays open if the request and the response allow.
    Send(Response),
    /// Drop the connection with an RST, not a byte sent.
    Reset,
    /// Write these bytes as they are (half a response, a broken head), then close.
    Raw(Vec<u8>),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        Answer::Send(r)
    }
}

/// The behaviour of a server.
pub trait Handler: Send + Sync + 'static {
    /// Request bodies past this many bytes are refused (see [`Handler::refuse`]).
    const BODY_LIMIT: u64 = 1 << 20;

    fn answer(&self, req: Request) -> impl Future<Output = Answer> + Send;

    /// The answer to a request that could not be read: malformed, or its body over
    /// [`Handler::BODY_LIMIT`] (`too_large`). The connection closes after it; None: at once.
    fn refuse(&self, too_large: bool) -> Option<Response> {
        let _ = too_large;
        None
    }
}

/// A running server; stops (closing every connection) on Drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds 127.0.0.1:0, builds the handler for that address, and serves it on a thread
    /// named `name`; returns the server and the handler.
    pub fn start<H: Handler>(
        name: &str,
        handler: impl FnOnce(SocketAddr) -> Arc<H>,
    ) -> (Server, Arc<H>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let handler = handler(addr);
        let (tx, rx) = oneshot::channel();
        let h = handler.clone();
        let serve = move || {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            let rt = rt.worker_threads(2).enable_all().build();
            let rt = rt.expect("tokio runtime");
            rt.block_on(accept_loop(h, listener, rx));
            rt.shutdown_timeout(Duration::from_millis(500));
        };
        let thread = std::thread::Builder::new().name(name.into());
        let thread = Some(thread.spawn(serve).expect("spawn server thread"));
        let server = Server {
            addr,
            stop: Some(tx),
            thread,
        };
        (server, handler)
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop<H: Handler>(
    handler: Arc<H>,
    listener: std::net::TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Ok((sock, _)) = listener.accept() => {
                tokio::spawn(serve_connection(handler.clone(), sock));
            }
        }
    }
}

/// Answers the requests of one connection, in order, until either side closes.
async fn serve_connection<H: Handler>(handler: Arc<H>, sock: TcpStream) {
    let mut c = conn(sock);
    loop {
        let req = match read_request(&mut c, H::BODY_LIMIT).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => return refuse(&*handler, c, e).await,
        };
        let keep = !req.head.wants_close();
        let head_only = req.method() == "HEAD";
        let sent = match handler.answer(req).await {
            Answer::Send(resp) => {
                let keep = keep && !resp.close;
                let sent = write_response(&mut c.1, &resp, keep, head_only).await;
                sent.map(|_| keep)
            }
            Answer::Reset => return reset(c),
            Answer::Raw(bytes) => c.1.write_all(&bytes).await.map(|_| false),
        };
        if !matches!(sent, Ok(true)) {
            return close(c).await;
        }
    }
}

/// A request that could not be read: the handler's refusal if it deserves one, then close.
async fn refuse(handler: &impl Handler, mut c: Conn, e: io::Error) {
    let too_large = e.kind() == io::ErrorKind::FileTooLarge;
    let answer = match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::FileTooLarge => handler.refuse(too_large),
        _ => None, // the peer went away mid-request
    };
    if let Some(resp) = answer {
        let _ = write_response(&mut c.1, &resp, false, false).await;
        close(c).await;
    }
}

async fn close(mut c: Conn) {
    let _ = c.1.shutdown().await;
}
