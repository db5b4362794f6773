//! Recorded windows of production traffic, for `shadowctl record` and `shadowctl replay`.
//!
//! The tap already publishes every request and the primary's answer to Kafka, so a window
//! of production traffic is on the brokers for as long as they keep it. This crate reads
//! such a window and keeps it as a file:
//!
//! - [`window`]: which exchanges, a [`Window`] of time (`[from, to)` on the request's own
//!   timestamp), routes, methods, a sticky sample by request id and a bound on the count.
//! - [`read`]: [`read_window`] takes a window from the requests and responses topics,
//!   joining each request with its primary's response into a [`Recorded`] exchange, and
//!   reports what it skipped ([`report`]).
//! - [`recording`]: [`recording::write`] and [`recording::read`] keep exchanges in an Avro
//!   object container file that any Avro reader opens.
//! - [`run`]: a [`Run`] sends a recording's requests again to its targets, by the mirror's
//!   rules, and hands them with the recorded primary's answers to an [`Outlet`]: the
//!   [`Publisher`], for the correlator, or [`Compared`] ([`compared`]), which compares them in
//!   this process by the correlator's rules and writes the rows, with no broker at all.
//!
//! Start with [`Recorded`] (`recorded.rs`), then [`window`], [`read`] and [`recording`].

pub mod compared;
pub mod read;
pub mod recorded;
pub mod recording;
pub mod report;
pub mod run;
pub mod window;

pub use compared::Compared;
pub use read::{ReadError, ReadOptions, Readout, read_window};
pub use recorded::{InvalidRecord, MAX_EXCHANGE_BYTES, Recorded};
pub use recording::{Recording, RecordingError};
pub use report::{ReadReport, SkipReason, Skipped, Topic};
pub use run::{Outlet, Publisher, Replayed, Run, RunError, Speed, Summary};
pub use window::{DEFAULT_LIMIT, Selection, Window, WindowError};
