//! The shared runtime of the shadowdiff services: everything a service needs around its own
//! logic, so that each service's `main.rs` is a dozen lines.
//!
//! Read [`launch`] first: it loads and validates the config ([`config`]), sets up logging
//! and metrics ([`telemetry`]), serves `/healthz` and `/metrics` ([`admin`]), and runs the
//! service until a signal ([`shutdown`]). Services build their Kafka clients with [`kafka`]
//! and their ClickHouse client with [`clickhouse`]; APIs are guarded by [`auth`], and
//! producers redact what they publish as [`redaction`] says.

pub mod admin;
pub mod auth;
pub mod clickhouse;
pub mod config;
pub mod kafka;
mod launch;
pub mod redaction;
pub mod retry;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use launch::{ServiceConfig, launch};
pub use tokio_util::sync::CancellationToken;
