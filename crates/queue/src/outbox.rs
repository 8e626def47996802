//! The outbox relay, generic over the broker it feeds.
//!
//! A service appends the messages it must publish to a local durable
//! [`Log`] (the outbox) in the same step as its state change; the
//! [`OutboxRelay`] moves them to a real broker through a [`BrokerSink`]:
//! one batch at a time, every publish of a batch in flight at once, the
//! cursor (next offset) persisted after the broker acknowledged the whole
//! batch. A crash between the acknowledgement and the cursor write resends
//! the batch, with the same dedup id per offset (`<prefix>-<offset>`):
//! NATS JetStream drops such resends itself (`Nats-Msg-Id` dedup window);
//! RabbitMQ has no dedup, so its consumers dedup by `message_id`. Either way
//! every offset is delivered at least once and identified exactly.
//!
//! Sinks: `nats::JetStreamSink` (feature `nats`), `rabbitmq::RabbitSink`
//! (feature `rabbitmq`), or your own.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::QueueError;
use crate::log::Log;

/// One outbox record on its way to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Its log offset.
    pub offset: u64,
    /// `<prefix>-<offset>`: the same on every resend.
    pub dedup_id: String,
    /// The body (a slice of the log read: no copy).
    pub payload: Bytes,
}

/// What the broker said about a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkAck {
    /// Messages the broker recognised as already stored (0 if it cannot tell).
    pub duplicates: u64,
}

/// A broker the relay can publish to.
pub trait BrokerSink: Send {
    /// Publishes `batch` in order and resolves once the broker has
    /// acknowledged (persisted) every message. An error means some may not
    /// be; the relay keeps its cursor and sends the batch again next time.
    fn publish_batch(
        &mut self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Result<SinkAck, QueueError>> + Send;
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Records sent.
    pub sent: u64,
    /// Of those, how many the broker already had (a resend after a crash).
    pub duplicates: u64,
    /// The next log offset to relay.
    pub next_offset: u64,
}

/// Moves records from a local durable log (the outbox) to a broker (see the
/// [module docs](self)).
pub struct OutboxRelay<S> {
    log: Arc<Log>,
    sink: S,
    id_prefix: String,
    cursor_path: PathBuf,
    next: u64,
}

impl<S> fmt::Debug for OutboxRelay<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("id_prefix", &self.id_prefix)
            .field("next", &self.next)
            .finish()
    }
}

impl<S: BrokerSink> OutboxRelay<S> {
    /// A relay from `log` into `sink`, its cursor in `cursor_path` (read if
    /// present). `id_prefix` names the outbox in dedup ids.
    pub fn with_sink(
        log: Arc<Log>,
        sink: S,
        id_prefix: &str,
        cursor_path: impl AsRef<Path>,
    ) -> Result<OutboxRelay<S>, QueueError> {
        let cursor_path = cursor_path.as_ref().to_path_buf();
        let next = match std::fs::read_to_string(&cursor_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| QueueError::Corrupt {
                offset: 0,
                reason: format!("outbox cursor {} is not a number", cursor_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => log.start_offset(),
            Err(e) => return Err(QueueError::io("reading the outbox cursor", e)),
        };
        Ok(OutboxRelay {
            log,
            sink,
            id_prefix: id_prefix.to_string(),
            cursor_path,
            next,
        })
    }

    /// The next offset to relay.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Relays what the log holds now, up to `max` records, one batch (one
    /// log read) at a time; persists the cursor after every acknowledged
    /// batch.
    pub async fn relay_once(&mut self, max: usize) -> Result<RelayReport, QueueError> {
        let mut report = RelayReport {
            next_offset: self.next,
            ..RelayReport::default()
        };
        while (report.sent as usize) < max && self.next < self.log.end_offset() {
            let records = self.log.read_from(self.next, 1 << 20)?;
            let take = records.len().min(max - report.sent as usize);
            let batch: Vec<OutboxMessage> = records
                .into_iter()
                .take(take)
                .map(|r| OutboxMessage {
                    offset: r.offset,
                    dedup_id: format!("{}-{}", self.id_prefix, r.offset),
                    payload: r.payload,
                })
                .collect();
            let ack = self.sink.publish_batch(&batch).await?;
            report.sent += take as u64;
            report.duplicates += ack.duplicates;
            self.next += take as u64;
            self.save_cursor()?;
            report.next_offset = self.next;
        }
        Ok(report)
    }

    fn save_cursor(&self) -> Result<(), QueueError> {
        let tmp = self.cursor_path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, self.next.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.cursor_path)
        };
        write().map_err(|e| QueueError::io("saving the outbox cursor", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records what it got and fails on demand.
    #[derive(Default)]
    struct Recorder {
        got: Vec<(String, Bytes)>,
        fail_next: bool,
    }

    impl BrokerSink for Recorder {
        fn publish_batch(
            &mut self,
            batch: &[OutboxMessage],
        ) -> impl Future<Output = Result<SinkAck, QueueError>> + Send {
            let res = if std::mem::take(&mut self.fail_next) {
                Err(QueueError::Backend("broker down".into()))
            } else {
                let before = self.got.len();
                self.got.extend(
                    batch
                        .iter()
                        .map(|m| (m.dedup_id.clone(), m.payload.clone())),
                );
                let dups = self.got[..before]
                    .iter()
                    .filter(|(id, _)| batch.iter().any(|m| &m.dedup_id == id))
                    .count() as u64;
                Ok(SinkAck { duplicates: dups })
            };
            async move { res }
        }
    }

    #[test]
    fn relay_keeps_its_cursor_when_the_broker_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path().join("log")).expect("log"));
        for i in 0..5u32 {
            log.append_sync(format!("e{i}").as_bytes()).expect("append");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let cursor = dir.path().join("cursor");
        let mut relay = OutboxRelay::with_sink(
            Arc::clone(&log),
            Recorder {
                fail_next: true,
                ..Recorder::default()
            },
            "o",
            &cursor,
        )
        .expect("relay");
        assert!(rt.block_on(relay.relay_once(10)).is_err());
        assert_eq!(relay.next_offset(), 0);
        let r = rt.block_on(relay.relay_once(10)).expect("relay");
        assert_eq!((r.sent, r.duplicates, r.next_offset), (5, 0, 5));
        let ids: Vec<&str> = relay.sink().got.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(ids, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
        // A new relay resumes from the persisted cursor.
        let again = OutboxRelay::with_sink(log, Recorder::default(), "o", &cursor).expect("relay");
        assert_eq!(again.next_offset(), 5);
        std::fs::write(&cursor, "garbage").expect("write");
        let bad = OutboxRelay::with_sink(
            Arc::new(Log::open(dir.path().join("log2")).expect("log")),
            Recorder::default(),
            "o",
            &cursor,
        );
        assert!(matches!(bad, Err(QueueError::Corrupt { .. })));
    }
}
