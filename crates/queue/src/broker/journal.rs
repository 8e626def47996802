//! The broker's journal records: everything the broker must remember across
//! restarts goes into one shared commit log (RocketMQ's design), as one of
//! these records.

use bytes::Bytes;

use crate::error::QueueError;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A visible message.
    Publish(Msg),
    /// A half (prepared, invisible) message of transaction `txid`.
    Half { txid: u64, msg: Msg },
    /// Transaction committed: its half message becomes visible.
    Commit { txid: u64 },
    /// Transaction rolled back (by the producer or after too many checks).
    Rollback { txid: u64 },
    /// Check-backs made so far for a transaction.
    Checked { txid: u64, checks: u32 },
    /// A consumer group's committed offset.
    Offset {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Bytes,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_msg(out: &mut Vec<u8>, m: &Msg) {
    put_bytes(out, m.topic.as_bytes());
    out.extend_from_slice(&m.partition.to_le_bytes());
    match &m.key {
        Some(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        None => out.push(0),
    }
    put_bytes(out, &m.payload);
}

impl Entry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Entry::Publish(m) => {
                out.push(1);
                put_msg(&mut out, m);
            }
            Entry::Half { txid, msg } => {
                out.push(2);
                out.extend_from_slice(&txid.to_le_bytes());
                put_msg(&mut out, msg);
            }
            Entry::Commit { txid } => {
                out.push(3);
                out.extend_from_slice(&txid.to_le_bytes());
            }
            Entry::Rollback { txid } => {
                out.push(4);
                out.extend_from_slice(&txid.to_le_bytes());
            }
            Entry::Checked { txid, checks } => {
                out.push(5);
                out.extend_from_slice(&txid.to_le_bytes());
                out.extend_from_slice(&checks.to_le_bytes());
            }
            Entry::Offset {
                group,
                topic,
                partition,
                offset,
            } => {
                out.push(6);
                put_bytes(&mut out, group.as_bytes());
                put_bytes(&mut out, topic.as_bytes());
                out.extend_from_slice(&partition.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        out
    }

    /// Decodes an entry; `payload` is the record's buffer (slices share it).
    pub(crate) fn decode(offset: u64, payload: &Bytes) -> Result<Entry, QueueError> {
        let mut r = Reader {
            b: payload,
            at: 0,
            offset,
        };
        let e = match r.u8()? {
            1 => Entry::Publish(r.msg()?),
            2 => {
                let txid = r.u64()?;
                Entry::Half {
                    txid,
                    msg: r.msg()?,
                }
            }
            3 => Entry::Commit { txid: r.u64()? },
            4 => Entry::Rollback { txid: r.u64()? },
            5 => Entry::Checked {
                txid: r.u64()?,
                checks: r.u32()?,
            },
            6 => Entry::Offset {
                group: r.string()?,
                topic: r.string()?,
                partition: r.u32()?,
                offset: r.u64()?,
            },
            k => return Err(r.bad(&format!("unknown entry kind {k}"))),
        };
        if r.at != payload.len() {
            return Err(r.bad("trailing bytes"));
        }
        Ok(e)
    }
}

struct Reader<'a> {
    b: &'a Bytes,
    at: usize,
    offset: u64,
}

impl Reader<'_> {
    fn bad(&self, why: &str) -> QueueError {
        QueueError::Corrupt {
            offset: self.offset,
            reason: format!("broker journal entry: {why}"),
        }
    }
    fn take(&mut self, n: usize) -> Result<Bytes, QueueError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(self.bad("truncated"));
        };
        let s = self.b.slice(self.at..end);
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, QueueError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, QueueError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, QueueError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes, QueueError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, QueueError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("name is not UTF-8"))
    }
    fn msg(&mut self) -> Result<Msg, QueueError> {
        let topic = self.string()?;
        let partition = self.u32()?;
        let key = match self.u8()? {
            0 => None,
            1 => Some(self.bytes()?),
            _ => return Err(self.bad("bad key flag")),
        };
        Ok(Msg {
            topic,
            partition,
            key,
            payload: self.bytes()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg() -> impl Strategy<Value = Msg> {
        (
            "[a-z]{0,8}",
            any::<u32>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(topic, partition, key, payload)| Msg {
                topic,
                partition,
                key: key.map(Bytes::from),
                payload: Bytes::from(payload),
            })
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            msg().prop_map(Entry::Publish),
            (any::<u64>(), msg()).prop_map(|(txid, msg)| Entry::Half { txid, msg }),
            any::<u64>().prop_map(|txid| Entry::Commit { txid }),
            any::<u64>().prop_map(|txid| Entry::Rollback { txid }),
            (any::<u64>(), any::<u32>()).prop_map(|(txid, checks)| Entry::Checked { txid, checks }),
            ("[a-z]{0,6}", "[a-z]{0,6}", any::<u32>(), any::<u64>()).prop_map(
                |(group, topic, partition, offset)| Entry::Offset {
                    group,
                    topic,
                    partition,
                    offset
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(e in entry()) {
            let b = Bytes::from(e.encode());
            prop_assert_eq!(Entry::decode(0, &b).expect("decode"), e);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Entry::decode(1, &Bytes::from(b));
        }
    }
}
