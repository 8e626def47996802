//! The NATS JetStream adapter (feature `nats`): publish with acks, durable
//! pull consumers, and an **outbox relay** that moves records from the local
//! durable [`Log`] to a JetStream subject exactly once per offset
//! (at-least-once sends, deduplicated by JetStream through a `Nats-Msg-Id`
//! derived from the log offset).
//!
//! Needs a `nats-server -js` at 127.0.0.1:4222 (the default URL).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::QueueError;
use crate::log::Log;

/// Where kuai expects a local NATS server.
pub const DEFAULT_URL: &str = "127.0.0.1:4222";

fn backend(what: &str, e: impl fmt::Display) -> QueueError {
    QueueError::Backend(format!("{what}: {e}"))
}

/// A JetStream connection.
#[derive(Clone)]
pub struct JetStream {
    js: jetstream::Context,
}

impl fmt::Debug for JetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStream").finish()
    }
}

/// The broker's acknowledgement of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The message's sequence in the stream.
    pub sequence: u64,
    /// True if JetStream recognised the `Nats-Msg-Id` and stored nothing new.
    pub duplicate: bool,
}

impl JetStream {
    /// Connects to `url` (e.g. [`DEFAULT_URL`]). The error says how to
    /// start a server when none is listening.
    pub async fn connect(url: &str) -> Result<JetStream, QueueError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(|e| {
                backend(
                    &format!("connecting to NATS at {url} (start one with `nats-server -js`)"),
                    e,
                )
            })?;
        Ok(JetStream {
            js: jetstream::new(client),
        })
    }

    /// Creates (or reuses) a file-backed stream capturing `subjects`, with
    /// a deduplication window of `dedup_window`.
    pub async fn ensure_stream(
        &self,
        name: &str,
        subjects: &[&str],
        dedup_window: Duration,
    ) -> Result<(), QueueError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: name.to_string(),
                subjects: subjects.iter().map(|s| s.to_string()).collect(),
                storage: stream::StorageType::File,
                duplicate_window: dedup_window,
                ..Default::default()
            })
            .await
            .map_err(|e| backend("creating stream", e))?;
        Ok(())
    }

    /// Deletes a stream.
    pub async fn delete_stream(&self, name: &str) -> Result<(), QueueError> {
        self.js
            .delete_stream(name)
            .await
            .map_err(|e| backend("deleting stream", e))?;
        Ok(())
    }

    /// Messages stored in a stream.
    pub async fn stream_len(&self, name: &str) -> Result<u64, QueueError> {
        let mut s = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| backend("getting stream", e))?;
        let info = s.info().await.map_err(|e| backend("stream info", e))?;
        Ok(info.state.messages)
    }

    /// Publishes and waits for the stream's acknowledgement.
    pub async fn publish(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<PublishAck, QueueError> {
        self.publish_nowait(subject, payload, msg_id).await?.await
    }

    /// Sends a publish and returns a future of its acknowledgement, so many
    /// can be in flight (JetStream's "async publish").
    pub async fn publish_nowait(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<
        impl std::future::Future<Output = Result<PublishAck, QueueError>> + Send + use<>,
        QueueError,
    > {
        let mut p = jetstream::context::Publish::build().payload(payload);
        if let Some(id) = msg_id {
            p = p.message_id(id);
        }
        let fut = self
            .js
            .send_publish(subject.to_string(), p)
            .await
            .map_err(|e| backend("publishing", e))?;
        Ok(async move {
            let ack = fut.await.map_err(|e| backend("awaiting publish ack", e))?;
            Ok(PublishAck {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }

    /// A durable pull consumer named `durable` on `stream` (created if
    /// missing; resumes where it left off otherwise). Explicit acks.
    pub async fn durable_consumer(
        &self,
        stream: &str,
        durable: &str,
        ack_wait: Duration,
    ) -> Result<DurableConsumer, QueueError> {
        let s = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| backend("getting stream", e))?;
        let consumer = s
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_string()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| backend("creating consumer", e))?;
        Ok(DurableConsumer { consumer })
    }
}

/// A durable JetStream pull consumer.
pub struct DurableConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

impl fmt::Debug for DurableConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableConsumer").finish()
    }
}

/// A message from a [`DurableConsumer`]; ack it, or it is redelivered after
/// the consumer's ack wait.
pub struct JsMessage {
    msg: jetstream::Message,
}

impl fmt::Debug for JsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsMessage")
            .field("subject", &self.msg.subject.as_str())
            .field("len", &self.msg.payload.len())
            .finish()
    }
}

impl JsMessage {
    /// The body.
    pub fn payload(&self) -> &Bytes {
        &self.msg.payload
    }
    /// The `Nats-Msg-Id`, if it had one.
    pub fn msg_id(&self) -> Option<&str> {
        self.msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str())
    }
    /// Acknowledges it.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.msg.ack().await.map_err(|e| backend("acking", e))
    }
}

impl DurableConsumer {
    /// Fetches up to `max` messages, waiting at most `expires`.
    pub async fn fetch(&self, max: usize, expires: Duration) -> Result<Vec<JsMessage>, QueueError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| backend("fetching", e))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            out.push(JsMessage {
                msg: m.map_err(|e| backend("fetching", e))?,
            });
        }
        Ok(out)
    }
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Records sent.
    pub sent: u64,
    /// Of those, how many JetStream already had (a resend after a crash).
    pub duplicates: u64,
    /// The next log offset to relay.
    pub next_offset: u64,
}

/// Moves records from a local durable log (the outbox) to a JetStream
/// subject. The cursor (next offset) is persisted in a file after every
/// acknowledged batch; a crash between the two causes a resend, which
/// JetStream drops as a duplicate of `Nats-Msg-Id = <prefix>-<offset>`, so
/// each offset lands exactly once (within the stream's dedup window).
pub struct OutboxRelay {
    log: Arc<Log>,
    js: JetStream,
    subject: String,
    id_prefix: String,
    cursor_path: PathBuf,
    next: u64,
}

impl fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("subject", &self.subject)
            .field("next", &self.next)
            .finish()
    }
}

impl OutboxRelay {
    /// A relay from `log` to `subject`, its cursor in `cursor_path`
    /// (read if present). `id_prefix` names the outbox in dedup ids.
    pub fn new(
        log: Arc<Log>,
        js: JetStream,
        subject: &str,
        id_prefix: &str,
        cursor_path: impl AsRef<Path>,
    ) -> Result<OutboxRelay, QueueError> {
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
            js,
            subject: subject.to_string(),
            id_prefix: id_prefix.to_string(),
            cursor_path,
            next,
        })
    }

    /// The next offset to relay.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Relays what the log holds now, up to `max` records, with every
    /// publish of a batch in flight at once; persists the cursor.
    pub async fn relay_once(&mut self, max: usize) -> Result<RelayReport, QueueError> {
        let mut report = RelayReport {
            next_offset: self.next,
            ..RelayReport::default()
        };
        while (report.sent as usize) < max && self.next < self.log.end_offset() {
            let records = match self.log.read_from(self.next, 1 << 20) {
                Ok(r) => r,
                Err(QueueError::Corrupt { offset, reason }) => {
                    return Err(QueueError::Corrupt { offset, reason });
                }
                Err(e) => return Err(e),
            };
            let take = records.len().min(max - report.sent as usize);
            let mut acks = Vec::with_capacity(take);
            for r in records.iter().take(take) {
                let id = format!("{}-{}", self.id_prefix, r.offset);
                acks.push(
                    self.js
                        .publish_nowait(&self.subject, r.payload.clone(), Some(&id))
                        .await?,
                );
            }
            for a in acks {
                let ack = a.await?;
                report.sent += 1;
                report.duplicates += u64::from(ack.duplicate);
            }
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
