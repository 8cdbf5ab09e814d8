//! Why a request failed, and the one place that turns that into a response. Responses are short
//! and plain; details go to the log, never to the client.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::proxy::ResponseBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches")]
    NoRoute,
    #[error("backend {backend} has no ready endpoint: {why}")]
    NoEndpoint { backend: Box<str>, why: Box<str> },
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {endpoint} failed: {source}")]
    Upstream {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {endpoint} sent no response head within {timeout:?}")]
    Timeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    #[error("upstream {endpoint} switched protocols though the client asked for no upgrade")]
    UnaskedUpgrade { endpoint: String },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UnaskedUpgrade { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The response a client gets for this error.
    pub fn response(&self) -> Response<ResponseBody> {
        let status = self.status();
        let text: &'static str = match status {
            StatusCode::NOT_FOUND => "404 page not found\n",
            StatusCode::SERVICE_UNAVAILABLE => "503 no available server\n",
            StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout\n",
            StatusCode::PAYLOAD_TOO_LARGE => "413 request entity too large\n",
            _ => "502 bad gateway\n",
        };
        let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
            text.as_bytes(),
        ))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
