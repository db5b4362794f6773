//! Demo backends and traffic: a tiny catalogue service that runs as the primary and as the
//! candidate (with a built-in regression), and a traffic driver that sends it through the
//! tap. The end-to-end tests use the same backends, so the demo shows what the tests prove.

pub mod backend;
pub mod traffic;
