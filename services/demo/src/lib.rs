//! Demo backends and traffic: a tiny catalogue service that runs as the primary and as the
//! candidate (with a built-in regression), and a traffic driver that sends it through the
//! tap. The end-to-end tests use the same backends, so the demo shows what the tests prove.
//! `load` publishes whole exchanges straight to Kafka, for the correlator's benchmark;
//! `alerts` receives Alertmanager's webhooks, so the demo shows the alerts it raises;
//! `inventory` is the dependency the backends call downstream, through egress taps;
//! `freshness` times how soon after an answer its shadow's row is visible in ClickHouse.

pub mod alerts;
pub mod backend;
pub mod freshness;
pub mod inventory;
pub mod load;
pub mod traffic;
