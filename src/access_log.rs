//! The access log: one line per request on stdout, JSON or Common Log Format, written by its own
//! thread from a bounded queue, so a slow stdout never slows a request (a full queue drops the
//! line and counts it in `fjord_access_log_dropped_total`).

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat};

/// Lines queued for the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;

/// One request, as the access log records it.
#[derive(Debug)]
pub struct Record<'a> {
    pub entrypoint: &'a str,
    /// The object whose route matched (`namespace/name`).
    pub router: Option<&'a str>,
    pub service: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub protocol: &'a str,
    pub status: u16,
    pub duration: Duration,
    /// Declared response body length (0 when streamed without one).
    pub bytes: u64,
    pub client_ip: IpAddr,
    pub user_agent: &'a str,
    pub request_id: &'a str,
}

#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: AccessLogFormat,
    redact_query: bool,
}

impl AccessLog {
    /// Starts the writer thread; `None` when the access log is off.
    pub fn start(config: &AccessLogConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write(rx))
            .ok()?;
        Some(Self {
            tx,
            format: config.format,
            redact_query: config.redact_query,
        })
    }

    pub fn log(&self, r: &Record<'_>) {
        let line = self.format(r);
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            crate::metrics::METRICS.access_log_dropped.inc();
        }
    }

    fn format(&self, r: &Record<'_>) -> String {
        let query = match r.query {
            Some(_) if self.redact_query => "?REDACTED".to_owned(),
            Some(q) => format!("?{q}"),
            None => String::new(),
        };
        let now = jiff::Timestamp::now();
        match self.format {
            AccessLogFormat::Json => serde_json::json!({
                "time": now.to_string(),
                "entrypoint": r.entrypoint,
                "router": r.router,
                "service": r.service,
                "endpoint": r.endpoint,
                "method": r.method,
                "host": r.host,
                "path": format!("{}{query}", r.path),
                "protocol": r.protocol,
                "status": r.status,
                "duration_ms": r.duration.as_secs_f64() * 1e3,
                "bytes": r.bytes,
                "client_ip": r.client_ip.to_string(),
                "user_agent": r.user_agent,
                "request_id": r.request_id,
            })
            .to_string(),
            AccessLogFormat::Common => format!(
                "{} - - [{}] \"{} {}{query} {}\" {} {} \"-\" \"{}\" {} \"{}\" \"{}\" {}ms",
                r.client_ip,
                now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                r.method,
                r.path,
                r.protocol,
                r.status,
                r.bytes,
                r.user_agent.replace('"', "'"),
                r.request_id,
                r.router.unwrap_or("-"),
                r.service.unwrap_or("-"),
                r.duration.as_millis(),
            ),
        }
    }
}

fn write(rx: Receiver<String>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(line) = rx.recv() {
        let _ = writeln!(out, "{line}");
        // Flush once the queue is drained: batches under load, no delay when quiet.
        while let Ok(more) = rx.try_recv() {
            let _ = writeln!(out, "{more}");
        }
        let _ = out.flush();
    }
}
