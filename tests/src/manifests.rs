//! The shipped deployment files, read as data: scenarios that play a CD controller take its
//! settings from the example it would read, not from a copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Every document of the YAML file at `relative` (to the repository), as JSON. PyYAML from
/// the validators' virtualenv reads it: `deploy/k8s/validators.sh` installs it.
pub fn yaml(relative: &str) -> Vec<Value> {
    let python = repo().join(".local/deploy-tools/venv/bin/python");
    assert!(python.is_file(), "{} is missing: run deploy/k8s/validators.sh", python.display());
    let file = repo().join(relative);
    let output = Command::new(&python)
        .args(["-c", "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)"])
        .arg(&file)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(output.status.success(), "{} does not parse as YAML", file.display());
    let documents: Vec<Value> =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// The one document of `kind` in the YAML file at `relative`.
pub fn object(relative: &str, kind: &str) -> Value {
    let mut found: Vec<Value> = yaml(relative).into_iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "{relative}: one {kind}");
    found.remove(0)
}
