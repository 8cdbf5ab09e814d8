//! Run: `cargo run --example quickstart`, then `curl -H 'Host: echo.localhost' http://127.0.0.1:8080/hello`.
//!
//! Starts the example backend (an echo server on 127.0.0.1:9101) and fjord on the manifests in
//! `examples/quickstart/manifests/` with the default configuration: traffic on `:8080`, health
//! on `127.0.0.1:9180`. Edit the manifests while it runs: changes apply within a second. The
//! dashboard is switched on, on that loopback admin address: http://127.0.0.1:9180/dashboard/.

// The tests' echo backend; they use more of it than this example does.
#[allow(dead_code)]
#[path = "../../tests/support/echo.rs"]
mod echo;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/manifests");
    tokio::runtime::Runtime::new()?.block_on(async {
        let backend = echo::Echo::start("echo", "127.0.0.1:9101".parse()?).await?;
        tracing::info!(address = %backend.addr, "example backend listening");
        let mut config = fjord::config::StaticConfig::default();
        config.api.dashboard = true;
        fjord::run::run(fjord::run::Source::Manifests(manifests), config).await
    })
}
