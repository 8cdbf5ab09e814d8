//! Every example folder is accepted by `fjord check` with no diagnostic, and the canary
//! example's credentials are the ones its README gives.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

#[test]
fn every_example_passes_check_cleanly() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for dir in ["quickstart/manifests", "canary"] {
        let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .arg("check")
            .arg(examples.join(dir))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{dir}: {stdout}");
        assert!(stdout.contains(" 0 errors, 0 warnings"), "{dir}: {stdout}");
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn the_canary_example_admin_password_is_demo() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/canary/middlewares.yaml"),
    )
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("users:"))
        .unwrap();
    let users = line.split('"').nth(1).unwrap();
    let users = fjord::htpasswd::parse_users(users).unwrap();
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo:demo")
    );
    assert_eq!(
        fjord::htpasswd::check(&users, header.as_bytes()),
        Some("demo")
    );
}
