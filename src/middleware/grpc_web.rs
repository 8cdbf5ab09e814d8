//! `grpcWeb`: a browser's gRPC-Web call (`application/grpc-web`, or `-text` in base64) goes
//! to the backend as gRPC over HTTP/2, and its answer comes back as gRPC-Web: the trailers
//! (`grpc-status`) as a last message with the high bit set, in base64 for `-text`. CORS
//! preflights from the allowed origins are answered here.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};

use crate::body::{self, Encoded, ResponseBody};
use crate::error::ProxyError;
use crate::model::middleware::GrpcWebSpec;
use crate::upload::Base64Body;

use super::Stop;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How a call's messages are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// `application/grpc-web`: as gRPC frames them.
    Binary,
    /// `application/grpc-web-text`: the same, in base64.
    Text,
}

/// What middleware `name` does with `req`: answer a CORS preflight, refuse a page from an
/// origin it does not allow, or turn a gRPC-Web call into gRPC and say how to write its
/// answer.
pub(super) fn on_request<B>(
    spec: &GrpcWebSpec,
    name: &str,
    req: &mut Request<B>,
) -> Result<Option<Mode>, Stop> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin.as_ref().is_none_or(|o| spec.allows(o));
    let forbidden = || {
        Stop::Error(ProxyError::Forbidden {
            middleware: name.into(),
        })
    };
    if req.method() == Method::OPTIONS
        && let Some(origin) = origin.filter(|_| {
            req.headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        })
    {
        if !allowed {
            return Err(forbidden());
        }
        return Err(Stop::Reply(Box::new(preflight(req.headers(), origin))));
    }
    let Some((mode, grpc_type)) = grpc_type(req.headers()) else {
        return Ok(None);
    };
    if !allowed {
        return Err(forbidden());
    }
    let headers = req.headers_mut();
    headers.insert(header::CONTENT_TYPE, grpc_type);
    if mode == Mode::Text {
        // The decoded body is shorter.
        headers.remove(header::CONTENT_LENGTH);
        req.extensions_mut().insert(Base64Body);
    }
    Ok(Some(mode))
}

/// The call's mode and the gRPC content type it becomes, for a gRPC-Web request.
fn grpc_type(headers: &HeaderMap) -> Option<(Mode, HeaderValue)> {
    let given = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (mode, rest) = if let Some(rest) = given.strip_prefix("application/grpc-web-text") {
        (Mode::Text, rest)
    } else {
        (Mode::Binary, given.strip_prefix("application/grpc-web")?)
    };
    let value = HeaderValue::from_str(&format!("application/grpc{rest}")).ok()?;
    Some((mode, value))
}

fn preflight(headers: &HeaderMap, origin: HeaderValue) -> Response<http_body_util::Full<Bytes>> {
    let mut reply = body::empty(StatusCode::NO_CONTENT);
    let out = reply.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    reply
}

/// The backend's gRPC answer as gRPC-Web, for a client from `origin`.
pub(super) fn on_response<U>(
    mode: Mode,
    origin: Option<&HeaderValue>,
    response: Response<ResponseBody<U>>,
) -> Response<ResponseBody<U>>
where
    U: Body<Data = Bytes> + Send + 'static,
    U::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, inner) = response.into_parts();
    let Some(rest) = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.strip_prefix("application/grpc"))
        .map(str::to_owned)
    else {
        // Not a gRPC answer (an error page, a refusal): as it is.
        return Response::from_parts(parts, inner);
    };
    let web = match mode {
        Mode::Binary => "application/grpc-web",
        Mode::Text => "application/grpc-web-text",
    };
    if let Ok(t) = HeaderValue::from_str(&format!("{web}{rest}")) {
        parts.headers.insert(header::CONTENT_TYPE, t);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(origin) = origin {
        parts
            .headers
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        parts.headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin"),
        );
    }
    // A trailers-only answer carries its status in the headers: it goes in the body too.
    let in_head: HeaderMap = parts
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("grpc-"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let body = Web {
        // Boxed: the backend's body need not be `Unpin`, and gRPC-Web answers are few.
        inner: Box::pin(inner),
        mode,
        trailers: (!in_head.is_empty()).then_some(in_head),
        done: false,
    };
    let body: Encoded = http_body_util::BodyExt::boxed_unsync(body);
    Response::from_parts(
        parts,
        http_body_util::Either::Right(http_body_util::Either::Right(body)),
    )
}

/// A gRPC answer's body as gRPC-Web: its messages as they come, its trailers as a last
/// message.
struct Web<B> {
    inner: Pin<Box<B>>,
    mode: Mode,
    /// Trailers the head carried (a trailers-only answer), sent if the body has none.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B> Body for Web<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let bytes = match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        this.done = true;
                        trailer_message(&trailers)
                    }
                    Err(_) => Bytes::new(),
                },
            },
            Some(Err(e)) => return Poll::Ready(Some(Err(std::io::Error::other(e.into())))),
            None => {
                this.done = true;
                match this.trailers.take() {
                    Some(trailers) => trailer_message(&trailers),
                    None => return Poll::Ready(None),
                }
            }
        };
        let bytes = match this.mode {
            Mode::Binary => bytes,
            Mode::Text => Bytes::from(B64.encode(&bytes)),
        };
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The trailers as gRPC-Web's last message: flag 0x80, length, `name: value\r\n` lines.
fn trailer_message(trailers: &HeaderMap) -> Bytes {
    let mut lines = BytesMut::new();
    for (name, value) in trailers {
        lines.put_slice(name.as_str().as_bytes());
        lines.put_slice(b": ");
        lines.put_slice(value.as_bytes());
        lines.put_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + lines.len());
    out.put_u8(0x80);
    out.put_u32(u32::try_from(lines.len()).unwrap_or(u32::MAX));
    out.put_slice(&lines);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_become_the_last_message() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let m = trailer_message(&t);
        assert_eq!(&m[..], b"\x80\x00\x00\x00\x10grpc-status: 0\r\n");
    }
}
