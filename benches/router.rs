//! Route lookup cost as the table grows, and with rule routes: run `cargo bench --bench router`. Lookup must not grow
//! with the number of hosts (hash lookups, never a scan), and stays within a few probes per path
//! element.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fjord::model::{HostMatch, PathMatch};
use fjord::router::Router;

/// `hosts` exact hosts with `paths_per_host` prefix paths each, plus a wildcard per 10 hosts.
fn table(hosts: usize, paths_per_host: usize) -> Router<usize> {
    let mut routes = Vec::new();
    for h in 0..hosts {
        for p in 0..paths_per_host {
            routes.push((
                HostMatch::Exact(format!("host-{h}.example.com")),
                PathMatch::Prefix(format!("/api/v{p}/items")),
                h * paths_per_host + p,
            ));
        }
        if h % 10 == 0 {
            routes.push((
                HostMatch::Wildcard(format!("zone-{h}.example.com")),
                PathMatch::Prefix(String::new()),
                h,
            ));
        }
    }
    Router::new(routes, None)
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route lookup by host count");
    for hosts in [100, 1_000, 10_000] {
        let router = table(hosts, 1);
        let host = format!("host-{}.example.com", hosts / 2);
        group.bench_with_input(BenchmarkId::from_parameter(hosts), &host, |b, host| {
            b.iter(|| router.route(black_box(host), black_box("/api/v0/items/42")));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("route lookup, 10k paths on one host");
    let router = table(1, 10_000);
    for (name, path) in [
        ("hit", "/api/v5000/items/42/detail"),
        ("miss", "/static/css/site.css"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| router.route(black_box("host-0.example.com"), black_box(path)));
        });
    }
    group.finish();

    let router = table(10_000, 1);
    c.bench_function("route lookup, wildcard, 10k hosts", |b| {
        b.iter(|| router.route(black_box("web.zone-5000.example.com"), black_box("/")));
    });
    c.bench_function("route lookup, mixed-case host with port, 10k hosts", |b| {
        b.iter(|| {
            router.route(
                black_box("Host-5000.Example.com:8080"),
                black_box("/api/v0/items"),
            )
        });
    });
}

/// 900 rules pinned to their hosts plus 100 that apply to any host (and so are tried for every
/// request): the rule router's worst realistic case.
fn rule_routes(c: &mut Criterion) {
    let mut rules = Vec::new();
    for i in 0..900 {
        let rule =
            format!("Host(`h{i}.example.com`) && PathPrefix(`/api`) && Header(`X-Env`, `canary`)");
        rules.push((fjord::rule::parse(&rule).unwrap(), Vec::new(), i));
    }
    for i in 0..100 {
        let rule = format!("PathPrefix(`/tenant-{i}`) && Method(`POST`)");
        rules.push((fjord::rule::parse(&rule).unwrap(), Vec::new(), 900 + i));
    }
    let router = table(1, 1).with_rules(rules);
    let headers = http::HeaderMap::from_iter([(
        http::HeaderName::from_static("x-env"),
        http::HeaderValue::from_static("canary"),
    )]);
    let view = fjord::rule::RequestView {
        host: "h450.example.com",
        path: "/api/items",
        query: None,
        method: &http::Method::GET,
        headers: &headers,
        client_ip: "10.0.0.1".parse().unwrap(),
    };
    c.bench_function("route lookup, 1k rule routes (100 any-host), hit", |b| {
        b.iter(|| router.route_request(black_box(&view), black_box("web")));
    });
    // No rule matches: the host's own rules and all 100 any-host rules are tried.
    let miss = fjord::rule::RequestView {
        path: "/other",
        ..view
    };
    c.bench_function("route lookup, 1k rule routes (100 any-host), miss", |b| {
        b.iter(|| router.route_request(black_box(&miss), black_box("web")));
    });
}

criterion_group!(benches, lookup, rule_routes);
criterion_main!(benches);
