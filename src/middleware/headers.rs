//! The headers middleware: custom request and response headers (an empty value removes one),
//! security headers, and CORS (preflight requests answered here, never forwarded).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::model::middleware::{Cors, HeadersSpec};

impl HeadersSpec {
    /// Sets and removes the request headers.
    pub fn on_request(&self, headers: &mut HeaderMap) {
        apply(headers, &self.request);
    }

    /// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub fn preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<(StatusCode, HeaderMap)> {
        let cors = self.cors.as_ref()?;
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut out = HeaderMap::new();
        if let Some(origin) = cors.allowed(headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if let Some(m) = &cors.methods {
                out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
            }
            if let Some(h) = &cors.headers {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
            }
            if let Some(age) = &cors.max_age {
                out.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
            }
            if cors.credentials {
                out.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        Some((StatusCode::OK, out))
    }

    /// Sets the response headers; `request` are the client's request headers (for CORS).
    pub fn on_response(&self, response: &mut HeaderMap, request: Option<&HeaderValue>) {
        apply(response, &self.response);
        for (name, value) in &self.security {
            response.insert(name.clone(), value.clone());
        }
        if let Some(cors) = &self.cors {
            if let Some(origin) = request.and_then(|o| cors.matches(o)) {
                response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                if cors.credentials {
                    response.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                if let Some(e) = &cors.expose {
                    response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
                }
            }
            if cors.vary {
                response.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
    }
}

impl Cors {
    fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        headers.get(header::ORIGIN).and_then(|o| self.matches(o))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn matches(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let o = origin.to_str().ok()?;
        if self.origins.iter().any(|a| a == "*") && !self.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins
            .iter()
            .any(|a| a == "*" || a == o)
            .then(|| origin.clone())
    }
}

fn apply(headers: &mut HeaderMap, changes: &[(HeaderName, Option<HeaderValue>)]) {
    for (name, value) in changes {
        match value {
            Some(v) => {
                headers.insert(name.clone(), v.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
}
