//! The HTTP client provider adapters (and tests) share: HTTP/1.1 over hyper,
//! plain or over TLS (rustls, trusting the public web's roots and any
//! authorities given), with a deadline per request, telling apart a request
//! that never left (safe to send again) from one whose answer never came (the
//! provider may have acted on it). A server whose certificate the roots do not
//! trust is a request that never left: the handshake fails before it is sent.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::tls::{self, TlsError};

/// How a request went.
#[derive(Debug)]
pub enum Exchange {
    /// An answer came.
    Answered {
        /// Its status.
        status: StatusCode,
        /// Its body.
        body: Bytes,
    },
    /// The request never reached the server (no connection): nothing happened.
    NotSent,
    /// It may have reached the server, but no answer came in time (or the
    /// connection broke): the server may have acted on it.
    Unanswered,
}

/// A shared HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests give up after `timeout`, trusting the public
    /// web's roots for `https://` URLs.
    pub fn new(timeout: Duration) -> Result<Self, TlsError> {
        Self::trusting(timeout, None)
    }

    /// A client whose requests give up after `timeout`, trusting the public
    /// web's roots and the authorities in `extra_roots_pem` for `https://` URLs.
    pub fn trusting(timeout: Duration, extra_roots_pem: Option<&str>) -> Result<Self, TlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(extra_roots_pem)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Sends a request; `headers` are (name, value) pairs.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Exchange {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let Ok(request) = builder.body(Full::new(Bytes::from(body))) else {
            return Exchange::NotSent; // a URL or header that cannot be sent at all
        };
        let exchange = async {
            match self.client.request(request).await {
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(body) => Exchange::Answered {
                            status,
                            body: body.to_bytes(),
                        },
                        Err(_) => Exchange::Unanswered,
                    }
                }
                Err(error) if error.is_connect() => Exchange::NotSent,
                Err(_) => Exchange::Unanswered,
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Exchange::Unanswered)
    }
}
