//! Response bodies: a backend's, one fjord writes itself, or a backend's re-encoded by the
//! compress middleware. Generic over the backend's body type, so that errors and middlewares
//! can answer without knowing the upstream client.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{Either, Full};

/// A body re-encoded on its way to the client (compression).
pub(crate) type Encoded = UnsyncBoxBody<Bytes, std::io::Error>;

/// A response body on its way to the client; `U` is the backend's body.
pub(crate) type ResponseBody<U> = Either<U, Either<Full<Bytes>, Encoded>>;

/// A response fjord writes itself, with no body.
pub(crate) fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A plain-text response fjord writes itself.
pub(crate) fn text(status: StatusCode, text: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A response of fjord's own as a [`ResponseBody`].
pub(crate) fn own<U>(response: Response<Full<Bytes>>) -> Response<ResponseBody<U>> {
    response.map(|full| Either::Right(Either::Left(full)))
}
