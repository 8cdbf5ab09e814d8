//! fjord: a lightweight ingress reverse proxy for Kubernetes.
//!
//! The modules follow the data, from objects to a live route table, and a request's path. Read
//! the map top to bottom; imports only point down it, and `tests/modules.rs` keeps it so.
//!
//! ```text
//!  objects ─────────────────────────────────────────────────────────────────────────────────
//!  provider (folder | API server: crd objects) ─► translate (pure) ─► model ─► snapshot
//!     diagnostics name every rejected object       └ keeps the last good version    │ ArcSwap
//!  acme (orders, storage, challenges) ─► pem                                         ▼
//!  a request ───────────────────────────────────────────────────────────────────────────────
//!  listener ─► tls (SNI: snapshot's certificates, acme's) ─► server (hyper, workers, tcp)
//!    ─► proxy: admit (Host, ACME answer, readiness, TLS redirect)
//!            → route (router: host, path, rule)
//!            → middleware chain on the request (limits, auth with htpasswd / htdigest, rewrites)
//!            → exchange: balance (pick, health) → upstream (pooled client, upload) → forwarded
//!            → middleware chain on the response (headers, compression)
//!    ─► counted (bytes, a client that stops reading) ─► metrics, access_log
//! ```
//!
//! Beside the path: `model` is the plain data translation produces and the hot path reads;
//! `body` the response bodies; `breaker` a circuit breaker's condition, window and states;
//! `client_tls` fjord's TLS as a client; `clock` the hot path's clock; `replicas` how many
//! fjord replicas share a divided limit; `throttle` keeps warnings
//! from flooding the log; `error` the one place a failed request becomes a response; `admin`
//! serves metrics, health and the ACME state; `cluster` writes Ingress status and Events;
//! `config` is the static configuration; `run` wires it together and `cli` is the command line.
#![forbid(unsafe_code)]

mod access_log;
mod acme;
mod admin;
mod balance;
mod body;
pub mod breaker;
pub mod cli;
mod client_tls;
mod clock;
mod cluster;
#[expect(
    missing_docs,
    reason = "the static configuration's keys are documented in the README's reference"
)]
pub mod config;
mod counted;
#[expect(
    missing_docs,
    reason = "the CRDs' fields are Traefik's, field for field; their docs would rewrite the schemas"
)]
pub mod crd;
mod diagnostics;
mod error;
pub mod forwarded;
pub mod htdigest;
pub mod htpasswd;
mod listener;
pub mod metrics;
pub mod middleware;
pub mod model;
mod pem;
pub mod provider;
mod proxy;
pub mod replicas;
pub mod router;
pub mod rule;
pub mod run;
mod server;
pub mod snapshot;
mod tcp;
mod throttle;
mod tls;
pub mod translate;
mod upload;
mod upstream;
mod workers;
