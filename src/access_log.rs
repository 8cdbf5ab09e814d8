//! The access log: one line per request on stdout, JSON or Common Log Format, sent when the
//! response body ends (so bytes are the bytes sent) and formatted and written by its own thread
//! from a bounded queue, so neither formatting nor a slow stdout slows a request (a full queue
//! drops the line and counts it in `fjord_access_log_dropped_total`).

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use http::uri::{Authority, Uri};
use http::{HeaderValue, Method, Version};

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::snapshot::Target;

/// Lines queued for the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;

/// One request, as the access log records it: owned, as it outlives the handler and is
/// formatted on the writer thread.
#[derive(Debug)]
pub(crate) struct Record {
    /// When the response body ended.
    pub ended: jiff::Timestamp,
    pub entrypoint: Arc<str>,
    /// Where it was routed: the route's source object (`namespace/name`) and its service.
    pub target: Option<Arc<Target>>,
    pub endpoint: Option<Authority>,
    pub method: Method,
    pub host: String,
    pub uri: Uri,
    pub version: Version,
    pub status: u16,
    /// Time to the response head.
    pub duration: Duration,
    /// Response body bytes sent; set when the body ends.
    pub bytes: u64,
    pub client_ip: IpAddr,
    pub user_agent: Option<HeaderValue>,
    pub request_id: HeaderValue,
}

/// The sending side of the access log, cloned into each response that will log a line.
#[derive(Clone, Debug)]
pub(crate) struct AccessLog {
    tx: SyncSender<Box<Record>>,
}

/// How the writer thread formats lines.
#[derive(Clone, Copy)]
struct Format {
    format: AccessLogFormat,
    redact_query: bool,
}

impl AccessLog {
    /// Starts the writer thread; `None` when the access log is off.
    pub(crate) fn start(config: &AccessLogConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let (tx, rx) = sync_channel(QUEUE);
        let format = Format {
            format: config.format,
            redact_query: config.redact_query,
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write(rx, format))
            .ok()?;
        Some(Self { tx })
    }

    pub(crate) fn log(&self, r: Box<Record>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(r) {
            crate::metrics::METRICS.access_log_dropped.inc();
        }
    }
}

impl Format {
    fn line(self, r: &Record) -> String {
        let now = r.ended;
        let query = match r.uri.query() {
            Some(_) if self.redact_query => "?REDACTED".to_owned(),
            Some(q) => format!("?{q}"),
            None => String::new(),
        };
        let path = r.uri.path();
        let router = r.target.as_deref().map(|t| &*t.source);
        let service = r.target.as_deref().map(|t| &*t.backend.name);
        let user_agent = r
            .user_agent
            .as_ref()
            .and_then(|u| u.to_str().ok())
            .unwrap_or("-");
        let request_id = r.request_id.to_str().unwrap_or("-");
        let protocol = match r.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        match self.format {
            AccessLogFormat::Json => serde_json::json!({
                "time": now.to_string(),
                "entrypoint": &*r.entrypoint,
                "router": router,
                "service": service,
                "endpoint": r.endpoint.as_ref().map(Authority::as_str),
                "method": r.method.as_str(),
                "host": r.host,
                "path": format!("{path}{query}"),
                "protocol": protocol,
                "status": r.status,
                "duration_ms": r.duration.as_secs_f64() * 1e3,
                "bytes": r.bytes,
                "client_ip": r.client_ip.to_string(),
                "user_agent": user_agent,
                "request_id": request_id,
            })
            .to_string(),
            AccessLogFormat::Common => format!(
                "{} - - [{}] \"{} {path}{query} {protocol}\" {} {} \"-\" \"{}\" {request_id} \"{}\" \"{}\" {}ms",
                r.client_ip,
                now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                r.method,
                r.status,
                r.bytes,
                user_agent.replace('"', "'"),
                router.unwrap_or("-"),
                service.unwrap_or("-"),
                r.duration.as_millis(),
            ),
        }
    }
}

fn write(rx: Receiver<Box<Record>>, format: Format) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(record) = rx.recv() {
        let _ = writeln!(out, "{}", format.line(&record));
        // Flush once the queue is drained: batches under load, no delay when quiet.
        while let Ok(more) = rx.try_recv() {
            let _ = writeln!(out, "{}", format.line(&more));
        }
        let _ = out.flush();
    }
}
