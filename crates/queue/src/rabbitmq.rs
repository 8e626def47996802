//! The RabbitMQ adapter (feature `rabbitmq`, via `lapin`): publishes with
//! **publisher confirms** into **durable** queues as persistent messages,
//! consumers with manual **ack** (unacked messages are redelivered when the
//! consumer's channel closes), and the [outbox relay](crate::outbox) into a
//! queue.
//!
//! RabbitMQ has no dedup window: a relay that crashed between the broker's
//! confirm and its cursor write resends a batch, with the same `message_id`
//! (`<prefix>-<offset>`) per record, so consumers dedup by it.
//!
//! Needs a broker at 127.0.0.1:5672 (guest/guest), the default URL.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::error::QueueError;
use crate::log::Log;
use crate::outbox::{BrokerSink, OutboxMessage, SinkAck};

/// Where kuai expects a local RabbitMQ.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn backend(what: &str, e: impl fmt::Display) -> QueueError {
    QueueError::Backend(format!("{what}: {e}"))
}

/// A connection with one publishing channel in confirm mode.
pub struct RabbitMq {
    conn: Arc<Connection>,
    channel: Channel,
}

impl fmt::Debug for RabbitMq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMq").finish()
    }
}

impl RabbitMq {
    /// Connects to `url` (e.g. [`DEFAULT_URL`]) and opens a channel with
    /// publisher confirms. The error says how to start a broker when none
    /// is listening.
    pub async fn connect(url: &str) -> Result<RabbitMq, QueueError> {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| backend(&format!("connecting to RabbitMQ at {url}"), "timed out"))?
        .map_err(|e| {
            backend(
                &format!(
                    "connecting to RabbitMQ at {url} (start one with `rabbitmq-server` or \
                     `service rabbitmq-server start`; user guest/guest)"
                ),
                e,
            )
        })?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| backend("opening a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| backend("enabling publisher confirms", e))?;
        Ok(RabbitMq {
            conn: Arc::new(conn),
            channel,
        })
    }

    /// Declares a durable queue (survives a broker restart; idempotent).
    pub async fn declare_durable_queue(&self, name: &str) -> Result<(), QueueError> {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| backend("declaring queue", e))?;
        Ok(())
    }

    /// Messages ready in a queue (not counting unacked deliveries).
    pub async fn queue_len(&self, name: &str) -> Result<u32, QueueError> {
        let q = self
            .channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::durable()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| backend("inspecting queue", e))?;
        Ok(q.message_count())
    }

    /// Deletes a queue; returns how many messages it held.
    pub async fn delete_queue(&self, name: &str) -> Result<u32, QueueError> {
        self.channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| backend("deleting queue", e))
    }

    /// Publishes a persistent message to `queue` (default exchange,
    /// mandatory) and waits for the broker's confirm.
    pub async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        msg_id: Option<&str>,
    ) -> Result<(), QueueError> {
        self.publish_nowait(queue, payload, msg_id).await?.await
    }

    /// Sends a publish and returns a future of its confirm, so many can be
    /// in flight. The confirm fails if the broker nacks the message or
    /// returns it as unroutable (no such queue).
    pub async fn publish_nowait(
        &self,
        queue: &str,
        payload: &[u8],
        msg_id: Option<&str>,
    ) -> Result<impl Future<Output = Result<(), QueueError>> + Send + use<>, QueueError> {
        let mut props = BasicProperties::default().with_delivery_mode(2); // persistent
        if let Some(id) = msg_id {
            props = props.with_message_id(id.into());
        }
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                props,
            )
            .await
            .map_err(|e| backend("publishing", e))?;
        Ok(async move {
            let c = confirm
                .await
                .map_err(|e| backend("awaiting publisher confirm", e))?;
            if c.is_nack() {
                return Err(QueueError::Backend("the broker nacked the message".into()));
            }
            if let Some(returned) = c.take_message() {
                return Err(QueueError::Backend(format!(
                    "message returned unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                )));
            }
            Ok(())
        })
    }

    /// A consumer on `queue` on its own channel, manual acks, at most
    /// `prefetch` unacked deliveries at a time.
    pub async fn consumer(
        &self,
        queue: &str,
        tag: &str,
        prefetch: u16,
    ) -> Result<RabbitConsumer, QueueError> {
        let channel = self
            .conn
            .create_channel()
            .await
            .map_err(|e| backend("opening a channel", e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| backend("setting prefetch", e))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| backend("consuming", e))?;
        Ok(RabbitConsumer { consumer, channel })
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<(), QueueError> {
        self.conn
            .close(200, "bye".into())
            .await
            .map_err(|e| backend("closing", e))
    }
}

/// A consumer with manual acks; dropping or [closing](Self::close) it
/// without acking gets its deliveries redelivered to another consumer.
pub struct RabbitConsumer {
    consumer: lapin::Consumer,
    channel: Channel,
}

impl fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConsumer").finish()
    }
}

impl RabbitConsumer {
    /// The next delivery, or `None` if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<RabbitDelivery>, QueueError> {
        match tokio::time::timeout(timeout, self.consumer.next()).await {
            Err(_) => Ok(None),
            Ok(None) => Err(QueueError::Closed),
            Ok(Some(d)) => Ok(Some(RabbitDelivery {
                d: d.map_err(|e| backend("receiving", e))?,
            })),
        }
    }

    /// Closes the consumer's channel: unacked deliveries go back to the queue.
    pub async fn close(self) -> Result<(), QueueError> {
        self.channel
            .close(200, "bye".into())
            .await
            .map_err(|e| backend("closing channel", e))
    }
}

/// One delivery; ack it, or it is redelivered once its channel closes.
pub struct RabbitDelivery {
    d: lapin::message::Delivery,
}

impl fmt::Debug for RabbitDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitDelivery")
            .field("msg_id", &self.msg_id())
            .field("redelivered", &self.d.redelivered)
            .field("len", &self.d.data.len())
            .finish()
    }
}

impl RabbitDelivery {
    /// The body.
    pub fn payload(&self) -> &[u8] {
        &self.d.data
    }
    /// The `message_id` property (the outbox's dedup id).
    pub fn msg_id(&self) -> Option<&str> {
        self.d.properties.message_id().as_ref().map(|s| s.as_str())
    }
    /// Whether the broker delivered it before (to a consumer that did not ack).
    pub fn redelivered(&self) -> bool {
        self.d.redelivered
    }
    /// Acknowledges it.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.d
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| backend("acking", e))
    }
    /// Rejects it; `requeue` puts it back in the queue.
    pub async fn nack(&self, requeue: bool) -> Result<(), QueueError> {
        self.d
            .nack(BasicNackOptions {
                requeue,
                ..BasicNackOptions::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| backend("nacking", e))
    }
}

/// A [`BrokerSink`] into one durable queue: every message of a batch is
/// published persistent with `message_id = <dedup id>`, all confirms
/// awaited. RabbitMQ reports no duplicates (it does not dedup).
#[derive(Debug)]
pub struct RabbitSink {
    mq: RabbitMq,
    queue: String,
}

impl RabbitSink {
    /// A sink into `queue` (declare it durable first).
    pub fn new(mq: RabbitMq, queue: &str) -> RabbitSink {
        RabbitSink {
            mq,
            queue: queue.to_string(),
        }
    }
    /// The connection.
    pub fn rabbitmq(&self) -> &RabbitMq {
        &self.mq
    }
}

impl BrokerSink for RabbitSink {
    fn publish_batch(
        &mut self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Result<SinkAck, QueueError>> + Send {
        let channel = self.mq.channel.clone();
        let queue = self.queue.clone();
        let batch: Vec<OutboxMessage> = batch.to_vec();
        async move {
            let mut confirms = Vec::with_capacity(batch.len());
            for m in &batch {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(m.dedup_id.as_str().into());
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &m.payload,
                            props,
                        )
                        .await
                        .map_err(|e| backend("publishing", e))?,
                );
            }
            for c in confirms {
                let c = c
                    .await
                    .map_err(|e| backend("awaiting publisher confirm", e))?;
                if c.is_nack() {
                    return Err(QueueError::Backend("the broker nacked a message".into()));
                }
                if let Some(r) = c.take_message() {
                    return Err(QueueError::Backend(format!(
                        "message returned unroutable: {} {}",
                        r.reply_code, r.reply_text
                    )));
                }
            }
            Ok(SinkAck::default())
        }
    }
}

/// The outbox relay into a RabbitMQ queue (see [`crate::outbox`]).
pub type OutboxRelay = crate::outbox::OutboxRelay<RabbitSink>;

impl crate::outbox::OutboxRelay<RabbitSink> {
    /// A relay from `log` to the durable queue `queue`, its cursor in
    /// `cursor_path` (read if present). `id_prefix` names the outbox in
    /// message ids.
    pub fn rabbitmq(
        log: Arc<Log>,
        mq: RabbitMq,
        queue: &str,
        id_prefix: &str,
        cursor_path: impl AsRef<Path>,
    ) -> Result<OutboxRelay, QueueError> {
        Self::with_sink(log, RabbitSink::new(mq, queue), id_prefix, cursor_path)
    }
}
