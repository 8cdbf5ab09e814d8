//! Debian's `redis-server`, started on a loopback port the test chose, with a password and
//! no persistence (a restart loses every bucket and script, as a real one without AOF does);
//! optionally TLS-only, or one of a Redis Cluster's nodes. `redis-cli` asks it what it saw.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pebble::free_port;

pub(crate) struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub password: String,
    /// The CA, certificate and key files, when the server speaks TLS only.
    tls: Option<[PathBuf; 3]>,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// A plain-TCP server requiring `password`.
    pub(crate) fn start(password: &str) -> Redis {
        Redis::spawn(password, None)
    }

    /// A TLS-only server requiring `password` and a client certificate signed by `ca`, with
    /// `cert` and `key` (PEM, also signed by `ca`) as its own and its `redis-cli`'s.
    pub(crate) fn start_tls(password: &str, ca: &str, cert: &str, key: &str) -> Redis {
        Redis::spawn(password, Some((ca, cert, key)))
    }

    /// A Redis Cluster of `n` primaries requiring `password`, its slots spread over them,
    /// once every node says the cluster is ok.
    pub(crate) fn start_cluster(password: &str, n: usize) -> Vec<Redis> {
        let nodes: Vec<Redis> = (0..n)
            .map(|_| {
                let mut node = Redis::spawn(password, None);
                node.kill();
                let bus = free_port();
                node.args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &bus.to_string(),
                    ]
                    .map(str::to_owned),
                );
                node.restart();
                node
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--no-auth-warning", "-a", password, "--cluster", "create"]);
        create.args(nodes.iter().map(Redis::endpoint));
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        nodes
    }

    fn spawn(password: &str, tls: Option<(&str, &str, &str)>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ]
        .map(str::to_owned)
        .into();
        args.extend(["--dir".into(), dir.path().display().to_string()]);
        let mut ca_file = None;
        match tls {
            None => args.extend(["--port".into(), port.to_string()]),
            Some((ca, cert, key)) => {
                let write = |name: &str, text: &str| {
                    let path = dir.path().join(name);
                    std::fs::write(&path, text).unwrap();
                    path.display().to_string()
                };
                let files = [
                    write("ca.pem", ca),
                    write("cert.pem", cert),
                    write("key.pem", key),
                ];
                args.extend([
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    files[1].clone(),
                    "--tls-key-file".into(),
                    files[2].clone(),
                    "--tls-ca-cert-file".into(),
                    files[0].clone(),
                    "--tls-auth-clients".into(),
                    "yes".into(),
                ]);
                ca_file = Some(files.map(PathBuf::from));
            }
        }
        let mut redis = Redis {
            child: None,
            port,
            password: password.to_owned(),
            tls: ca_file,
            args,
            _dir: dir,
        };
        redis.restart();
        redis
    }

    /// Starts the server again (after [`Self::kill`]) on the same port, empty.
    pub(crate) fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL): no goodbye to its clients.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `host:port`, for a Middleware.
    pub(crate) fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What `redis-cli` prints for `args`.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--no-auth-warning", "-a", &self.password]);
        if let Some([ca, cert, key]) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(ca);
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times Redis ran the rate-limit script (by SHA or in full).
    pub(crate) fn script_calls(&self) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        ["cmdstat_evalsha:", "cmdstat_eval:"]
            .iter()
            .filter_map(|prefix| {
                let line = stats.lines().find(|l| l.starts_with(prefix))?;
                let calls = line.split("calls=").nth(1)?.split(',').next()?;
                calls.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
