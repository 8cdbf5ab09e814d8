//! The compress middleware: gzip or brotli as the client's `Accept-Encoding` prefers, for
//! responses of at least a minimum size whose type is not excluded, streamed (never buffered).

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, BodyStream, Either, StreamBody};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::body::ResponseBody;
use crate::model::middleware::{CompressSpec, media_type};

/// A content coding fjord compresses with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }
}

impl CompressSpec {
    /// The encoding for a request's `Accept-Encoding` (`None` when it sent none), among those
    /// this middleware offers; its default when the client sent none, or `*`.
    pub fn negotiate(&self, accept: Option<&HeaderValue>) -> Option<Encoding> {
        let offered: Vec<&str> = self.encodings.iter().map(String::as_str).collect();
        let default = self.default_encoding.as_deref().and_then(Encoding::of);
        match accept {
            None => default,
            Some(accept) => negotiate_among(accept, &offered, default),
        }
    }
}

impl Encoding {
    fn of(token: &str) -> Option<Self> {
        match token {
            "br" => Some(Encoding::Brotli),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            _ => None,
        }
    }
}

/// The encoding to use for an `Accept-Encoding` value: the one with the highest q-value among
/// the `offered` tokens, brotli on a tie; `*` is `wildcard`; none when the client accepts
/// none of them.
fn negotiate_among(
    accept: &HeaderValue,
    offered: &[&str],
    wildcard: Option<Encoding>,
) -> Option<Encoding> {
    let accept = accept.to_str().ok()?;
    let mut best: Option<(Encoding, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let encoding = match token.as_str() {
            "*" => match wildcard {
                Some(e) => e,
                None => continue,
            },
            t => match Encoding::of(t) {
                Some(e) if offered.contains(&e.token()) => e,
                _ => continue,
            },
        };
        if q > 0.0
            && best.is_none_or(|(b, bq)| {
                q > bq || (q == bq && encoding == Encoding::Brotli && b != encoding)
            })
        {
            best = Some((encoding, q));
        }
    }
    best.map(|(e, _)| e)
}

impl CompressSpec {
    /// Compresses `response` with `encoding` when it qualifies; returns it unchanged otherwise.
    pub fn apply<U>(
        &self,
        encoding: Encoding,
        head: bool,
        response: Response<ResponseBody<U>>,
    ) -> Response<ResponseBody<U>>
    where
        U: http_body::Body<Data = Bytes> + Send + 'static,
        U::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let headers = response.headers();
        let status = response.status();
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type);
        let skip = head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || headers.contains_key(header::CONTENT_ENCODING)
            || headers.contains_key(header::CONTENT_RANGE)
            || declared.is_some_and(|n| n < self.min_bytes)
            || content_type.is_some_and(|t| self.excluded.contains(&t));
        if skip {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        );
        parts
            .headers
            .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        let data = BodyStream::new(body)
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
            .map_err(std::io::Error::other);
        let reader = StreamReader::new(data);
        let encoded = match encoding {
            Encoding::Gzip => {
                ReaderStream::new(async_compression::tokio::bufread::GzipEncoder::new(reader))
                    .boxed()
            }
            Encoding::Brotli => ReaderStream::new(
                async_compression::tokio::bufread::BrotliEncoder::new(reader),
            )
            .boxed(),
        };
        let body = StreamBody::new(encoded.map_ok(http_body::Frame::data)).boxed_unsync();
        Response::from_parts(parts, Either::Right(Either::Right(body)))
    }
}

/// Keeps the stream `Send` without naming the encoder types.
trait BoxedStream {
    fn boxed(self) -> futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;
}

impl<S: futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static> BoxedStream for S {
    fn boxed(self) -> futures_util::stream::BoxStream<'static, std::io::Result<Bytes>> {
        Box::pin(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_q_values() {
        let n =
            |s: &'static str| negotiate_among(&HeaderValue::from_static(s), &["gzip", "br"], None);
        assert_eq!(n("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(n("gzip"), Some(Encoding::Gzip));
        assert_eq!(n("br;q=0.5, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(n("br;q=0, gzip;q=0"), None);
        assert_eq!(n("identity, deflate"), None);
    }

    #[test]
    fn offered_encodings_and_the_default_are_the_middlewares() {
        let spec = CompressSpec {
            min_bytes: 0,
            excluded: Vec::new(),
            encodings: vec!["gzip".into()],
            default_encoding: Some("gzip".into()),
        };
        let accept = |s: &'static str| spec.negotiate(Some(&HeaderValue::from_static(s)));
        assert_eq!(accept("br"), None, "br is not offered");
        assert_eq!(accept("br, gzip;q=0.1"), Some(Encoding::Gzip));
        assert_eq!(
            accept("*"),
            Some(Encoding::Gzip),
            "the default for a wildcard"
        );
        assert_eq!(
            spec.negotiate(None),
            Some(Encoding::Gzip),
            "and for no header"
        );
        let no_default = CompressSpec {
            default_encoding: None,
            ..spec.clone()
        };
        assert_eq!(no_default.negotiate(None), None);
    }
}
