//! Pebble (Let's Encrypt's test CA) and pebble-challtestsrv (its mock DNS, answering every name
//! with 127.0.0.1), started on loopback ports of the test's choosing and stopped on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::tls::Ca;

/// A free loopback port (bound, then released for the process that needs it), outside the
/// range the kernel picks ports from.
pub(crate) fn free_port() -> u16 {
    loop {
        // Below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0
        // (a listener, or the source of a connection a test beside makes) could otherwise be
        // taken between this choice and the server binding it.
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port free on every one of `ips` (replicas on 127.0.0.1, .2 and .3 share their ports):
/// one free on the first alone may be held on another by a test running beside.
pub(crate) fn free_port_on(ips: &[&str]) -> u16 {
    loop {
        let port = free_port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
}

pub(crate) struct Pebble {
    pebble: Child,
    dns: Child,
    /// pebble-challtestsrv's management API, where names are pointed at addresses.
    dns_management: SocketAddr,
    /// Where Pebble writes its log.
    log: PathBuf,
    /// The ACME directory URL.
    pub directory: String,
    /// Trust for Pebble's own HTTPS listener (not its issuing root).
    pub listener_ca: PathBuf,
    management: SocketAddr,
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
    /// 127.0.0.1, issuing certificates valid for `validity` seconds (Pebble's default if None).
    pub(crate) fn start(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let listener_ca = dir.path().join("ca.pem");
        std::fs::write(&listener_ca, &ca.pem).unwrap();

        let (dns_port, dns_mgmt, listen, management) =
            (free_port(), free_port(), free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = validity {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();

        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble) is installed");
        let log = dir.path().join("pebble.log");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble) is installed");
        let p = Pebble {
            pebble,
            dns,
            dns_management: SocketAddr::from(([127, 0, 0, 1], dns_mgmt)),
            log,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            listener_ca,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            ca,
            _dir: dir,
        };
        for port in [listen, management, dns_port] {
            wait_listening(port);
        }
        p
    }

    /// Points `host` at `ip` in the mock DNS the CA validates through (every other name is
    /// 127.0.0.1).
    pub(crate) fn resolve(&self, host: &str, ip: &str) {
        // add-a adds to what a name had: clear it first.
        self.manage("/clear-a", &serde_json::json!({"host": host}));
        self.manage(
            "/add-a",
            &serde_json::json!({"host": host, "addresses": [ip]}),
        );
    }

    /// POSTs `body` to pebble-challtestsrv's management API at `path`.
    fn manage(&self, path: &str, body: &serde_json::Value) {
        let body = body.to_string();
        let mut stream = TcpStream::connect(self.dns_management).unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut stream, &mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }

    /// What Pebble logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the CA (and its DNS), as an outage would.
    pub(crate) fn stop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The root that signs the certificates Pebble issues (from its management API).
    pub(crate) async fn issuing_root(&self) -> CertificateDer<'static> {
        let config = super::tls::client_config(&[self.ca.der()], &[b"http/1.1"]);
        let seen = super::tls::https_get(self.management, "localhost", config, "/roots/0")
            .await
            .expect("Pebble's management API");
        assert_eq!(seen.reply.status, 200, "{}", seen.reply.body);
        CertificateDer::from_pem_slice(seen.reply.body.as_bytes()).expect("a PEM root")
    }
}

/// Waits (up to 30 s) until something accepts connections on 127.0.0.1:`port`.
pub(crate) fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
