//! The audit writer: a bounded queue drained by one background task in batches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::{AuditEvent, store};
use crate::infra::AppState;
use crate::infra::db::Db;

/// Events queued before senders wait: bursts pass, a stuck database pushes back.
const QUEUE: usize = 4096;
/// Events per transaction at most.
const BATCH: usize = 256;
/// Attempts per batch before its events go to the error log instead, unless the database
/// is merely unavailable: then the batch waits for it (and the full queue pushes back).
const ATTEMPTS: u32 = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a batch waits for company: fewer, larger commits leave the database's single
/// writer (and the disk) to state writes, at the price of events landing this much later.
const LINGER: Duration = Duration::from_millis(100);

enum Message {
    Event(Box<AuditEvent>),
    /// Answered once every event queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Queues audit events for the background writer.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
    /// Ends the writer's wait for company early: a flush, or a full batch queued.
    hurry: Arc<Notify>,
}

impl AuditSink {
    /// The sink and its writer, which the caller runs (as a background job) for as long as
    /// events should be written. Batches take the SQLite writer queue when there is one.
    pub fn new(app: &AppState) -> (AuditSink, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let hurry = Arc::new(Notify::new());
        (
            AuditSink {
                tx,
                hurry: hurry.clone(),
            },
            run(app.db.clone(), app.sqlite_writer(), rx, hurry),
        )
    }

    /// Queues one event, waiting while the queue is full.
    pub async fn send(&self, event: AuditEvent) {
        self.send_from(&mut Some(event)).await;
    }

    /// Queues the event in `slot`, waiting while the queue is full. Cancel-safe: the event
    /// leaves `slot` only once it is queued.
    pub(super) async fn send_from(&self, slot: &mut Option<AuditEvent>) {
        let permit = self.tx.reserve().await;
        let Some(event) = slot.take() else { return };
        match permit {
            Ok(permit) => permit.send(Message::Event(Box::new(event))),
            Err(_) => tracing::error!(?event, "audit writer is gone; event not recorded"),
        }
        if self.tx.max_capacity() - self.tx.capacity() >= BATCH {
            self.hurry.notify_one();
        }
    }

    /// Queues the events in `events` in order, waiting while the queue is full. Cancel-safe:
    /// an event leaves `events` only once it is queued.
    pub(super) async fn send_all_from(&self, events: &mut Vec<AuditEvent>) {
        while !events.is_empty() {
            let permit = self.tx.reserve().await;
            let event = events.remove(0);
            match permit {
                Ok(permit) => permit.send(Message::Event(Box::new(event))),
                Err(_) => tracing::error!(?event, "audit writer is gone; event not recorded"),
            }
        }
        if self.tx.max_capacity() - self.tx.capacity() >= BATCH {
            self.hurry.notify_one();
        }
    }

    /// Returns once every event queued before the call is committed (or logged as lost).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            self.hurry.notify_one();
            let _ = wait.await;
        }
    }
}

async fn run(
    db: Db,
    write_lock: Option<Arc<Mutex<()>>>,
    mut rx: mpsc::Receiver<Message>,
    hurry: Arc<Notify>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut events = Vec::with_capacity(BATCH);
    // A batch is what queues up while the last one was written plus whatever arrives within
    // `LINGER`; a flush request or a full batch cuts the wait short. While it waits the writer
    // is not woken by each event (a task wake-up per request), only by `hurry`.
    while rx.recv_many(&mut messages, BATCH).await > 0 {
        if messages.len() < BATCH && !messages.iter().any(|m| matches!(m, Message::Flush(_))) {
            let _ = tokio::time::timeout(LINGER, hurry.notified()).await;
            while messages.len() < BATCH {
                match rx.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
        }
        for message in messages.drain(..) {
            match message {
                Message::Event(event) => events.push(*event),
                Message::Flush(done) => {
                    write(&db, write_lock.as_deref(), &mut events).await;
                    let _ = done.send(());
                }
            }
        }
        write(&db, write_lock.as_deref(), &mut events).await;
    }
}

/// Commits `events` in one transaction, retrying transient failures; drains `events`.
async fn write(db: &Db, write_lock: Option<&Mutex<()>>, events: &mut Vec<AuditEvent>) {
    if events.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    for attempt in 1.. {
        let result = {
            let _turn = match write_lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            store::insert(db, events)
                .await
                .map_err(crate::error::Error::from)
        };
        match result {
            Ok(()) => {
                events.clear();
                return;
            }
            Err(e) if attempt < ATTEMPTS || matches!(e, crate::error::Error::Unavailable(_)) => {
                tracing::warn!(error = %e, attempt, "writing audit events failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                // Never dropped silently: the log keeps what the table could not.
                tracing::error!(error = %e, count = events.len(), "audit events not written");
                for event in events.drain(..) {
                    tracing::error!(?event, "unwritten audit event");
                }
                return;
            }
        }
    }
}
