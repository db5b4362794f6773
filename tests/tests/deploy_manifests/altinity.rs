//! The Altinity clickhouse-operator's objects against the fields of its CRDs (operator
//! 0.25.6, v1): no registry reachable here ships a schema or models of them, and the API
//! server prunes a field its schema lacks without a word, so a misspelt `shardsCount` would
//! leave one shard. Their free-form parts (ClickHouse's settings) are left to
//! `clickhouse_cluster`; their pod and volume claim templates are validated as Pods and
//! PersistentVolumeClaims against the Kubernetes API schemas (`schemas`).

use serde_json::{Value, json};

use crate::clickhouse_cluster::INSTALLATION_TREE;
use crate::render::{group, kind, name, render};
use crate::tools::str_of;

const CHI_GROUP: &str = "clickhouse.altinity.com";
const CHK_GROUP: &str = "clickhouse-keeper.altinity.com";

/// The fields of the CRDs of operator 0.25.6 (v1), by place; `[]` is an array's items.
const CHI_FIELDS: &[(&str, &[&str])] = &[
    (
        "spec",
        &[
            "taskID",
            "stop",
            "restart",
            "suspend",
            "troubleshoot",
            "namespaceDomainPattern",
            "templating",
            "reconciling",
            "reconcile",
            "defaults",
            "configuration",
            "templates",
            "useTemplates",
        ],
    ),
    ("spec.configuration", &["zookeeper", "users", "profiles", "quotas", "settings", "files", "clusters"]),
    ("spec.configuration.zookeeper", ZOOKEEPER),
    ("spec.configuration.zookeeper.nodes.[]", ZOOKEEPER_NODE),
    (
        "spec.configuration.clusters.[]",
        &[
            "name",
            "zookeeper",
            "settings",
            "files",
            "templates",
            "schemaPolicy",
            "insecure",
            "secure",
            "secret",
            "pdbManaged",
            "pdbMaxUnavailable",
            "reconcile",
            "layout",
        ],
    ),
    ("spec.configuration.clusters.[].zookeeper", ZOOKEEPER),
    ("spec.configuration.clusters.[].zookeeper.nodes.[]", ZOOKEEPER_NODE),
    ("spec.configuration.clusters.[].secret", &["auto", "value", "valueFrom"]),
    ("spec.configuration.clusters.[].layout", &["shardsCount", "replicasCount", "shards", "replicas"]),
    ("spec.defaults", DEFAULTS),
    ("spec.defaults.templates", DEFAULT_TEMPLATES),
    ("spec.templates", TEMPLATES),
    ("spec.templates.podTemplates.[]", POD_TEMPLATE),
    ("spec.templates.podTemplates.[].podDistribution.[]", &["type", "scope", "number", "topologyKey"]),
    ("spec.templates.volumeClaimTemplates.[]", VOLUME_CLAIM_TEMPLATE),
];
const CHK_FIELDS: &[(&str, &[&str])] = &[
    (
        "spec",
        &[
            "taskID",
            "stop",
            "suspend",
            "namespaceDomainPattern",
            "reconciling",
            "defaults",
            "configuration",
            "templates",
        ],
    ),
    ("spec.configuration", &["settings", "files", "clusters"]),
    (
        "spec.configuration.clusters.[]",
        &["name", "settings", "files", "pdbManaged", "pdbMaxUnavailable", "templates", "layout"],
    ),
    ("spec.configuration.clusters.[].layout", &["replicasCount", "replicas"]),
    ("spec.defaults", DEFAULTS),
    ("spec.defaults.templates", DEFAULT_TEMPLATES),
    ("spec.templates", TEMPLATES),
    ("spec.templates.podTemplates.[]", POD_TEMPLATE),
    ("spec.templates.podTemplates.[].podDistribution.[]", &["type", "scope", "number", "topologyKey"]),
    ("spec.templates.volumeClaimTemplates.[]", VOLUME_CLAIM_TEMPLATE),
];
const ZOOKEEPER: &[&str] =
    &["nodes", "session_timeout_ms", "operation_timeout_ms", "root", "identity", "use_compression"];
const ZOOKEEPER_NODE: &[&str] = &["host", "port", "secure", "availabilityZone"];
const DEFAULTS: &[&str] = &["replicasUseFQDN", "distributedDDL", "storageManagement", "templates"];
const DEFAULT_TEMPLATES: &[&str] = &[
    "hostTemplate",
    "podTemplate",
    "dataVolumeClaimTemplate",
    "logVolumeClaimTemplate",
    "serviceTemplate",
    "serviceTemplates",
    "clusterServiceTemplate",
    "shardServiceTemplate",
    "replicaServiceTemplate",
    "volumeClaimTemplate",
];
const TEMPLATES: &[&str] = &["hostTemplates", "podTemplates", "volumeClaimTemplates", "serviceTemplates"];
const POD_TEMPLATE: &[&str] = &["name", "generateName", "zone", "distribution", "podDistribution", "metadata", "spec"];
const VOLUME_CLAIM_TEMPLATE: &[&str] = &["name", "provisioner", "reclaimPolicy", "metadata", "spec"];
/// The CRDs' integers, wherever they appear.
const INTEGERS: &[&str] =
    &["shardsCount", "replicasCount", "port", "session_timeout_ms", "operation_timeout_ms", "pdbMaxUnavailable"];
/// The CRDs' booleans are strings of this enum.
const STRING_BOOLS: &[&str] = &[
    "", "0", "1", "False", "false", "True", "true", "No", "no", "Yes", "yes", "Off", "off", "On", "on", "Disable",
    "disable", "Enable", "enable", "Disabled", "disabled", "Enabled", "enabled",
];
const STRING_BOOL_FIELDS: &[&str] = &["stop", "suspend", "troubleshoot", "secure", "insecure", "auto", "pdbManaged"];
const POD_DISTRIBUTIONS: &[&str] = &[
    "",
    "Unspecified",
    "ClickHouseAntiAffinity",
    "ShardAntiAffinity",
    "ReplicaAntiAffinity",
    "AnotherNamespaceAntiAffinity",
    "AnotherClickHouseInstallationAntiAffinity",
    "AnotherClusterAntiAffinity",
    "MaxNumberPerNode",
    "NamespaceAffinity",
    "ClickHouseInstallationAffinity",
    "ClusterAffinity",
    "ShardAffinity",
    "ReplicaAffinity",
    "PreviousTailAffinity",
    "CircularReplication",
];
/// What a user of `spec.configuration.users` may set (`<user>/<setting>`): ClickHouse's user
/// settings, and the operator's `k8s_secret_*` forms that read a password from a Secret.
const USER_SETTINGS: &[&str] = &[
    "password",
    "password_sha256_hex",
    "password_double_sha1_hex",
    "k8s_secret_password",
    "k8s_secret_password_sha256_hex",
    "k8s_secret_password_double_sha1_hex",
    "k8s_secret_env_password",
    "k8s_secret_env_password_sha256_hex",
    "k8s_secret_env_password_double_sha1_hex",
    "profile",
    "quota",
    "networks/ip",
    "networks/host",
    "networks/host_regexp",
    "allow_databases/database",
    "grants/query",
    "access_management",
    "default_database",
];

/// The values of `object` at a dotted path, `[]` standing for every item of an array.
fn at_path<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = vec![object];
    for step in path.split('.') {
        found = found
            .into_iter()
            .flat_map(|v| match step {
                "[]" => v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                key => v.get(key).into_iter().collect::<Vec<_>>(),
            })
            .collect();
    }
    found
}

/// A ClickHouseInstallation or ClickHouseKeeperInstallation against the fields of its CRD.
pub(crate) fn altinity_problems(object: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let fields = match (group(object), kind(object)) {
        (CHI_GROUP, "ClickHouseInstallation") => CHI_FIELDS,
        (CHK_GROUP, "ClickHouseKeeperInstallation") => CHK_FIELDS,
        (group, kind) => return vec![format!("{group}/{kind}: not a kind of the operator these trees use")],
    };
    if !str_of(&object["apiVersion"]).ends_with("/v1") {
        problems.push(format!("apiVersion {}: the CRDs serve v1", object["apiVersion"]));
    }
    for (path, known) in fields {
        for value in at_path(object, path) {
            match value.as_object() {
                Some(map) => problems.extend(
                    map.keys().filter(|k| !known.contains(&k.as_str())).map(|k| format!("{path}.{k}: unknown field")),
                ),
                None => problems.push(format!("{path}: not an object")),
            }
        }
    }
    fn walk(value: &Value, at: &str, problems: &mut Vec<String>) {
        let Some(map) = value.as_object() else {
            if let Some(items) = value.as_array() {
                items.iter().enumerate().for_each(|(i, item)| walk(item, &format!("{at}[{i}]"), problems));
            }
            return;
        };
        for (key, field) in map {
            let here = format!("{at}.{key}");
            // Free-form: ClickHouse's settings, and Kubernetes objects validated on their own.
            if ["users", "profiles", "quotas", "settings", "files", "spec", "metadata"].contains(&key.as_str()) {
                continue;
            }
            if INTEGERS.contains(&key.as_str()) && !field.is_u64() {
                problems.push(format!("{here}: an integer"));
            }
            if STRING_BOOL_FIELDS.contains(&key.as_str()) && !field.as_str().is_some_and(|v| STRING_BOOLS.contains(&v))
            {
                problems.push(format!("{here}: a string of {STRING_BOOLS:?}"));
            }
            walk(field, &here, problems);
        }
    }
    walk(&object["spec"], "spec", &mut problems);
    for distribution in at_path(object, "spec.templates.podTemplates.[].podDistribution.[].type") {
        if !distribution.as_str().is_some_and(|t| POD_DISTRIBUTIONS.contains(&t)) {
            problems.push(format!("podDistribution type {distribution}: one of {POD_DISTRIBUTIONS:?}"));
        }
    }
    // A default template that names no template is ignored, and the pods run without it.
    for (field, templates) in [("podTemplate", "podTemplates"), ("dataVolumeClaimTemplate", "volumeClaimTemplates")] {
        let Some(wanted) = object["spec"]["defaults"]["templates"][field].as_str() else { continue };
        if !at_path(object, &format!("spec.templates.{templates}.[].name")).iter().any(|n| *n == wanted) {
            problems.push(format!("spec.defaults.templates.{field} {wanted}: no such template"));
        }
    }
    let users = object["spec"]["configuration"]["users"].as_object().into_iter().flatten();
    for (key, _) in users {
        let setting = key.split_once('/').map(|(_, setting)| setting);
        if !setting.is_some_and(|s| USER_SETTINGS.contains(&s)) {
            problems.push(format!("users.{key}: not <user>/<one of {USER_SETTINGS:?}>"));
        }
    }
    problems
}

/// The Kubernetes objects inside an installation, to validate against the API schemas: each
/// pod template's spec as a Pod's, each volume claim template's as a claim's.
pub(crate) fn altinity_embedded(object: &Value) -> Vec<Value> {
    let mut embedded = Vec::new();
    if ![CHI_GROUP, CHK_GROUP].contains(&group(object)) {
        return embedded;
    }
    let prefix = format!("{}-{}", kind(object).to_ascii_lowercase(), name(object));
    for template in at_path(object, "spec.templates.podTemplates.[]") {
        embedded.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("{prefix}-{}", str_of(&template["name"])) },
            "spec": template["spec"],
        }));
    }
    for template in at_path(object, "spec.templates.volumeClaimTemplates.[]") {
        embedded.push(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": format!("{prefix}-{}", str_of(&template["name"])) },
            "spec": template["spec"],
        }));
    }
    embedded
}

/// An edit of an installation's first cluster.
fn first_cluster(edit: impl Fn(&mut Value)) -> impl Fn(&mut Value) {
    move |o| edit(&mut o["spec"]["configuration"]["clusters"][0])
}

#[test]
fn the_operators_fields_are_checked() {
    let installation = render(INSTALLATION_TREE);
    let chi = installation.all("ClickHouseInstallation").next().expect("a ClickHouseInstallation");
    assert_eq!(altinity_problems(chi), Vec::<String>::new());
    let broken = |edit: &dyn Fn(&mut Value), expect: &str| {
        let mut copy = chi.clone();
        edit(&mut copy);
        let problems = altinity_problems(&copy);
        assert!(problems.iter().any(|p| p.contains(expect)), "{expect:?} passed: {problems:#?}");
    };
    broken(&first_cluster(|c| c["layout"]["shardCount"] = json!(2)), "layout.shardCount: unknown field");
    broken(&first_cluster(|c| c["layout"]["shardsCount"] = json!("2")), "an integer");
    broken(&first_cluster(|c| c["secret"]["auto"] = json!(true)), "a string of");
    broken(&|o| o["spec"]["defaults"]["templates"]["podTemplate"] = json!("missing"), "no such template");
    broken(&|o| o["spec"]["templates"]["podTemplates"][0]["podDistribution"][0]["type"] = json!("Spread"), "one of");
    broken(&|o| o["spec"]["configuration"]["users"]["shadowdiff/pasword"] = json!("x"), "users.shadowdiff/pasword");
    broken(&|o| o["spec"]["configuration"]["zookeeper"]["nodes"][0]["hosts"] = json!("x"), "unknown field");
}
