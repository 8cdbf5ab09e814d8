//! Header rewriting for one request on its way upstream: hop-by-hop headers removed and the
//! `X-Forwarded-*` / `X-Real-IP` set, for a typical browser request from an untrusted client
//! and from a trusted proxy (appending to its chain), and the same request over HTTP/2 (no
//! hop-by-hop headers at all); and a response from an HTTP/1.1 backend on its way back.
//! Run `cargo bench --bench headers`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fjord::forwarded::{Client, request, response};
use http::{HeaderMap, HeaderValue};

/// A map grown one insert at a time, as a parser grows it, so that it has room to spare.
fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for &(k, v) in pairs {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn browser_request() -> HeaderMap {
    headers(&[
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ])
}

fn rewrite(c: &mut Criterion) {
    let template = browser_request();
    let host = HeaderValue::from_static("shop.example.com");
    let untrusted = Client::new("198.51.100.4:51234".parse().unwrap(), 443, true, &[], false);
    let trusted = Client::new(
        "10.0.0.9:51234".parse().unwrap(),
        443,
        true,
        &["10.0.0.0/8".parse().unwrap()],
        false,
    );
    // The same request over HTTP/2, which has no Connection header (nor any hop-by-hop one).
    let mut h2 = template.clone();
    h2.remove("connection");
    for (name, client, template) in [
        ("untrusted client", &untrusted, &template),
        ("trusted proxy", &trusted, &template),
        ("untrusted client, HTTP/2", &untrusted, &h2),
    ] {
        c.bench_function(&format!("rewrite request headers, {name}"), |b| {
            b.iter_batched_ref(
                || template.clone(),
                |headers| request(black_box(headers), client, Some(&host), None),
                BatchSize::SmallInput,
            );
        });
    }
}

/// What nginx answers a proxied request with: its `Connection: keep-alive` is hop-by-hop.
fn backend_response() -> HeaderMap {
    headers(&[
        ("server", "nginx/1.22.1"),
        ("date", "Tue, 24 Nov 2026 10:00:00 GMT"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "3"),
        ("connection", "keep-alive"),
    ])
}

fn rewrite_response(c: &mut Criterion) {
    let template = backend_response();
    c.bench_function("rewrite response headers, HTTP/1.1 backend", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| response(black_box(headers), false),
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, rewrite, rewrite_response);
criterion_main!(benches);
