//! deploy/k8s prepared as an operator prepares it: a copy of the trees, `secrets.sh` run twice
//! against a stand-in for kubectl that keeps the Secrets it creates, and the catalogue of the
//! Secrets the trees read (components/placeholder-secrets).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::cluster::EXAMPLE_NAMESPACE;
use crate::render::{kind, name};
use crate::tools::{read, repo, run, str_of, yaml_documents};

/// Secret name → key → value.
pub(crate) type Secrets = BTreeMap<String, BTreeMap<String, String>>;

pub(crate) static NO_SECRETS: Secrets = BTreeMap::new();

/// A stand-in for kubectl that keeps the Secrets it is asked to create as files,
/// `$FAKE_KUBECTL_STORE/NAME/KEY`, and logs every command line it is given.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
set -eu
store="$FAKE_KUBECTL_STORE"
printf '%s\n' "$*" >>"$store.calls"
case "$1 $2" in
  "get namespace") echo "namespace/$3" ;;
  "get secret") if [ -d "$store/$3" ]; then echo "secret/$3"; fi ;;
  "create secret")
    name=$4
    shift 4
    mkdir "$store/$name"
    for arg in "$@"; do
      case $arg in
        --from-file=*) pair=${arg#--from-file=}; cp "${pair#*=}" "$store/$name/${pair%%=*}" ;;
      esac
    done
    echo "secret/$name created" ;;
  *) echo "unexpected: kubectl $*" >&2; exit 1 ;;
esac
"#;

/// A copy of deploy/k8s after `secrets.sh` has run twice against [`FAKE_KUBECTL`]: the
/// Secrets a cluster would then hold, the files the script writes beside the trees, and what
/// it printed.
pub(crate) struct Prepared {
    /// The copy of deploy/k8s; the trees render from here.
    pub(crate) root: PathBuf,
    /// Beside the copy: the stand-in kubectl, its store, the placeholder kustomizations.
    pub(crate) scratch: PathBuf,
    /// The two runs, in order.
    pub(crate) runs: [SecretsRun; 2],
    /// Every command line kubectl was given.
    pub(crate) kubectl_calls: String,
}

/// One run of secrets.sh: what it printed, and the Secrets the cluster held after it.
pub(crate) struct SecretsRun {
    pub(crate) printed: String,
    pub(crate) secrets: Secrets,
}

impl Prepared {
    /// The token printed after `secret` was created: the first line of 64 hex digits after it.
    pub(crate) fn printed_token(&self, secret: &str) -> Option<String> {
        let created = format!("{secret}: created");
        let lines = self.runs[0].printed.lines().skip_while(|l| !l.starts_with(&created)).skip(1);
        let mut lines = lines.take_while(|l| l.starts_with(' '));
        lines.find(|l| l.trim().len() == 64 && l.trim().bytes().all(|b| b.is_ascii_hexdigit())).map(|l| l.trim().into())
    }

    /// The Secrets the first run created, which the namespace holds.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.runs[0].secrets
    }

    /// The CD read token: the verdict API's `token`, printed once.
    pub(crate) fn cd_token(&self) -> &str {
        self.secrets()["shadowdiff-verdict-api"]["token"].as_str()
    }
}

pub(crate) fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let scratch = scratch_dir();
        let root = scratch.join("k8s");
        copy_tree(&repo().join("deploy/k8s"), &root);
        let kubectl = scratch.join("kubectl");
        std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = scratch.join("secrets");
        std::fs::create_dir(&store).unwrap();
        let run_secrets_sh = || {
            let mut command = Command::new(root.join("secrets.sh"));
            command.arg(EXAMPLE_NAMESPACE).env("KUBECTL", &kubectl).env("FAKE_KUBECTL_STORE", &store);
            let ran = run(command, None);
            assert!(ran.ok, "deploy/k8s/secrets.sh {EXAMPLE_NAMESPACE}:\n{}", ran.output);
            SecretsRun { printed: ran.stdout, secrets: read_store(&store) }
        };
        let runs = [run_secrets_sh(), run_secrets_sh()];
        let kubectl_calls = read(&scratch.join("secrets.calls"));
        Prepared { root, scratch, runs, kubectl_calls }
    })
}

/// A fresh directory for this test process in Cargo's scratch space for integration tests;
/// those of earlier runs go once they are a day old.
fn scratch_dir() -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy_manifests");
    std::fs::create_dir_all(&parent).unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
    for entry in std::fs::read_dir(&parent).unwrap().flatten() {
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if age.is_some_and(|age| age > day) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(shadowdiff_tests::unique("run"));
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Copies `from` to `to`, leaving out the Flagger token file a local secrets.sh run wrote.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else if path.file_name().is_some_and(|n| n != "verdict-token.env") {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn read_store(store: &Path) -> Secrets {
    let mut secrets = Secrets::new();
    for entry in std::fs::read_dir(store).unwrap() {
        let dir = entry.unwrap().path();
        let keys = std::fs::read_dir(&dir).unwrap().map(|key| {
            let key = key.unwrap().path();
            (key.file_name().unwrap().to_str().unwrap().to_owned(), read(&key))
        });
        secrets.insert(dir.file_name().unwrap().to_str().unwrap().to_owned(), keys.collect());
    }
    secrets
}

/// The Secrets the trees read, by name and key, with their placeholder values: the
/// catalogue in components/placeholder-secrets.
pub(crate) fn catalogue() -> &'static Secrets {
    static CATALOGUE: OnceLock<Secrets> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let text = read(&repo().join("deploy/k8s/components/placeholder-secrets/secrets.yaml"));
        let secrets = yaml_documents(&text).into_iter().map(|secret| {
            assert_eq!(kind(&secret), "Secret", "the catalogue holds Secrets only");
            let data = secret["stringData"].as_object().expect("placeholder Secrets use stringData");
            let keys = data.iter().map(|(key, value)| (key.clone(), str_of(value).to_owned())).collect();
            (name(&secret).to_owned(), keys)
        });
        secrets.collect()
    })
}
