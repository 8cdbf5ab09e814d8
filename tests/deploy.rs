//! `deploy/` as a cluster receives it: every kustomization and overlay renders with `kubectl
//! kustomize` and validates (`deploy/validate`: Kubernetes 1.33 schemas, fjord's CRDs); the pods
//! pass the Pod Security level their namespace enforces ("restricted" for the base), checked by
//! the rules of the standard, with a checker shown to fail on each violation; the
//! NetworkPolicies admit exactly what a table of (from, to, port) says.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every directory a user applies: the base, each overlay, Flux's.
fn kustomizations() -> Vec<PathBuf> {
    let deploy = root().join("deploy");
    let mut dirs = vec![deploy.clone(), deploy.join("flux")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    dirs.extend(overlays);
    dirs
}

/// `kubectl kustomize dir`, as YAML and as objects.
fn render(dir: &Path) -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = fjord::provider::manifests::parse_documents(&yaml).unwrap();
    (yaml, docs)
}

fn validate(name: &str, yaml: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let out = Command::new(root().join("deploy/validate"))
        .arg(file.path())
        .output()
        .expect("deploy/validate (python3 with kubernetes-validate: .ci/run installs it)");
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_kustomization_renders_and_validates() {
    for dir in kustomizations() {
        let (yaml, docs) = render(&dir);
        assert!(!docs.is_empty(), "{}", dir.display());
        validate(&dir.display().to_string(), &yaml);
    }
    // Each component is rendered by some overlay, so none goes unchecked.
    let overlays: String = kustomizations()
        .iter()
        .map(|d| std::fs::read_to_string(d.join("kustomization.yaml")).unwrap())
        .collect();
    for entry in std::fs::read_dir(root().join("deploy/components")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            overlays.contains(&format!("components/{name}")),
            "deploy/components/{name} is in no overlay"
        );
    }
    // The examples too: fjord's kinds against its CRDs, the rest against Kubernetes'.
    let mut examples = String::new();
    for dir in ["examples/canary", "examples/quickstart/manifests"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                examples.push_str("---\n");
                examples.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    validate("examples", &examples);
}

#[test]
fn the_validator_names_what_is_wrong() {
    let bad = "apiVersion: fjord.dev/v1alpha1\nkind: Middleware\nmetadata: {name: m}\nspec:\n  rateLimit: {averge: 3}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bad).unwrap();
    let out = Command::new(root().join("deploy/validate"))
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("Middleware /m: spec.rateLimit") && text.contains("'averge' was unexpected"),
        "{text}"
    );
    assert!(
        text.contains("Service /s: spec") && text.contains("'portz' was unexpected"),
        "{text}"
    );
}

// ---- Pod Security Standards, as https://kubernetes.io/docs/concepts/security/pod-security-standards/ words them.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

/// Capabilities "baseline" lets a container add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// Sysctls "baseline" allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// Volume types "restricted" allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn containers(pod: &Value) -> Vec<&Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Every rule of `level` that pod spec `pod` breaks.
fn pod_security(pod: &Value, level: Level) -> Vec<String> {
    let mut broken = Vec::new();
    if level == Level::Privileged {
        return broken;
    }
    let psc = &pod["securityContext"];
    let cs = containers(pod);
    let name = |c: &Value| c["name"].as_str().unwrap_or("?").to_owned();
    // Baseline.
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[key] == true {
            broken.push(format!("{key}: true"));
        }
    }
    let contexts = std::iter::once(("pod".to_owned(), psc))
        .chain(cs.iter().map(|c| (name(c), &c["securityContext"])));
    for (who, sc) in contexts {
        if sc["windowsOptions"]["hostProcess"] == true {
            broken.push(format!("{who}: hostProcess"));
        }
        if sc["seccompProfile"]["type"] == "Unconfined" {
            broken.push(format!("{who}: seccompProfile Unconfined"));
        }
        if let Some(t) = sc["appArmorProfile"]["type"].as_str()
            && !matches!(t, "RuntimeDefault" | "Localhost")
        {
            broken.push(format!("{who}: appArmorProfile {t}"));
        }
        let se = &sc["seLinuxOptions"];
        if !SELINUX_TYPES.contains(&se["type"].as_str().unwrap_or(""))
            || !se["user"].is_null()
            || !se["role"].is_null()
        {
            broken.push(format!("{who}: seLinuxOptions {se}"));
        }
    }
    for c in &cs {
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            broken.push(format!("{}: privileged", name(c)));
        }
        for cap in strs(&sc["capabilities"]["add"]) {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                broken.push(format!("{}: adds capability {cap}", name(c)));
            }
        }
        if sc["procMount"].as_str().is_some_and(|m| m != "Default") {
            broken.push(format!("{}: procMount", name(c)));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().is_some_and(|h| h != 0) {
                broken.push(format!("{}: hostPort {}", name(c), p["hostPort"]));
            }
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        if v.get("hostPath").is_some() {
            broken.push(format!("volume {}: hostPath", v["name"]));
        }
    }
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s["name"].as_str().unwrap_or("")) {
            broken.push(format!("sysctl {}", s["name"]));
        }
    }
    if level < Level::Restricted {
        return broken;
    }
    // Restricted.
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        if !kinds
            .iter()
            .all(|k| RESTRICTED_VOLUMES.contains(&k.as_str()))
        {
            broken.push(format!("volume {}: type {kinds:?}", v["name"]));
        }
    }
    let seccomp_ok = |t: &Value| t == "RuntimeDefault" || t == "Localhost";
    for c in &cs {
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"] != false {
            broken.push(format!(
                "{}: allowPrivilegeEscalation is not false",
                name(c)
            ));
        }
        let non_root = match &sc["runAsNonRoot"] {
            Value::Bool(b) => *b,
            _ => psc["runAsNonRoot"] == true,
        };
        if !non_root {
            broken.push(format!("{}: runAsNonRoot is not true", name(c)));
        }
        if sc["runAsUser"] == 0 {
            broken.push(format!("{}: runAsUser 0", name(c)));
        }
        let seccomp = match &sc["seccompProfile"]["type"] {
            Value::Null => &psc["seccompProfile"]["type"],
            t => t,
        };
        if !seccomp_ok(seccomp) {
            broken.push(format!(
                "{}: seccompProfile is not RuntimeDefault or Localhost",
                name(c)
            ));
        }
        let caps = &sc["capabilities"];
        if !strs(&caps["drop"]).contains(&"ALL") {
            broken.push(format!("{}: capabilities do not drop ALL", name(c)));
        }
        if strs(&caps["add"]).iter().any(|c| *c != "NET_BIND_SERVICE") {
            broken.push(format!(
                "{}: adds a capability other than NET_BIND_SERVICE",
                name(c)
            ));
        }
    }
    if psc["runAsUser"] == 0 {
        broken.push("pod: runAsUser 0".into());
    }
    broken
}

/// The level `namespace` enforces in `docs` (privileged, the default, when unlabelled).
fn enforced(docs: &[Value], namespace: &str) -> Level {
    let label = docs
        .iter()
        .find(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == namespace)
        .map(|d| d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].clone());
    match label.as_ref().and_then(Value::as_str) {
        Some("restricted") => Level::Restricted,
        Some("baseline") => Level::Baseline,
        _ => Level::Privileged,
    }
}

fn pod_templates(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("DaemonSet" | "Deployment" | "StatefulSet")
            )
        })
        .map(|d| {
            let ns = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            (ns, &d["spec"]["template"]["spec"])
        })
        .collect()
}

#[test]
fn pods_pass_the_pod_security_level_their_namespace_enforces() {
    for dir in kustomizations() {
        let (_, docs) = render(&dir);
        for (ns, pod) in pod_templates(&docs) {
            let level = enforced(&docs, &ns);
            let broken = pod_security(pod, level);
            assert!(
                broken.is_empty(),
                "{}: {level:?}: {broken:?}",
                dir.display()
            );
            // Whatever the namespace allows, fjord's pods keep every restriction but the
            // host ports of the variant without a load balancer.
            let broken: Vec<String> = pod_security(pod, Level::Restricted)
                .into_iter()
                .filter(|b| !b.contains("hostPort"))
                .collect();
            assert!(broken.is_empty(), "{}: {broken:?}", dir.display());
        }
    }
    let (_, base) = render(&root().join("deploy"));
    assert_eq!(enforced(&base, "fjord-system"), Level::Restricted);
    let (_, host_ports) = render(&root().join("deploy/overlays/without-load-balancer"));
    assert_eq!(enforced(&host_ports, "fjord-system"), Level::Privileged);
    assert!(!host_ports.iter().any(|d| d["kind"] == "Service"));
}

/// A change to a pod spec.
type Change = fn(&mut Value);

#[test]
fn the_pod_security_check_fails_on_each_violation() {
    let (_, docs) = render(&root().join("deploy"));
    let (_, pod) = pod_templates(&docs).pop().unwrap();
    assert!(pod_security(pod, Level::Restricted).is_empty());
    let broken = |change: Change| {
        let mut p = pod.clone();
        change(&mut p);
        pod_security(&p, Level::Restricted)
    };
    let cases: [(&str, Change); 10] = [
        ("hostPort", |p| {
            p["containers"][0]["ports"][0]["hostPort"] = json!(80);
        }),
        ("seccompProfile", |p| {
            p["securityContext"]["seccompProfile"] = Value::Null;
            p["containers"][0]["securityContext"]["seccompProfile"] = Value::Null;
        }),
        ("adds capability NET_ADMIN", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["NET_ADMIN"]);
        }),
        ("runAsUser 0", |p| {
            p["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        }),
        ("runAsNonRoot", |p| {
            p["securityContext"]["runAsNonRoot"] = json!(false);
            p["containers"][0]["securityContext"]["runAsNonRoot"] = Value::Null;
        }),
        ("allowPrivilegeEscalation", |p| {
            p["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        }),
        ("hostPath", |p| {
            p["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "node", "hostPath": {"path": "/var/lib/fjord"}}));
        }),
        ("hostNetwork", |p| {
            p["hostNetwork"] = json!(true);
        }),
        ("privileged", |p| {
            p["containers"][0]["securityContext"]["privileged"] = json!(true);
        }),
        ("drop ALL", |p| {
            p["containers"][0]["securityContext"]["capabilities"]["drop"] = json!([]);
        }),
    ];
    for (what, change) in cases {
        let found = broken(change);
        assert!(
            found.iter().any(|b| b.contains(what)),
            "{what} went unnoticed: {found:?}"
        );
    }
}

// ---- NetworkPolicy, as the Kubernetes API reference defines it.

/// One end of a connection: a pod (namespace, its namespace's labels, its labels, named
/// ports) or an address outside the cluster.
#[derive(Clone)]
enum End {
    Pod {
        ns: &'static str,
        labels: BTreeMap<String, String>,
        ip: IpAddr,
        ports: BTreeMap<String, u16>,
    },
    Outside(IpAddr),
}

fn pod(ns: &'static str, labels: &[(&str, &str)], ip: &str) -> End {
    End::Pod {
        ns,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ip: ip.parse().unwrap(),
        ports: BTreeMap::new(),
    }
}

fn fjord() -> End {
    End::Pod {
        ns: "fjord-system",
        labels: [("app.kubernetes.io/name".into(), "fjord".into())].into(),
        ip: "10.42.0.10".parse().unwrap(),
        ports: [
            ("web".into(), 8080),
            ("websecure".into(), 8443),
            ("admin".into(), 9180),
        ]
        .into(),
    }
}

fn ns_labels(ns: &str) -> BTreeMap<String, String> {
    [("kubernetes.io/metadata.name".into(), ns.into())].into()
}

fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let matched = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = labels.get(e["key"].as_str().unwrap());
            let values = strs(&e["values"]);
            match e["operator"].as_str().unwrap() {
                "In" => value.is_some_and(|v| values.contains(&v.as_str())),
                "NotIn" => value.is_none_or(|v| !values.contains(&v.as_str())),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("operator {other}"),
            }
        });
    matched && expressions
}

/// Whether `peer` (a rule's `from`/`to` entry, of a policy in `policy_ns`) names `end`.
fn names(peer: &Value, policy_ns: &str, end: &End) -> bool {
    if let Some(block) = peer.get("ipBlock") {
        let ip = match end {
            End::Pod { ip, .. } | End::Outside(ip) => *ip,
        };
        let cidr: IpNet = block["cidr"].as_str().unwrap().parse().unwrap();
        let except = strs(&block["except"])
            .into_iter()
            .any(|e| e.parse::<IpNet>().unwrap().contains(&ip));
        return cidr.contains(&ip) && !except;
    }
    let End::Pod { ns, labels, .. } = end else {
        return false;
    };
    let ns_ok = match peer.get("namespaceSelector") {
        Some(sel) => selects(sel, &ns_labels(ns)),
        None => *ns == policy_ns,
    };
    let pod_ok = peer
        .get("podSelector")
        .is_none_or(|sel| selects(sel, labels));
    ns_ok && pod_ok
}

/// Whether a rule's `ports` admit `port` on `dest` (named ports are the destination pod's).
fn admits_port(ports: &Value, dest: &End, port: u16, protocol: &str) -> bool {
    let Some(list) = ports.as_array().filter(|l| !l.is_empty()) else {
        return true;
    };
    list.iter().any(|p| {
        let proto_ok = p["protocol"].as_str().unwrap_or("TCP") == protocol;
        let number = match &p["port"] {
            Value::Null => return proto_ok,
            Value::Number(n) => u16::try_from(n.as_u64().unwrap()).ok(),
            Value::String(name) => match dest {
                End::Pod { ports, .. } => ports.get(name).copied(),
                End::Outside(_) => None,
            },
            other => panic!("port {other}"),
        };
        let end = p["endPort"].as_u64().and_then(|e| u16::try_from(e).ok());
        proto_ok
            && number.is_some_and(|n| n == port || end.is_some_and(|e| (n..=e).contains(&port)))
    })
}

/// Whether the policies let `subject` (a pod) send (`Egress`) to or receive (`Ingress`) from
/// `other`, on `port` of the destination.
fn side(
    policies: &[&Value],
    subject: &End,
    other: &End,
    port: u16,
    protocol: &str,
    direction: &str,
) -> bool {
    let End::Pod { ns, labels, .. } = subject else {
        return true;
    };
    let (rules_key, peers_key) = match direction {
        "Ingress" => ("ingress", "from"),
        _ => ("egress", "to"),
    };
    let dest = if direction == "Ingress" {
        subject
    } else {
        other
    };
    let applying: Vec<&&Value> = policies
        .iter()
        .filter(|p| p["metadata"]["namespace"] == *ns)
        .filter(|p| selects(&p["spec"]["podSelector"], labels))
        .filter(|p| {
            let types = strs(&p["spec"]["policyTypes"]);
            if types.is_empty() {
                direction == "Ingress" || p["spec"].get("egress").is_some()
            } else {
                types.contains(&direction)
            }
        })
        .collect();
    if applying.is_empty() {
        return true;
    }
    applying.iter().any(|p| {
        p["spec"][rules_key]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| {
                let peers_ok = match rule[peers_key].as_array().filter(|l| !l.is_empty()) {
                    None => true,
                    Some(peers) => peers.iter().any(|peer| names(peer, ns, other)),
                };
                peers_ok && admits_port(&rule["ports"], dest, port, protocol)
            })
    })
}

fn allowed(policies: &[&Value], from: &End, to: &End, port: u16, protocol: &str) -> bool {
    side(policies, from, to, port, protocol, "Egress")
        && side(policies, to, from, port, protocol, "Ingress")
}

fn policies_of(dir: &str, extra: &[&str]) -> Vec<Value> {
    let (_, mut docs) = render(&root().join(dir));
    for file in extra {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for mut doc in fjord::provider::manifests::parse_documents(&text).unwrap() {
            // Applied into the application namespace, as its comment says.
            doc["metadata"]["namespace"] = json!("shop");
            docs.push(doc);
        }
    }
    docs.into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect()
}

#[test]
fn network_policies_admit_exactly_the_table() {
    let client = End::Outside("203.0.113.7".parse().unwrap());
    let api_server = End::Outside("10.0.0.1".parse().unwrap());
    let acme_ca = End::Outside("172.65.32.248".parse().unwrap());
    let redis = pod("cache", &[("app", "redis")], "10.42.3.3");
    let dns = pod("kube-system", &[("k8s-app", "kube-dns")], "10.42.0.3");
    let prometheus = pod("monitoring", &[("app", "prometheus")], "10.42.1.5");
    let observability = pod("observability", &[("app", "prometheus")], "10.42.1.6");
    let stranger = pod("default", &[("app", "curl")], "10.42.2.9");
    let shop = pod("shop", &[("app", "shop")], "10.42.4.4");
    let shop_neighbour = pod("shop", &[("app", "worker")], "10.42.4.5");
    let other_fjord_system_pod = pod("fjord-system", &[("app", "debug")], "10.42.0.11");
    let f = fjord();
    #[rustfmt::skip]
    let table: &[(&str, &End, &End, u16, &str, bool, bool)] = &[
        // (case, from, to, port, protocol, base allows, production overlay allows)
        ("client to web", &client, &f, 8080, "TCP", true, true),
        ("client to websecure", &client, &f, 8443, "TCP", true, true),
        ("client to admin", &client, &f, 9180, "TCP", false, false),
        ("monitoring to admin", &prometheus, &f, 9180, "TCP", true, false),
        ("observability to admin", &observability, &f, 9180, "TCP", false, true),
        ("admin port from outside monitoring", &stranger, &f, 9180, "TCP", false, false),
        ("pod in default to web", &stranger, &f, 8080, "TCP", true, true),
        ("fjord to DNS over UDP", &f, &dns, 53, "UDP", true, true),
        ("fjord to DNS over TCP", &f, &dns, 53, "TCP", true, true),
        ("fjord to the API server", &f, &api_server, 6443, "TCP", true, true),
        ("fjord to an ACME CA", &f, &acme_ca, 443, "TCP", true, true),
        ("fjord to the internet on 80", &f, &acme_ca, 80, "TCP", false, false),
        ("fjord to a backend in another namespace", &f, &shop, 8080, "TCP", true, true),
        ("fjord to Redis", &f, &redis, 6379, "TCP", true, true),
        ("fjord to Redis outside the cluster", &f, &End::Outside("192.0.2.50".parse().unwrap()), 6379, "TCP", false, true),
        ("neighbour to the backend", &shop_neighbour, &shop, 8080, "TCP", false, false),
        ("stranger to the backend", &stranger, &shop, 8080, "TCP", false, false),
        ("client to the backend", &client, &shop, 8080, "TCP", false, false),
        ("another pod in fjord-system out", &other_fjord_system_pod, &acme_ca, 443, "TCP", false, false),
        ("into another pod in fjord-system", &stranger, &other_fjord_system_pod, 8080, "TCP", false, false),
    ];
    let app = ["deploy/networkpolicy/allow-from-fjord.yaml"];
    let base = policies_of("deploy", &app);
    let production = policies_of("deploy/overlays/production", &app);
    let base: Vec<&Value> = base.iter().collect();
    let production: Vec<&Value> = production.iter().collect();
    let mut wrong = Vec::new();
    for (case, from, to, port, protocol, in_base, in_production) in table {
        for (name, policies, want) in [
            ("base", &base, in_base),
            ("production", &production, in_production),
        ] {
            if allowed(policies, from, to, *port, protocol) != *want {
                wrong.push(format!("{name}: {case}: want allowed={want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
