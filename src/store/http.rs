//! The S3 client's HTTP stack: the SDK's own (hyper 1 through hyper-util's pooled
//! client, rustls with aws-lc), built here with two limits that keep a scan's
//! memory flat at any `--concurrency`:
//!
//! - **read buffers**: hyper lets a connection's read buffer grow to ~400 KB,
//!   and a body chunk is a slice of it, so a download could hold the buffer,
//!   a chunk on its way and the chunk being counted (~1 MB). Capped at
//!   [`READ_BUFFER`], a connection holds at most a few of those.
//! - **the pool**: hyper keeps every connection ever opened; here it keeps no
//!   more idle connections than the requests a scan has in flight
//!   ([`super::MAX_CONNECTIONS`]).
//!
//! aws-smithy-http-client 1.5 builds this same stack but keeps hyper's builder
//! private, hence this module. Errors are classified as it classifies them, so
//! the SDK retries the same failures (connect and I/O errors, timeouts,
//! connections closed mid-message).

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::ErrorKind;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The most a connection reads at once: body chunks are at most this large.
/// 64 KiB keeps reads as large as curl's and a connection's buffers small.
pub const READ_BUFFER: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Pooled = Client<HttpsConnector<TcpConnector>, SdkBody>;

/// An HTTP client for the SDK over one connection pool.
#[derive(Debug, Clone)]
struct PooledClient {
    client: Pooled,
}

/// The HTTP client for S3: one pool of at most `max_idle` idle connections.
pub fn client(max_idle: usize) -> SharedHttpClient {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
        .unwrap_or_else(|e| {
            // No system certificates: plain-HTTP endpoints still work, and an HTTPS
            // request fails naming the certificate it could not verify.
            tracing::warn!(error = %e, "no TLS root certificates found");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("aws-lc supports the default TLS versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(max_idle)
        .http1_max_buf_size(READ_BUFFER)
        .build(tls);
    SharedHttpClient::new(PooledClient { client })
}

impl HttpClient for PooledClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            client: self.client.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

/// One operation's view of the pool, with its read timeout.
#[derive(Debug)]
struct Connector {
    client: Pooled,
    /// How long the response's head may take.
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|e| ConnectorError::timeout(e.into()))?,
                None => response.await,
            };
            let response = response.map_err(classify)?;
            Response::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Sorts a failed exchange into what the SDK's retry policy understands.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let io = err.is_connect() || find::<std::io::Error>(&err).is_some();
    match find::<hyper::Error>(&err) {
        Some(h) if h.is_timeout() => ConnectorError::timeout(err.into()),
        Some(h) if h.is_user() => ConnectorError::user(err.into()),
        Some(h) if h.is_closed() || h.is_canceled() => ConnectorError::io(err.into()),
        // S3 sometimes closes a connection mid-message: worth another try.
        Some(h) if h.is_incomplete_message() => {
            ConnectorError::other(err.into(), Some(ErrorKind::TransientError))
        }
        _ if io => ConnectorError::io(err.into()),
        _ => ConnectorError::other(err.into(), None),
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}
