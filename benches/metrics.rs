//! Recording one request's metrics (entry point and service series): run
//! `cargo bench --bench metrics`. Label values are borrowed strings, so nothing is allocated; the
//! cost is the label-set lookup per series.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fjord::metrics::METRICS;

fn record(c: &mut Criterion) {
    c.bench_function("record one request (entry point + service)", |b| {
        b.iter(|| {
            METRICS.request(
                black_box(["web", "200", "GET", "http"]),
                Duration::from_micros(150),
                0,
                512,
            );
            METRICS.service(
                black_box("default/web:80"),
                "200",
                "GET",
                Duration::from_micros(140),
            );
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
