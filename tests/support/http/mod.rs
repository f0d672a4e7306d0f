//! The tests' one HTTP/1.1 toolkit: the origin emulators, the S3 proxy, the webhook receiver
//! and every raw request a test sends read and write HTTP through it, and nothing else under
//! `tests/` does.
//!
//! Hand-written rather than hyper/axum: the emulators must fail the way the real servers do,
//! and several faults need the bare socket, which hyper keeps to itself: an RST before any
//! byte is sent, half a body and then a close, a refusal written before the request body is
//! read, and the S3 proxy forwarding bodies with their chunk framing byte for byte while it
//! counts what is in flight. What the tests need of HTTP is small; this keeps it in one place.
//!
//! Layout: this file holds the messages (heads, requests, responses, query strings); `wire`
//! reads and writes them on a connection (heads; bodies by Content-Length, chunked or until
//! close, forwarded as they are or decoded); `server` runs a [`Handler`] on a loopback port,
//! whose answer may also be an RST or raw bytes; `client` is the tests' blocking client;
//! `webhook` a receiver that keeps every body posted to it.
// Not every user takes every part (examples/bench.rs includes this module too).
#![allow(dead_code, unused_imports)]

mod client;
mod server;
mod webhook;
mod wire;

pub use client::{Reply, exchange, get, try_exchange};
pub use server::{Answer, Handler, Server};
pub use webhook::Webhook;
pub use wire::{
    Conn, Framing, Reader, Writer, conn, forward_body, read_final_head, read_head, reset,
    response_bytes, write_response,
};

use std::collections::BTreeMap;
use std::io;

/// A request or response head as received.
pub struct Head {
    /// The head through its empty line, as received: what a proxy forwards.
    pub raw: Vec<u8>,
    /// The start line split on ' ' (at most 3 parts): method, target and version of a
    /// request; version, status and reason of a response.
    pub start: Vec<String>,
    /// (lowercased name, value), in order.
    headers: Vec<(String, String)>,
}

pub(crate) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Head {
    /// A start line of at least two parts and `name: value` header lines, or InvalidData.
    pub fn parse(raw: Vec<u8>) -> io::Result<Head> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.lines();
        let start = lines.next().unwrap_or("").splitn(3, ' ');
        let start: Vec<String> = start.map(Into::into).collect();
        if start.len() < 2 {
            return Err(invalid("bad HTTP start line"));
        }
        let mut headers = vec![];
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(Head {
            raw,
            start,
            headers,
        })
    }

    /// The first value of a header (`name` in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        found.next().map(|(_, v)| v.as_str())
    }

    /// Every header as (lowercased name, value), in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Whether a comma-separated header lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values = self.headers.iter().filter(|(k, _)| k == name);
        values.any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// A response's status code (0 if it is not a number).
    pub fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }

    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    pub fn wants_close(&self) -> bool {
        let http10 = self.start.iter().any(|p| p.trim() == "HTTP/1.0");
        self.has_token("connection", "close")
            || (http10 && !self.has_token("connection", "keep-alive"))
    }

    pub fn framing(&self) -> io::Result<Framing> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        let len = self.header("content-length").map(str::parse);
        let len = len.transpose().map_err(|_| invalid("bad content-length"))?;
        Ok(len.map_or(Framing::None, Framing::Length))
    }

    /// This head with its `Connection` headers replaced by `Connection: close`.
    pub fn with_close(&self) -> Vec<u8> {
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

/// A request a server read in full, its body decoded.
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        &self.head.start[0]
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &str {
        &self.head.start[1]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn headers(&self) -> &[(String, String)] {
        self.head.headers()
    }
}

/// A response to write: Content-Length and Connection are added when it is written.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after it, whatever the request asked.
    pub close: bool,
}

impl Response {
    /// An empty response with the standard reason phrase.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: reason(status),
            headers: vec![],
            body: vec![],
            close: false,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }
}

/// The standard reason phrase ("Unknown" for a code not listed). An emulator that answers
/// with a server's own phrases sets [`Response::reason`] itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// An IMF-fixdate (`Date`, `Retry-After`), from Unix milliseconds.
pub fn http_date(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Splits a target into its path and query parameters, values percent-decoded (a repeated
/// name keeps its last value).
pub fn parse_query(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_string(), v.into_owned())
        })
        .collect();
    (path.to_string(), params)
}
