//! The CRD manifests in `deploy/crds/` are generated from the Rust types; this fails when the
//! checked-in files are out of date. `FJORD_UPDATE_CRDS=1 cargo test --test crds` rewrites them.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    for (file, yaml) in fjord::crd::manifests() {
        assert!(
            kustomization.contains(&format!("- {file}")),
            "deploy/crds/{file} is not in deploy/crds/kustomization.yaml"
        );
        let path = dir.join(file);
        if std::env::var_os("FJORD_UPDATE_CRDS").is_some() {
            std::fs::write(&path, &yaml).unwrap();
            continue;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == yaml,
            "deploy/crds/{file} is out of date: run FJORD_UPDATE_CRDS=1 cargo test --test crds"
        );
        // And it is a CRD of the right group that a manifests folder would ignore.
        assert!(
            yaml.contains("group: fjord.dev") && yaml.contains("kind: CustomResourceDefinition")
        );
    }
}
