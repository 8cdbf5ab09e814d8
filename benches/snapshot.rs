//! Building what a reload serves from 10,000 Ingresses (each with its Service and
//! EndpointSlice): translation, and compiling the snapshot. Run `cargo bench --bench snapshot`.
//! The target is under 50 ms for the two together; a change to EndpointSlices only takes the
//! cheaper path measured last (the config clone is part of the bench, not of fjord's path).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fjord::provider::manifests::parse_documents;
use fjord::provider::{Object, Store};
use fjord::snapshot::{self, Snapshot};
use fjord::translate::{LastGood, Options, refresh_endpoints, translate};

fn store(routes: usize) -> Store {
    let mut store = Store::default();
    for i in 0..routes {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{i}-abc\n  namespace: default\n  labels: {{kubernetes.io/service-name: s{i}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- addresses: [\"10.0.{}.{}\"]\n  conditions: {{ready: true}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i{i}, namespace: default}}\nspec:\n  ingressClassName: fjord\n  rules:\n  - host: host-{i}.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: s{i}, port: {{number: 80}}}}}}\n",
            i / 250,
            i % 250
        );
        for doc in parse_documents(&text).unwrap() {
            let object: Object = match doc["kind"].as_str().unwrap() {
                "Service" => Object::Service(serde_json::from_value(doc).unwrap()),
                "EndpointSlice" => Object::EndpointSlice(serde_json::from_value(doc).unwrap()),
                _ => Object::Ingress(serde_json::from_value(doc).unwrap()),
            };
            store.upsert(object);
        }
    }
    store
}

fn build(c: &mut Criterion) {
    let store = store(10_000);
    let options = Options::from_config(&fjord::config::StaticConfig::default());
    let translation = translate(&store, &options, &LastGood::default());
    assert_eq!(translation.config.routes.len(), 10_000);
    let config = std::sync::Arc::new(translation.config.clone());
    let mut group = c.benchmark_group("10k routes");
    group.sample_size(10);
    group.bench_function("translate", |b| {
        b.iter(|| translate(black_box(&store), &options, &LastGood::default()));
    });
    group.bench_function("snapshot build", |b| {
        b.iter(|| Snapshot::build(black_box(&config), None, snapshot::Options::default()));
    });
    let previous = Snapshot::build(&config, None, snapshot::Options::default());
    group.bench_function("snapshot rebuild (backends kept)", |b| {
        b.iter(|| {
            Snapshot::build(
                black_box(&config),
                Some(&previous),
                snapshot::Options::default(),
            )
        });
    });
    // The cheap path for a change to EndpointSlices only: endpoints resolved again, then the
    // rebuild that keeps unchanged backends.
    group.bench_function("endpoints-only refresh + rebuild", |b| {
        b.iter(|| {
            let mut config = translation.config.clone();
            refresh_endpoints(black_box(&store), &mut config);
            Snapshot::build(
                &std::sync::Arc::new(config),
                Some(&previous),
                snapshot::Options::default(),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
