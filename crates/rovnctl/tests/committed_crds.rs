//! The committed `deploy/crds.yaml` must be what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo run -p rovnctl -- crds > deploy/crds.yaml`",
            path.display()
        )
    });
    let generated = rovnctl::crds::crds_yaml().expect("CRDs serialize to YAML");
    assert!(
        committed == generated,
        "deploy/crds.yaml differs from the CRDs generated from crates/api; \
         run `cargo run -p rovnctl -- crds > deploy/crds.yaml` and commit the result"
    );
}
