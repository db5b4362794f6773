//! A run compared where it runs, with no broker: each replayed exchange goes straight to the
//! correlator's [`Direct`] comparer, which writes its rows to ClickHouse by the correlator's
//! own rules, as the correlator would have off the topics.

use std::sync::Arc;

use shadowdiff_correlator::direct::{Direct, Written};
use shadowdiff_correlator::{CorrelatorConfig, CorrelatorError};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::retry::Interrupted;
use tokio::sync::Mutex;

use crate::run::{Outlet, Replayed};

/// Compares a run's exchanges in this process and writes their rows.
#[derive(Debug, Clone)]
pub struct Compared {
    direct: Arc<Mutex<Direct>>,
    /// Ends the retries of a write ClickHouse keeps failing.
    shutdown: CancellationToken,
}

impl Compared {
    /// Connects to the correlator config's ClickHouse and migrates it; writes are retried
    /// until `shutdown`.
    pub async fn connect(config: &CorrelatorConfig, shutdown: CancellationToken) -> Result<Self, CorrelatorError> {
        Ok(Self { direct: Arc::new(Mutex::new(Direct::connect(config).await?)), shutdown })
    }

    /// Writes what is still pending, and says what was written in all.
    pub async fn finish(&self) -> Result<Written, Interrupted> {
        let mut direct = self.direct.lock().await;
        direct.flush(&self.shutdown).await?;
        Ok(direct.written().clone())
    }
}

impl Outlet for Compared {
    /// Compares the exchange, and writes the pending rows once they make a batch.
    async fn keep(&self, replayed: Replayed) -> bool {
        let Replayed { request, primary, answers } = replayed;
        let mut direct = self.direct.lock().await;
        !direct.add(request, primary, answers) || direct.flush(&self.shutdown).await.is_ok()
    }
}
