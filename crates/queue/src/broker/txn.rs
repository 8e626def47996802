//! Transactional half messages with check-back (RocketMQ style).
//!
//! 1. The producer calls [`Broker::prepare`]: the message is journaled as a
//!    *half message*, invisible to consumers.
//! 2. It runs its local transaction, then calls [`Broker::commit`] (the
//!    message becomes visible) or [`Broker::rollback`].
//! 3. If neither arrives (the producer crashed, the network failed), the
//!    broker asks the producer's [`TransactionChecker`] — first after
//!    `first_check` (6 s), then every `check_interval` (60 s), at most
//!    `max_checks` (15) times; then it rolls back and reports it. Checks are
//!    driven by [`Broker::run_checks`] (call it from a timer, or use
//!    [`Broker::spawn_checker`]), on the broker's [`Clock`](kuai_core::Clock).
//!
//! Half messages and their resolutions are in the broker's journal, so a
//! pending transaction survives a restart and is checked again.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::journal::{Entry, Msg};
use super::{Broker, Inner};
use crate::error::QueueError;

/// A transaction's id.
pub type TxId = u64;

/// A transaction's outcome, as told by the producer's check-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// The local transaction committed: deliver the message.
    Commit,
    /// The local transaction failed: drop the message.
    Rollback,
    /// Not decided yet: ask again later.
    Unknown,
}

/// Check-back settings. The defaults are RocketMQ's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    /// Age of a half message before its first check (default 6 s).
    pub first_check: Duration,
    /// Time between checks (default 60 s).
    pub check_interval: Duration,
    /// Checks before giving up and rolling back (default 15).
    pub max_checks: u32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            first_check: Duration::from_secs(6),
            check_interval: Duration::from_secs(60),
            max_checks: 15,
        }
    }
}

/// The producer side of check-back. Must be idempotent: the broker may ask
/// about the same transaction more than once (and again after a restart).
pub trait TransactionChecker: Send + Sync {
    /// What happened to the local transaction behind this half message?
    fn check(&self, half: &HalfMessage) -> TxState;
}

impl<F: Fn(&HalfMessage) -> TxState + Send + Sync> TransactionChecker for F {
    fn check(&self, half: &HalfMessage) -> TxState {
        self(half)
    }
}

/// A pending half message, as shown to the checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfMessage {
    /// The transaction.
    pub txid: TxId,
    /// Destination topic.
    pub topic: String,
    /// Ordering key.
    pub key: Option<Bytes>,
    /// Body.
    pub payload: Bytes,
    /// Checks made before this one.
    pub checks: u32,
}

/// What one [`Broker::run_checks`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Transactions the checker said to commit.
    pub committed: Vec<TxId>,
    /// Transactions the checker said to roll back.
    pub rolled_back: Vec<TxId>,
    /// Rolled back because `max_checks` were exhausted (log these).
    pub gave_up: Vec<TxId>,
    /// Still unknown; checked again later.
    pub unknown: Vec<TxId>,
}

pub(crate) struct Half {
    pub(crate) msg: Msg,
    pub(crate) checks: u32,
    pub(crate) next_check: Instant,
}

impl Half {
    pub(crate) fn new(msg: Msg, now: Instant) -> Half {
        Half {
            msg,
            checks: 0,
            next_check: now,
        }
    }
}

impl Broker {
    /// Stores a half message (journaled, invisible to consumers) and returns
    /// its transaction id. Commit or roll it back when the local
    /// transaction is done.
    pub fn prepare(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<TxId, QueueError> {
        let msg = self.make_msg(topic, key, payload)?;
        let inner = &self.inner;
        let txid = {
            let mut st = inner.lock();
            let id = st.next_txid;
            st.next_txid += 1;
            id
        };
        inner.journal_apply(Entry::Half { txid, msg })?;
        Ok(txid)
    }

    /// Commits a transaction: its message becomes visible. Idempotent;
    /// `InvalidInput` if it was rolled back, `NotFound` if unknown.
    pub fn commit(&self, txid: TxId) -> Result<(), QueueError> {
        self.resolve(txid, TxState::Commit)
    }

    /// Rolls a transaction back: its message is dropped. Idempotent;
    /// `InvalidInput` if it was committed, `NotFound` if unknown.
    pub fn rollback(&self, txid: TxId) -> Result<(), QueueError> {
        self.resolve(txid, TxState::Rollback)
    }

    fn resolve(&self, txid: TxId, to: TxState) -> Result<(), QueueError> {
        let inner = &self.inner;
        {
            let st = inner.lock();
            if let Some(&done) = st.resolved.get(&txid) {
                return if done == to {
                    Ok(())
                } else {
                    Err(QueueError::InvalidInput(format!(
                        "transaction {txid} was already resolved as {done:?}"
                    )))
                };
            }
            if !st.halves.contains_key(&txid) {
                return Err(QueueError::NotFound(format!("transaction {txid}")));
            }
        }
        let entry = match to {
            TxState::Commit => Entry::Commit { txid },
            _ => Entry::Rollback { txid },
        };
        inner.journal_apply(entry)?;
        inner.changed.notify_all();
        Ok(())
    }

    /// Pending (unresolved) transactions.
    pub fn pending_transactions(&self) -> Vec<TxId> {
        self.inner.lock().halves.keys().copied().collect()
    }

    /// Runs the check-backs that are due now.
    pub fn run_checks(&self, checker: &dyn TransactionChecker) -> Result<CheckReport, QueueError> {
        let inner = &self.inner;
        let cfg = inner.cfg.txn;
        let now = inner.cfg.clock.now();
        let due: Vec<HalfMessage> = {
            let st = inner.lock();
            st.halves
                .iter()
                .filter(|(_, h)| h.next_check <= now)
                .map(|(&txid, h)| HalfMessage {
                    txid,
                    topic: h.msg.topic.clone(),
                    key: h.msg.key.clone(),
                    payload: h.msg.payload.clone(),
                    checks: h.checks,
                })
                .collect()
        };
        let mut report = CheckReport::default();
        for half in due {
            let txid = half.txid;
            match checker.check(&half) {
                TxState::Commit => {
                    self.commit(txid)?;
                    report.committed.push(txid);
                }
                TxState::Rollback => {
                    self.rollback(txid)?;
                    report.rolled_back.push(txid);
                }
                TxState::Unknown => {
                    let checks = half.checks + 1;
                    if checks >= cfg.max_checks {
                        self.rollback(txid)?;
                        report.gave_up.push(txid);
                    } else {
                        inner.journal_apply(Entry::Checked { txid, checks })?;
                        report.unknown.push(txid);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Runs [`run_checks`](Self::run_checks) every `period` on a background
    /// thread until the returned handle is dropped. Transactions given up
    /// on are passed to `on_give_up` (log them).
    pub fn spawn_checker(
        &self,
        checker: Arc<dyn TransactionChecker>,
        period: Duration,
        on_give_up: impl Fn(TxId) + Send + 'static,
    ) -> Result<CheckerHandle, QueueError> {
        let broker = self.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kuai-txn-check".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period)
                {
                    if let Ok(r) = broker.run_checks(&*checker) {
                        r.gave_up.into_iter().for_each(&on_give_up);
                    }
                }
            })
            .map_err(|e| QueueError::io("spawning the check-back thread", e))?;
        Ok(CheckerHandle {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// Stops the background checker when dropped.
pub struct CheckerHandle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for CheckerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckerHandle").finish()
    }
}

impl Drop for CheckerHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish()
    }
}
