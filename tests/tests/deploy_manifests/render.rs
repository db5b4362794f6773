//! Every Kustomize tree under deploy/k8s rendered by kubectl, its objects, and the shadowdiff
//! containers in it with their configs (mounted ConfigMaps) and environments (ConfigMaps,
//! Secrets, labels, service links) loaded by each service's own loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::Value;

use crate::cluster::service_links;
use crate::configs::{EnvVar, Loaded, Service};
use crate::prepared::{NO_SECRETS, Secrets, prepared};
use crate::tools::{arg_after, path_tool, read, run, str_of, strings, yaml_documents};

/// One Kustomize tree, rendered.
pub(crate) struct Render {
    /// Relative to deploy/k8s.
    pub(crate) dir: String,
    pub(crate) objects: Vec<Value>,
    /// The Secrets the namespace holds besides any in the render: those secrets.sh created.
    pub(crate) cluster_secrets: &'static Secrets,
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let mut command = Command::new(path_tool("kubectl"));
    command.arg("kustomize").arg(dir);
    let ran = run(command, None);
    assert!(ran.ok, "kubectl kustomize {}:\n{}", dir.display(), ran.output);
    yaml_documents(&ran.stdout)
}

pub(crate) fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let prepared = prepared();
        let mut dirs = Vec::new();
        find_kustomizations(&prepared.root, &mut dirs);
        dirs.sort();
        assert!(!dirs.is_empty(), "no kustomization under deploy/k8s");
        let render = |dir: PathBuf| Render {
            dir: dir.strip_prefix(&prepared.root).unwrap().display().to_string(),
            objects: kustomize(&dir),
            cluster_secrets: prepared.secrets(),
        };
        dirs.into_iter().map(render).collect()
    })
}

pub(crate) fn render(dir: &str) -> &'static Render {
    renders().iter().find(|r| r.dir == dir).unwrap_or_else(|| panic!("no kustomization at deploy/k8s/{dir}"))
}

/// Trees that run what shadowdiff uses, in a namespace of their own, and no shadowdiff
/// service: the ClickHouse cluster (`clickhouse_cluster` checks it with the overlay that
/// joins it).
pub(crate) const BACKING_TREES: [&str; 1] = ["examples/clickhouse-cluster"];

/// The trees of shadowdiff that get applied: overlays and examples (the base and components
/// render inside them), but for the backing trees.
pub(crate) fn applied() -> impl Iterator<Item = &'static Render> {
    renders().iter().filter(|r| {
        (r.dir.starts_with("overlays/") || r.dir.starts_with("examples/")) && !BACKING_TREES.contains(&r.dir.as_str())
    })
}

/// Each applied tree with components/placeholder-secrets added by a kustomization of its
/// own, as one would render a tree whole without a cluster; no other Secrets around.
pub(crate) fn placeholder_renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let prepared = prepared();
        let render = |tree: &Render| {
            let dir = prepared.scratch.join("with-placeholders").join(tree.dir.replace('/', "-"));
            std::fs::create_dir_all(&dir).unwrap();
            let kustomization = format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../k8s/{}\n\
                 components:\n  - ../../k8s/components/placeholder-secrets\n",
                tree.dir
            );
            std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
            Render { dir: tree.dir.clone(), objects: kustomize(&dir), cluster_secrets: &NO_SECRETS }
        };
        applied().map(render).collect()
    })
}

/// Kustomizations, not Components (those only render as part of one).
fn find_kustomizations(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            find_kustomizations(&path, found);
        } else if path.file_name().is_some_and(|n| n == "kustomization.yaml")
            && read(&path).lines().any(|l| l.trim() == "kind: Kustomization")
        {
            found.push(dir.to_path_buf());
        }
    }
}

pub(crate) fn kind(object: &Value) -> &str {
    str_of(&object["kind"])
}

pub(crate) fn name(object: &Value) -> &str {
    str_of(&object["metadata"]["name"])
}

pub(crate) fn group(object: &Value) -> &str {
    str_of(&object["apiVersion"]).rsplit_once('/').map_or("", |(group, _)| group)
}

/// A container of a Deployment or Rollout that runs a shadowdiff service, with its config loaded.
pub(crate) struct Running<'a> {
    pub(crate) workload: &'a Value,
    pub(crate) container: &'a Value,
    pub(crate) loaded: Loaded,
}

impl Render {
    pub(crate) fn find(&self, kind_: &str, name_: &str) -> Option<&Value> {
        self.objects.iter().find(|o| kind(o) == kind_ && name(o) == name_)
    }

    pub(crate) fn all<'a>(&'a self, kind_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| kind(o) == kind_)
    }

    pub(crate) fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(|o| ["Deployment", "Rollout"].contains(&kind(o)))
    }

    /// The namespace the tree is applied to: its own, or the one `kubectl apply -n` names.
    pub(crate) fn namespace(&self) -> &str {
        let namespaces: BTreeSet<&str> =
            self.objects.iter().filter_map(|o| o["metadata"]["namespace"].as_str()).collect();
        assert!(namespaces.len() <= 1, "{}: objects in several namespaces: {namespaces:?}", self.dir);
        namespaces.into_iter().next().unwrap_or("the-namespace")
    }

    /// A Secret's value: from the render, or else from the namespace (secrets.sh's).
    pub(crate) fn secret(&self, name_: &str, key: &str) -> Option<String> {
        if let Some(secret) = self.find("Secret", name_) {
            if let Some(value) = secret["stringData"][key].as_str() {
                return Some(value.to_owned());
            }
            let encoded = secret["data"][key].as_str()?;
            return String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok();
        }
        self.cluster_secrets.get(name_).and_then(|keys| keys.get(key)).cloned()
    }

    fn config_map(&self, name_: &str) -> &serde_json::Map<String, Value> {
        let found = self.find("ConfigMap", name_).unwrap_or_else(|| panic!("{}: no ConfigMap {name_}", self.dir));
        found["data"].as_object().unwrap_or_else(|| panic!("{}: ConfigMap {name_} has no data", self.dir))
    }

    /// The container's environment, with every reference resolved within the render, and
    /// the service-link variables of every Service in the namespace: Kubernetes gives them
    /// to every pod that does not turn them off, and a loader must not trip on them anyway.
    pub(crate) fn environment(&self, pod: &Value, container: &Value) -> Vec<EnvVar> {
        let mut env: Vec<EnvVar> = self.services().iter().flat_map(service_links).collect();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let map = str_of(&source["configMapRef"]["name"]);
            for (name_, value) in self.config_map(map) {
                env.push(EnvVar { name: name_.clone(), value: str_of(value).to_owned(), shared: true });
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name_ = str_of(&var["name"]).to_owned();
            let from = &var["valueFrom"];
            let value = if let Some(value) = var["value"].as_str() {
                value.to_owned()
            } else if from["secretKeyRef"].is_object() {
                let (secret, key) = (str_of(&from["secretKeyRef"]["name"]), str_of(&from["secretKeyRef"]["key"]));
                self.secret(secret, key).unwrap_or_else(|| panic!("{}: {name_} reads missing {secret}/{key}", self.dir))
            } else if from["configMapKeyRef"].is_object() {
                let (map, key) = (str_of(&from["configMapKeyRef"]["name"]), str_of(&from["configMapKeyRef"]["key"]));
                str_of(&self.config_map(map)[key]).to_owned()
            } else {
                let path = str_of(&from["fieldRef"]["fieldPath"]);
                match path.strip_prefix("metadata.labels['").and_then(|l| l.strip_suffix("']")) {
                    Some(label) => pod["metadata"]["labels"][label]
                        .as_str()
                        .unwrap_or_else(|| panic!("{}: {name_} reads label {label}, which the pod lacks", self.dir))
                        .to_owned(),
                    None if path == "metadata.name" => "pod-name".to_owned(),
                    None => panic!("{}: {name_}: unexpected fieldRef {path}", self.dir),
                }
            };
            env.push(EnvVar { name: name_, value, shared: false });
        }
        env
    }

    /// Where `container` of `pod` mounts its config, and the file's text.
    pub(crate) fn config_of(&self, at: &str, pod: &Value, container: &Value) -> (Service, String) {
        let args = strings(&container["args"]);
        let service = args.first().and_then(|b| Service::of_binary(b)).expect("a shadowdiff service");
        let config = Path::new(arg_after(&args, "--config").unwrap_or_else(|| panic!("{at}: no --config")));
        let mount = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| Path::new(str_of(&m["mountPath"])) == config.parent().unwrap())
            .unwrap_or_else(|| panic!("{at}: nothing mounted at {}", config.parent().unwrap().display()));
        let volume = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{at}: no volume {}", mount["name"]));
        let file = config.file_name().unwrap().to_str().unwrap();
        let map = self.config_map(str_of(&volume["configMap"]["name"]));
        let text = str_of(map.get(file).unwrap_or_else(|| panic!("{at}: the ConfigMap lacks {file}")));
        (service, text.to_owned())
    }

    /// The shadowdiff service containers: (workload, container, where).
    pub(crate) fn service_containers(&self) -> Vec<(&Value, &Value, String)> {
        let mut found = Vec::new();
        for workload in self.workloads() {
            for container in workload["spec"]["template"]["spec"]["containers"].as_array().expect("containers") {
                let args = strings(&container["args"]);
                if args.first().and_then(|b| Service::of_binary(b)).is_some() {
                    let at = format!("{}/{}/{}", self.dir, name(workload), str_of(&container["name"]));
                    found.push((workload, container, at));
                }
            }
        }
        found
    }

    /// Every shadowdiff service container, its config file (a mounted ConfigMap) and
    /// environment loaded by the service's own loader.
    pub(crate) fn running(&self) -> Vec<Running<'_>> {
        let running = self.service_containers().into_iter().map(|(workload, container, at)| {
            let pod = &workload["spec"]["template"];
            let (service, text) = self.config_of(&at, pod, container);
            let loaded = service.load_checked(&text, &at, &self.environment(pod, container));
            Running { workload, container, loaded }
        });
        running.collect()
    }
}
