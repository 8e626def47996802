//! The NATS JetStream adapter (feature `nats`): publish with acks, durable
//! pull consumers, and the [outbox relay](crate::outbox) into a JetStream
//! subject exactly once per offset (at-least-once sends, deduplicated by
//! JetStream through a `Nats-Msg-Id` derived from the log offset).
//!
//! Needs a `nats-server -js` at 127.0.0.1:4222 (the default URL).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::QueueError;
use crate::log::Log;
use crate::outbox::{BrokerSink, OutboxMessage, SinkAck};

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

pub use crate::outbox::RelayReport;

/// The outbox relay into a JetStream subject (see [`crate::outbox`]).
pub type OutboxRelay = crate::outbox::OutboxRelay<JetStreamSink>;

/// A [`BrokerSink`] publishing to one JetStream subject with
/// `Nats-Msg-Id = <dedup id>`: JetStream drops resends inside the stream's
/// dedup window, so each offset lands exactly once.
#[derive(Debug, Clone)]
pub struct JetStreamSink {
    js: JetStream,
    subject: String,
}

impl JetStreamSink {
    /// A sink into `subject`.
    pub fn new(js: JetStream, subject: &str) -> JetStreamSink {
        JetStreamSink {
            js,
            subject: subject.to_string(),
        }
    }
}

impl BrokerSink for JetStreamSink {
    fn publish_batch(
        &mut self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Result<SinkAck, QueueError>> + Send {
        let js = self.js.clone();
        let subject = self.subject.clone();
        let batch: Vec<(String, Bytes)> = batch
            .iter()
            .map(|m| (m.dedup_id.clone(), m.payload.clone()))
            .collect();
        async move {
            let mut acks = Vec::with_capacity(batch.len());
            for (id, payload) in batch {
                acks.push(js.publish_nowait(&subject, payload, Some(&id)).await?);
            }
            let mut ack = SinkAck::default();
            for a in acks {
                ack.duplicates += u64::from(a.await?.duplicate);
            }
            Ok(ack)
        }
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
        Self::with_sink(log, JetStreamSink::new(js, subject), id_prefix, cursor_path)
    }
}
