//! The upstream client: HTTP/1.1 to endpoints over one keep-alive pool (hyper-util), keyed by
//! endpoint address, so it outlives every snapshot.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::ServersTransport;
use crate::counted::Received;
use crate::error::ProxyError;

/// A request body on its way upstream: the client's, under the entry point's size limit, or
/// none (a retry of a bodyless request).
pub type RequestBody = Either<Limited<Received<Incoming>>, Empty<Bytes>>;

#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, RequestBody>,
    response_header_timeout: Duration,
}

impl Upstream {
    pub fn new(transport: &ServersTransport) -> Self {
        let timeouts = &transport.forwarding_timeouts;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.dial_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.idle_conn_timeout)
            .pool_max_idle_per_host(transport.max_idle_conns_per_host)
            .build(connector);
        Self {
            client,
            response_header_timeout: timeouts.response_header_timeout,
        }
    }

    /// Sends `request` and waits for the response head. `endpoint` names the endpoint in errors;
    /// `body_limit` is the limit the body was wrapped with, for the 413.
    pub async fn send(
        &self,
        request: Request<RequestBody>,
        endpoint: &str,
        body_limit: u64,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pending = self.client.request(request);
        match tokio::time::timeout(self.response_header_timeout, pending).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(ProxyError::Connect {
                endpoint: endpoint.to_owned(),
                source: e,
            }),
            Ok(Err(e)) if caused_by::<LengthLimitError>(&e) => {
                Err(ProxyError::BodyTooLarge { limit: body_limit })
            }
            Ok(Err(e)) => Err(ProxyError::Upstream {
                endpoint: endpoint.to_owned(),
                source: e,
            }),
            Err(_) => Err(ProxyError::Timeout {
                endpoint: endpoint.to_owned(),
                timeout: self.response_header_timeout,
            }),
        }
    }
}

fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}
