//! Bad input: each broken object is a diagnostic naming it, the rest keeps being served, and
//! `fjord check` says so with its exit code. An invalid update keeps the last good config.

mod support;

use std::process::Command;

use support::{
    Echo, Fjord, LOOPBACK_CONFIG, Manifests, check, get, ingress, service, until_served,
};

async fn broken_folder() -> (Manifests, Echo) {
    let m = Manifests::new();
    let good = Echo::start("good", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(
        "good.yaml",
        &format!(
            "{}---\n{}",
            service("good", good.addr),
            ingress("good", &[("good.test", "Prefix", "/", "good")])
        ),
    );
    m.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x\n",
    );
    m.write(
        "regex.yaml",
        &ingress("regex", &[("regex.test", "Regex", "/a.*", "good")]),
    );
    m.write(
        "badport.yaml",
        &ingress("badport", &[("badport.test", "Prefix", "/", "good")])
            .replace("port: {name: http}", "port: {name: nope}"),
    );
    m.write(
        "ghost.yaml",
        &ingress("ghost", &[("ghost.test", "Prefix", "/", "ghost")]),
    );
    m.write(
        "typo.yaml",
        &ingress("typo", &[("typo.test", "Prefix", "/", "good")])
            .replace("pathType:", "pathtype: Exact\n        pathType:"),
    );
    (m, good)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_object_is_named_and_the_rest_is_served() {
    let (m, _good) = broken_folder().await;

    let (code, out) = check(m.path(), None);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "error: broken.yaml: invalid YAML",
        r#"error: Ingress default/regex: spec.rules[0].http.paths[0].pathType "Regex" is not Exact, Prefix or ImplementationSpecific"#,
        r#"error: Ingress default/badport: spec.rules[0].http.paths[0].backend.service: Service default/good has no port "nope"; requests to it get 503"#,
        "warning: Ingress default/ghost: spec.rules[0].http.paths[0].backend.service: Service default/ghost not found; requests to it get 503",
        "error: Ingress default/typo: spec.rules[0].http.paths[0].pathtype: unknown field (typo.yaml)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "good.test", "/").await.backend().as_deref(),
        Some("good")
    );
    let badport = get(fjord.web, "badport.test", "/").await;
    assert_eq!(
        (badport.status.as_u16(), badport.body.as_str()),
        (503, "503 no available server\n")
    );
    assert_eq!(get(fjord.web, "ghost.test", "/").await.status, 503);
    assert_eq!(
        get(fjord.web, "regex.test", "/").await.status,
        404,
        "a rejected Ingress is not served"
    );
    assert_eq!(get(fjord.web, "typo.test", "/").await.status, 404);
    // The same diagnostics reach the log.
    fjord.wait_for_log("pathType \\\"Regex\\\" is not Exact");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_update_keeps_the_last_good_config() {
    let m = Manifests::new();
    let good = Echo::start("good", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let other = Echo::start("other", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    m.write(
        "good.yaml",
        &format!(
            "{}---\n{}",
            service("good", good.addr),
            ingress("good", &[("good.test", "Prefix", "/", "good")])
        ),
    );
    m.write("other.yaml", &service("other", other.addr));
    let fjord = Fjord::start(m.path(), LOOPBACK_CONFIG);
    assert_eq!(
        get(fjord.web, "good.test", "/").await.backend().as_deref(),
        Some("good")
    );

    // Half-written YAML: the file's last good objects keep serving.
    m.write(
        "good.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: good\n",
    );
    fjord.wait_for_log("still serving the 3 object(s) last read from it");
    assert_eq!(
        get(fjord.web, "good.test", "/").await.backend().as_deref(),
        Some("good")
    );

    // An Ingress edited into an invalid one: its last good version keeps serving.
    m.write(
        "good.yaml",
        &format!(
            "{}---\n{}",
            service("good", good.addr),
            ingress("good", &[("good.test", "Regex", "/", "other")])
        ),
    );
    fjord.wait_for_log("Regex\\\" is not Exact, Prefix or ImplementationSpecific; still serving its last good version");
    assert_eq!(
        get(fjord.web, "good.test", "/").await.backend().as_deref(),
        Some("good")
    );

    // A good edit is applied again.
    m.write(
        "good.yaml",
        &format!(
            "{}---\n{}",
            service("good", good.addr),
            ingress("good", &[("good.test", "Prefix", "/", "other")])
        ),
    );
    until_served(fjord.web, "good.test", Some("other")).await;
}

#[test]
fn check_exit_codes() {
    let m = Manifests::new();
    m.write(
        "ok.yaml",
        &format!(
            "{}---\n{}",
            service("web", "127.0.0.1:1".parse().unwrap()),
            ingress("web", &[("a.test", "Prefix", "/", "web")])
        ),
    );
    let (code, out) = check(m.path(), None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 objects, 1 routes, 0 errors, 0 warnings"),
        "{out}"
    );

    // Warnings alone pass.
    m.write(
        "ghost.yaml",
        &ingress("ghost", &[("b.test", "Prefix", "/", "ghost")]),
    );
    assert_eq!(check(m.path(), None).0, 0);

    let missing = m.path().join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("check")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read manifests folder"));

    let version = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("fjord {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_config_key_is_named_and_fjord_does_not_start() {
    let m = Manifests::new();
    let config = m.path().join("fjord.yaml");
    std::fs::write(&config, "entryPoints:\n  web:\n    adress: \":8080\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["run", "--manifests"])
        .arg(m.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adress"), "{stderr}");
}
