//! fjord: a lightweight ingress reverse proxy for Kubernetes.
//!
//! The modules follow the data, from objects to a live route table, and a request's path:
//!
//! ```text
//!  provider ─► translate ─► snapshot (ArcSwap) ◄── reload on change
//!  (objects)   (pure: Config + diagnostics)   │
//!                                              ▼
//!  listener ─► server ─► proxy: router ─► balance ─► upstream ─► back, through forwarded
//!  (accept)    (hyper)        (host, path)  (endpoint)  (pooled client)
//! ```
//!
//! `error` is the one place a failed request becomes a response; `tcp` is the socket both
//! sides are read and written through; `admin` serves health and readiness; `run` wires it
//! together and `cli` is the command line.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod balance;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod counted;
pub mod crd;
pub mod diagnostics;
pub mod error;
pub mod forwarded;
pub mod listener;
pub mod metrics;
pub mod middleware;
pub mod provider;
pub mod proxy;
pub mod router;
pub mod rule;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod tcp;
pub mod tls;
pub mod translate;
pub mod upstream;
pub mod workers;
