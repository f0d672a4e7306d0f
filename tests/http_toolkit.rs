//! The tests' HTTP toolkit (`support/http`) itself: what the emulators' faults rely on
//! reaches the wire (an RST, raw bytes, a refusal before the body is read), and request
//! bodies are decoded whatever their framing.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::http::{Answer, Handler, Request, Response, Server};
use crate::support::http::{exchange, response_bytes, try_exchange};

/// Echoes the request body, or answers as the path says; keeps each request's method and
/// decoded body.
#[derive(Default)]
struct Echo(Mutex<Vec<(String, Vec<u8>)>>);

impl Handler for Echo {
    const BODY_LIMIT: u64 = 1024;

    async fn answer(&self, req: Request) -> Answer {
        let seen = (req.method().to_string(), req.body.clone());
        self.0.lock().unwrap().push(seen);
        match req.target() {
            "/reset" => Answer::Reset,
            "/half" => {
                let whole = Response::new(200).body("0123456789");
                let mut bytes = response_bytes(&whole, false, false);
                bytes.truncate(bytes.len() - 6);
                Answer::Raw(bytes)
            }
            _ => Response::new(200).body(req.body).into(),
        }
    }

    fn refuse(&self, too_large: bool) -> Option<Response> {
        Some(Response::new(if too_large { 413 } else { 400 }))
    }
}

fn echo() -> (Server, Arc<Echo>) {
    Server::start("echo", |_| Arc::new(Echo::default()))
}

fn fails(base: &str, path: &str) -> io::Error {
    let within = Duration::from_secs(10);
    let answer = try_exchange(base, "GET", path, &[], b"", within);
    answer.expect_err("no complete answer")
}

#[test]
fn chunked_request_bodies_are_decoded_trailers_and_extensions_dropped() {
    let (server, echo) = echo();
    let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let headers = [("Transfer-Encoding", "chunked")];
    let reply = exchange(&server.base_url(), "POST", "/", &headers, chunked);
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello world"));
    assert_eq!(echo.0.lock().unwrap()[0].1, b"hello world");
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let (server, echo) = echo();
    let headers = [("Content-Length", "4096")];
    let reply = exchange(&server.base_url(), "POST", "/", &headers, b"only a part");
    assert_eq!(reply.status, 413);
    assert!(echo.0.lock().unwrap().is_empty(), "never handled");
}

#[test]
fn a_handler_can_reset_the_connection_or_write_raw_bytes() {
    let (server, echo) = echo();
    let reset = fails(&server.base_url(), "/reset");
    assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset, "{reset}");
    // Ten bytes announced, four sent, then the close: the client sees the body cut short.
    let half = fails(&server.base_url(), "/half");
    assert_eq!(half.kind(), io::ErrorKind::UnexpectedEof, "{half}");
    assert_eq!(echo.0.lock().unwrap().len(), 2);
}
