//! Comparing without the brokers: whole exchanges handed over in process, as a replay run
//! judged where it runs hands them over, become rows by the consume loop's own
//! `RowBuilder` (the same diff rules, noise model and sampling) and are written by its own
//! [`Sink`]. So a run compared here has the very rows the correlator would have written for
//! it off the topics.
//!
//! No join is needed: each exchange arrives whole, its request, the primary's answer and
//! every shadow's, so it is compared at once. Nothing is dead-lettered, since there is no
//! broker: a row ClickHouse rejects on its own is skipped and counted by reason in
//! [`Written`], and the rest are written.

use std::collections::{BTreeMap, HashSet};

use shadowdiff_core::{RequestEvent, ResponseEvent};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::Health;
use shadowdiff_runtime::retry::Interrupted;
use shadowdiff_store::Outcome;

use crate::config::CorrelatorConfig;
use crate::join::Exchange;
use crate::sink::{self, Batch, Sink, rows::RowBuilder};
use crate::{CorrelatorError, consume};

/// Compares whole exchanges and writes their rows, under a correlator's config.
#[derive(Debug)]
pub struct Direct {
    rows: RowBuilder,
    sink: Sink,
    batch: Batch,
    max_batch_rows: usize,
    health: Health,
    written: Written,
}

/// What a [`Direct`] comparer has written so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Comparison rows (one per shadow leg) written.
    pub comparisons: u64,
    /// Of those, complete comparisons: both sides answered.
    pub complete: u64,
    /// Rows ClickHouse rejected on their own, by table and reason; the rest were written.
    pub rejected: BTreeMap<String, u64>,
}

impl Direct {
    /// Connects to the config's ClickHouse, applying pending migrations, with its
    /// `[correlator]` rules. Neither `[kafka]` nor `[topics]` is used.
    pub async fn connect(config: &CorrelatorConfig) -> Result<Self, CorrelatorError> {
        Ok(Self {
            rows: RowBuilder::new(consume::route_rules(&config.correlator), &config.correlator),
            sink: Sink::connect(&config.clickhouse).await?,
            batch: Batch::default(),
            max_batch_rows: config.correlator.max_batch_rows,
            health: Health::default(),
            written: Written::default(),
        })
    }

    /// Compares one whole exchange into the pending rows. True when they make a batch,
    /// which the caller then [`flush`](Self::flush)es.
    pub fn add(&mut self, request: RequestEvent, primary: ResponseEvent, shadows: Vec<ResponseEvent>) -> bool {
        let exchange = Exchange { request: Some(request), primary: Some(primary), shadows, ..Exchange::default() };
        self.rows.add(&mut self.batch, exchange);
        self.batch.exchanges.len() >= self.max_batch_rows
    }

    /// Writes the pending rows: until each is written or rejected on its own, retrying what
    /// may pass later until `shutdown`.
    pub async fn flush(&mut self, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rejected = self.sink.store(&self.batch, shutdown, &self.health).await?;
        let refused: HashSet<&str> =
            rejected.iter().filter(|r| r.table == sink::EXCHANGES).map(|r| r.request_id.as_str()).collect();
        for row in self.batch.exchanges.iter().filter(|r| !refused.contains(r.request_id.as_str())) {
            self.written.comparisons += 1;
            self.written.complete += u64::from(row.outcome == Outcome::Complete.as_str());
        }
        for row in &rejected {
            let reason = row.rejection.code.and_then(sink::code_name).unwrap_or("rejected");
            *self.written.rejected.entry(format!("{}: {reason}", row.table)).or_default() += 1;
        }
        self.batch = Batch::default();
        Ok(())
    }

    pub fn written(&self) -> &Written {
        &self.written
    }
}
