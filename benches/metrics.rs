//! Recording one request's metrics (entry point and service series), as the proxy does: run
//! `cargo bench --bench metrics`. The series' own labels are resolved when the entry point and
//! the snapshot are built, so this measures the per-request part: finding the cached handles
//! for the outcome and the atomic adds. For comparison, the same through `with_label_values`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fjord::metrics::{METRICS, MethodLabel, Outcome};
use http::{Method, StatusCode};
use prometheus::{IntCounterVec, Opts};

fn record(c: &mut Criterion) {
    let entry = METRICS.entrypoint("web");
    let service = METRICS.service("default/web:80");
    c.bench_function("record one request (entry point + service)", |b| {
        b.iter(|| {
            let outcome = Outcome {
                code: black_box(StatusCode::OK),
                method: MethodLabel::of(black_box(&Method::GET)),
                websocket: false,
            };
            let took = Duration::from_micros(150);
            for series in [&entry, &service] {
                let h = series.get(outcome);
                h.record(took);
                h.bytes(0, 512);
            }
        });
    });

    // The per-request cost of resolving labels each time, as a baseline: one counter family.
    let vec = IntCounterVec::new(Opts::new("baseline", "b"), &["service", "code", "method"])
        .expect("valid metric");
    c.bench_function("with_label_values, one counter (baseline)", |b| {
        b.iter(|| {
            vec.with_label_values(black_box(&["default/web:80", "200", "GET"]))
                .inc();
        });
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
