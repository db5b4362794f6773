//! Where the traffic goes: the ingress tap forwards to the stable primary, never to a
//! Service a mesh splits by weight, and each mirror profile replays to a secondary of the
//! primary's version beside its candidate.

use std::collections::BTreeSet;

use crate::cluster::{MESH_SPLIT, Pods, Track};
use crate::configs::Service;
use crate::render::{Running, applied, name};
use crate::tools::{host_port, str_of};

/// The ingress tap of a render.
fn ingress_tap<'a>(running: &'a [Running<'a>]) -> &'a Running<'a> {
    running.iter().find(|r| name(r.workload) == "shadowdiff-tap").expect("the ingress tap runs")
}

#[test]
fn ingress_taps_forward_to_the_stable_primary() {
    for render in applied() {
        let dir = &render.dir;
        let running = render.running();
        let tap = ingress_tap(&running);
        assert_eq!(tap.loaded.upstreams.len(), 1, "{dir}: one upstream");
        let (host, port) = host_port(&tap.loaded.upstreams[0].url);
        for canary in render.all("Canary") {
            let apex = str_of(&canary["spec"]["targetRef"]["name"]);
            assert_ne!(host, apex, "{dir}: the tap forwards to Flagger's apex, which the mesh splits by weight");
        }
        match render.service(&host) {
            Some(service) => {
                assert!(service["metadata"]["annotations"][MESH_SPLIT].is_null(), "{dir}: {host} is split by weight");
                let (_, pods) = render.through_service(&host, port);
                for pods in &pods {
                    assert!(
                        matches!(pods.track, Track::Stable | Track::Primary),
                        "{dir}: the tap's upstream {host} reaches {} pods of {}",
                        format!("{:?}", pods.track).to_lowercase(),
                        pods.owner
                    );
                }
                for rollout in render.all("Rollout") {
                    assert_eq!(rollout["spec"]["strategy"]["canary"]["stableService"], host.as_str());
                }
            }
            None => assert!(!dir.starts_with("examples/"), "{dir}: the tap's upstream {host} is not in the tree"),
        }
    }
}

#[test]
fn every_mirror_profile_replays_to_a_secondary_of_the_primary_version() {
    for render in applied() {
        let dir = &render.dir;
        let running = render.running();
        let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
        let role = |role: &str| mirror.loaded.upstreams.iter().filter(|u| u.role == role).collect::<Vec<_>>();
        let (secondaries, candidates) = (role("secondary"), role("candidate"));
        assert_eq!((secondaries.len(), candidates.len()), (1, 1), "{dir}: a secondary beside the candidate");
        let (secondary, candidate) = (secondaries[0], candidates[0]);
        assert!(secondary.rate_per_sec.is_some(), "{dir}: bound the secondary's extra load on the primary's pods");
        assert_eq!(secondary.rate_per_sec, candidate.rate_per_sec, "{dir}: every candidate replay has its baseline");

        let (candidate_host, candidate_port) = host_port(&candidate.url);
        if !dir.starts_with("examples/") && render.service(&candidate_host).is_none() {
            // A tree without the application (overlays/ingress); the examples carry it.
            continue;
        }
        let (_, under_test) = render.through_service(&candidate_host, candidate_port);
        assert!(under_test.iter().all(Pods::under_test), "{dir}: the candidate's Service reaches {under_test:?}");
        let (secondary_host, secondary_port) = host_port(&secondary.url);
        let (_, baseline) = render.through_service(&secondary_host, secondary_port);
        assert!(
            baseline.iter().all(Pods::primary_version),
            "{dir}: the secondary's Service reaches pods of another version: {baseline:?}"
        );
        if dir.starts_with("examples/") {
            // A second call to the primary's own pods: always its version, nothing to keep in step.
            let tap = ingress_tap(&running);
            let (upstream, upstream_port) = host_port(&tap.loaded.upstreams[0].url);
            let (_, primary) = render.through_service(&upstream, upstream_port);
            let ids = |pods: &[Pods<'_>]| pods.iter().map(Pods::id).collect::<BTreeSet<_>>();
            assert_eq!(ids(&baseline), ids(&primary), "{dir}: the secondary runs on the tap's upstream's pods");
        }
    }
}
