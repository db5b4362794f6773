//! The Dockerfile: it builds every binary of the image, each a binary of the workspace, from
//! pinned base images of one Debian release, and the image does not run as root.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::tools::{read, repo, run, str_of, strings};

/// The binaries the image must carry: the services, the demo and the CLI.
const IMAGE_BINARIES: [&str; 6] = [
    "shadowdiff-tap",
    "shadowdiff-mirror",
    "shadowdiff-correlator",
    "shadowdiff-verdict",
    "shadowdiff-demo",
    "shadowctl",
];

/// The binaries the Dockerfile's builder copies into the image.
pub(crate) fn dockerfile_binaries() -> Vec<String> {
    let dockerfile = read(&repo().join("Dockerfile"));
    let line = dockerfile.lines().find_map(|l| l.strip_prefix("ARG BINS=")).expect("Dockerfile: ARG BINS=\"...\"");
    line.trim_matches('"').split_whitespace().map(str::to_owned).collect()
}

#[test]
fn dockerfile_builds_every_binary_into_a_pinned_non_root_image() {
    let binaries = dockerfile_binaries();
    for binary in IMAGE_BINARIES {
        assert!(binaries.iter().any(|b| b == binary), "the Dockerfile should build {binary}, builds {binaries:?}");
    }
    // `cargo build --bin NAME` for each: every name must be a binary of the workspace.
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(repo()).args(["metadata", "--no-deps", "--offline", "--format-version", "1"]);
    let ran = run(cargo, None);
    assert!(ran.ok, "cargo metadata:\n{}", ran.output);
    let metadata: Value = serde_json::from_str(&ran.stdout).unwrap();
    let targets = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"));
    let workspace_bins: BTreeSet<&str> =
        targets.filter(|t| strings(&t["kind"]).iter().any(|k| k == "bin")).map(|t| str_of(&t["name"])).collect();
    for binary in &binaries {
        assert!(
            workspace_bins.contains(binary.as_str()),
            "the Dockerfile builds {binary}, which no workspace member has"
        );
    }

    let dockerfile = read(&repo().join("Dockerfile"));
    let runtime = dockerfile.rsplit("\nFROM ").next().expect("a runtime stage");
    let user = runtime.lines().find_map(|l| l.strip_prefix("USER ")).expect("the runtime stage sets USER");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "the image runs as root");
    let images: BTreeMap<&str, &str> =
        dockerfile.lines().filter_map(|l| l.strip_prefix("ARG ").and_then(|a| a.split_once("_IMAGE="))).collect();
    for image in images.values() {
        let reference = image.split_once('@').map_or(*image, |(reference, _)| reference);
        let tag = reference.rsplit_once(':').map(|(_, tag)| tag);
        assert!(tag.is_some_and(|t| t != "latest"), "Dockerfile: pin {image} by tag");
    }
    // The runtime base by its Debian release and the digest of that tag's image index, and
    // the builder of the same release, so the binaries find the glibc they were linked to.
    let runtime = images.get("RUNTIME").expect("ARG RUNTIME_IMAGE=");
    let (reference, digest) = runtime.split_once("@sha256:").expect("RUNTIME_IMAGE pinned by @sha256: digest");
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{runtime}: a sha256 digest");
    let release = ["bookworm", "trixie"].into_iter().find(|r| reference.starts_with(&format!("debian:{r}")));
    let release = release.unwrap_or_else(|| panic!("{runtime}: name the Debian release"));
    let builder = images.get("RUST").expect("ARG RUST_IMAGE=");
    assert!(builder.ends_with(&format!("-{release}")), "{builder} builds for another Debian than {release}");
}
