//! The deployable stack, checked without a Docker engine or a cluster.
//!
//! `docker-compose.yaml` is validated against the Compose Specification's JSON schema
//! (check-jsonschema) and by Debian's docker-compose; each shadowdiff service's mounted config
//! file and environment are loaded by that service's own config loader, so every
//! `SHADOWDIFF_*` variable must name a real key; and every address those configs name must
//! lead to a service listening there.
//!
//! `deploy/k8s` is prepared as an operator prepares it: in a copy, `secrets.sh` creates the
//! Secrets (against a stand-in for kubectl that keeps them) and writes the Flagger example's
//! token file. Every Kustomize tree is then rendered by kubectl, each object validated against
//! the Kubernetes API schemas (kubernetes-validate, strict) or the models generated from the
//! Argo Rollouts CRDs and KEDA's API types; Flagger's Canary, for which no registry ships a
//! schema, against its documented fields. The trees are modelled as they run: Argo's stable
//! and canary ReplicaSets with the labels it adds, Flagger's primary Deployment and the three
//! Services it creates. Then the same config checks per container, with the service-link variables of
//! every Service in the namespace; probes, ports, Services, disruption budgets, the
//! NetworkPolicies (evaluated as Kubernetes evaluates them), the tap's upstream, the mirror's
//! secondary, and the CD gates' calls to the verdict API with the tokens secrets.sh made.
//!
//! The egress overlay's application containers send plain HTTP through their own pod's egress
//! tap and shadowdiff's endpoints past it, as their HTTP client's proxy matcher decides; the
//! primary's egress tap forwards, every shadow of the mirror's profile has a stub one, and no
//! Service that takes real traffic leads to a stub.
//!
//! KEDA scales each consumer group (overlays/autoscaling) on the lag of exactly the group and
//! topics its service's config consumes, on its brokers with its credentials, from 1 replica
//! to no more than the topics' partitions; each of those checks fails on a copy broken for it.
//!
//! The ClickHouse cluster example (examples/clickhouse-cluster), run by the Altinity
//! clickhouse-operator, is checked against its CRDs' fields, for which no registry ships a
//! schema, and against what the services' cluster mode needs of it, with the services of
//! overlays/clickhouse-cluster: their cluster, of two shards or more with replicas, their url,
//! the Keeper, their user and its password's Secret, and the NetworkPolicy in front of it.
//!
//! No tree carries a Secret. The placeholder Secrets (components/placeholder-secrets, the
//! catalogue of the Secrets the trees read), added to a tree, must stop the tap and the mirror
//! (placeholder redaction keys) and the verdict API (no token list).
//!
//! `deploy/k8s/validators.sh` installs the validators (`deploy/local/test.sh` runs it); a
//! missing one fails these tests with that command.
//!
//! The alert rules (`deploy/prometheus/rules`) pass `promtool check rules` and their own
//! `promtool test rules` suite, which must show every alert firing and silent; deploy/k8s/alerts
//! carries the same groups as a PrometheusRule; the compose stack's and the local demo's
//! Prometheus and Alertmanager configs pass promtool and amtool and lead to the rules, the
//! services' admin ports and the webhook receiver.
//!
//! Reading order: `tools` and `configs` serve both halves; `compose` and `dockerfile` check
//! the Compose stack; `prepared`, `render` and `cluster` model deploy/k8s as it runs, and
//! `network_policy`, `schemas`, `workloads`, `routing`, `cd_gates`, `egress`, `autoscaling`
//! and `secrets` check it, `altinity` and `clickhouse_cluster` the ClickHouse cluster it may
//! use; `alert_rules` checks the alerts in all three.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod configs;
mod tools;

mod compose;
mod dockerfile;

mod cluster;
mod prepared;
mod render;

mod alert_rules;
mod altinity;
mod autoscaling;
mod cd_gates;
mod clickhouse_cluster;
mod egress;
mod network_policy;
mod routing;
mod schemas;
mod secrets;
mod workloads;
