//! The command line: `fjord run`, `fjord check`, `fjord init-storage`, `fjord version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::acme::storage::{Files, Prepared};
use crate::cluster;
use crate::config::{LogFormat, StaticConfig};
use crate::provider::kubernetes::Scope;
use crate::provider::manifests::ManifestsDir;
use crate::run::Source;
use crate::translate::{self, LastGood, translate};

#[derive(Debug, Parser)]
#[command(
    name = "fjord",
    version,
    about = "A lightweight ingress proxy for Kubernetes"
)]
/// The command line.
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Ingresses of a folder of manifests, or of the cluster, following changes.
    Run {
        /// Folder of *.yaml / *.yml manifests, read recursively.
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "kubernetes",
            conflicts_with = "kubernetes"
        )]
        manifests: Option<PathBuf>,
        /// Watch the Kubernetes API server (in-cluster service account, or a kubeconfig).
        #[arg(long)]
        kubernetes: bool,
        /// Kubeconfig file for --kubernetes; default `KUBECONFIG`, `~/.kube/config`, then
        /// the in-cluster service account.
        #[arg(long, value_name = "FILE", requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// Watch only this namespace (repeatable); default all.
        #[arg(long = "namespace", value_name = "NS", requires = "kubernetes")]
        namespaces: Vec<String>,
        /// Serve only Ingresses and IngressRoutes with these labels (a label selector, e.g.
        /// `team=web`).
        #[arg(long, value_name = "SELECTOR", requires = "kubernetes")]
        selector: Option<String>,
        /// Address (IP or host name) written to `status.loadBalancer` of fjord's Ingresses,
        /// by the replica holding the leader Lease (repeatable); none leaves status alone.
        #[arg(long = "publish-address", value_name = "ADDR", requires = "kubernetes")]
        publish: Vec<String>,
        /// Static configuration (entry points, timeouts, limits); defaults without it.
        /// Repeatable: a later file's keys override an earlier one's, maps merged.
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Log format; overrides `log.format` of the config.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Print every diagnostic for a folder of manifests; exit 1 if any object is rejected.
    Check {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Static configuration, for the IngressClass name it sets (repeatable, as for run).
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Create each ACME resolver's storage directory and give it to the user fjord runs as.
    /// Run as root (with CAP_CHOWN only) before `fjord run`: a DaemonSet's init container,
    /// for a hostPath the kubelet created as root's.
    InitStorage {
        /// Static configuration, for its `certificatesResolvers` (repeatable, as for run).
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The user and group `fjord run` runs as.
        #[arg(long, value_name = "UID:GID", default_value = "65532:65532")]
        owner: Owner,
    },
    /// Print the version.
    Version,
}

/// A numeric `UID:GID`.
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl std::str::FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (uid, gid) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not UID:GID"))?;
        let id = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        Ok(Self {
            uid: id(uid)?,
            gid: id(gid)?,
        })
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Version => {
            println!("fjord {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { dir, config } => check(dir, config),
        Command::InitStorage { config, owner } => init_storage(config, owner),
        Command::Run {
            manifests,
            kubernetes: _,
            kubeconfig,
            namespaces,
            selector,
            publish,
            config,
            log_format,
        } => {
            let source = match manifests {
                Some(dir) => Source::Manifests(dir),
                None => Source::Kubernetes(
                    Scope {
                        kubeconfig,
                        namespaces,
                        labels: selector,
                    },
                    cluster::Options::from_env(publish),
                ),
            };
            run(source, config, log_format)
        }
    }
}

fn run(source: Source, config: Vec<PathBuf>, log_format: Option<LogFormat>) -> ExitCode {
    let config = match StaticConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log.level, log_format.unwrap_or(config.log.format));
    // The control plane's runtime: traffic is served by the workers `run` starts.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run::run(source, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: PathBuf, config: Vec<PathBuf>) -> ExitCode {
    let config = match StaticConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord: {e:#}");
            return ExitCode::from(2);
        }
    };
    let loaded = match ManifestsDir::new(&dir).load() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fjord: cannot read manifests folder {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let options = translate::Options::from_config(&config);
    let translation = translate(&loaded.store, &options, &LastGood::default());
    let mut diagnostics: Vec<_> = loaded
        .diagnostics
        .into_iter()
        .chain(translation.diagnostics)
        .collect();
    diagnostics.sort();
    for d in &diagnostics {
        println!("{d}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    println!(
        "{}: {} objects, {} routes, {errors} errors, {} warnings",
        dir.display(),
        loaded.store.len(),
        translation.config.routes.len() + translation.config.rule_routes.len(),
        diagnostics.len() - errors,
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_storage(config: Vec<PathBuf>, owner: Owner) -> ExitCode {
    let config = match StaticConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord: {e:#}");
            return ExitCode::from(2);
        }
    };
    if config.certificates_resolvers.is_empty() {
        println!("no certificatesResolvers in the configuration: no storage to prepare");
    }
    let mut failed = false;
    for (name, resolver) in &config.certificates_resolvers {
        let field = format!("certificatesResolvers.{name}.acme.storage");
        let Owner { uid, gid } = owner;
        match Files::new(&resolver.acme.storage).prepare(uid, gid) {
            Ok(done) => {
                let done = match done {
                    Prepared::Created => format!("created, owned by {uid}:{gid}, mode 0700"),
                    Prepared::Handed => {
                        format!("handed to {uid}:{gid} with its contents, mode 0700")
                    }
                    Prepared::AlreadyOwned => format!("already owned by {uid}:{gid}, left alone"),
                };
                println!("{field} {}: {done}", resolver.acme.storage.display());
            }
            Err(e) => {
                eprintln!("fjord: {field}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
