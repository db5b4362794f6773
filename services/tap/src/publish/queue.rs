//! Each worker's publishing queue: finished exchanges wait here until the worker has
//! written the response's last bytes, then its publishing task hands them to the
//! [`Publisher`].

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Exchange, Outcome, Publisher};
use crate::budget::CaptureBudget;
use crate::capture::Captured;
use crate::events::{self, DropReason};

/// Finished exchanges a worker may hold before it publishes them; more are dropped and
/// counted. The worker publishes them between requests, so this only fills when publishing
/// itself falls behind.
const QUEUE_CAPACITY: usize = 8192;
/// How many finished exchanges a worker publishes in one go before serving again.
const PUBLISH_BATCH: usize = 64;

/// An exchange with both bodies done, waiting to be published.
pub(super) struct Finished {
    pub(super) exchange: Exchange,
    pub(super) outcome: Outcome,
    pub(super) request: Option<Captured>,
    pub(super) response: Option<Captured>,
}

impl Finished {
    /// What it holds of the [`CaptureBudget`].
    fn captured_bytes(&self) -> usize {
        let len = |c: &Option<Captured>| c.as_ref().map_or(0, |c| c.body.bytes.len());
        len(&self.request) + len(&self.response)
    }
}

/// One worker's publishing queue. The last body of an exchange usually ends inside the
/// write of the response's last bytes; publishing there would hold those bytes back by
/// the redaction and encoding, so the exchange waits here for the worker's publishing
/// task, which runs once the write is done.
#[derive(Clone)]
pub(crate) struct Queue {
    sender: mpsc::Sender<Finished>,
    events_per_exchange: u64,
    budget: Arc<CaptureBudget>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("free", &self.sender.capacity()).finish()
    }
}

impl Queue {
    /// A queue for the current worker, and its publishing task on the worker's runtime.
    /// The task ends once every handle to the queue is gone and the queue is empty.
    pub(crate) fn spawn(publisher: Arc<Publisher>) -> (Self, JoinHandle<()>) {
        let (sender, mut finished) = mpsc::channel::<Finished>(QUEUE_CAPACITY);
        let events_per_exchange = publisher.events_per_exchange();
        let budget = publisher.budget.clone();
        let publishing = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(PUBLISH_BATCH);
            while finished.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
                for finished in batch.drain(..) {
                    let bytes = finished.captured_bytes();
                    let Finished { exchange, outcome, request, response } = finished;
                    publisher.publish(exchange, outcome, request, response);
                    // The producer holds its own encoded copy, bounded by its own queue.
                    publisher.budget.give_back(bytes);
                }
            }
        });
        (Self { sender, events_per_exchange, budget }, publishing)
    }

    /// Whether a new exchange may be captured; one that may not is counted as dropped.
    pub(crate) fn has_room(&self) -> bool {
        let room = self.budget.has_room();
        if !room {
            self.dropped(DropReason::MemoryBudget, &"the capture memory budget is spent");
        }
        room
    }

    pub(super) fn push(&self, finished: Finished) {
        let bytes = finished.captured_bytes();
        if !self.budget.take(bytes) {
            return self.dropped(DropReason::MemoryBudget, &"the capture memory budget is spent");
        }
        if let Err(error) = self.sender.try_send(finished) {
            self.budget.give_back(bytes);
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => DropReason::QueueFull,
                mpsc::error::TrySendError::Closed(_) => DropReason::Shutdown,
            };
            self.dropped(reason, &error);
        }
    }

    fn dropped(&self, reason: DropReason, error: &dyn std::fmt::Display) {
        for _ in 0..self.events_per_exchange {
            events::dropped(reason, error);
        }
    }
}
