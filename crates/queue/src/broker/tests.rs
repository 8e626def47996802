use super::*;
use kuai_core::ManualClock;

fn broker(clock: &ManualClock) -> Broker {
    Broker::builder()
        .partitions(2)
        .visibility_timeout(Duration::from_secs(30))
        .clock(Arc::new(clock.clone()))
        .in_memory()
}

fn payloads(ms: &[Message]) -> Vec<&[u8]> {
    ms.iter().map(|m| m.payload.as_ref()).collect()
}

#[test]
fn pub_sub_every_group_gets_every_message() {
    let b = broker(&ManualClock::new());
    let a = b.consumer("t", "a");
    let c = b.consumer("t", "c");
    for i in 0..10u8 {
        b.publish("t", None, &[i]).expect("publish");
    }
    for cons in [&a, &c] {
        let mut got = cons.try_poll(100).expect("poll");
        assert_eq!(got.len(), 10);
        got.sort_by_key(|m| m.payload[0]);
        assert_eq!(got[9].payload.as_ref(), &[9]);
        for m in &got {
            cons.ack(m).expect("ack");
        }
        assert!(cons.try_poll(100).expect("poll").is_empty());
    }
    assert_eq!(b.committed_offsets("t", "a").iter().sum::<u64>(), 10);
}

#[test]
fn competing_consumers_share_without_duplicates() {
    let b = broker(&ManualClock::new());
    let w1 = b.consumer("jobs", "workers");
    let w2 = b.consumer("jobs", "workers");
    for i in 0..100u8 {
        b.publish("jobs", None, &[i]).expect("publish");
    }
    let mut seen = Vec::new();
    loop {
        let a = w1.try_poll(7).expect("poll");
        let c = w2.try_poll(5).expect("poll");
        if a.is_empty() && c.is_empty() {
            break;
        }
        for m in &a {
            w1.ack(m).expect("ack");
        }
        for m in &c {
            w2.ack(m).expect("ack");
        }
        seen.extend(a.iter().chain(c.iter()).map(|m| m.payload[0]));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<u8>>());
}

#[test]
fn unacked_messages_are_redelivered_after_the_visibility_timeout() {
    let clock = ManualClock::new();
    let b = broker(&clock);
    let crashed = b.consumer("t", "g");
    b.publish("t", Some(b"k"), b"x").expect("publish");
    let first = crashed.try_poll(1).expect("poll");
    assert_eq!(first[0].delivery, 1);
    drop(crashed); // never acks
    let survivor = b.consumer("t", "g");
    assert!(survivor.try_poll(1).expect("poll").is_empty());
    clock.advance(Duration::from_secs(31));
    let again = survivor.try_poll(1).expect("poll");
    assert_eq!(payloads(&again), vec![b"x".as_ref()]);
    assert_eq!(again[0].delivery, 2);
    survivor.nack(&again[0]).expect("nack");
    let third = survivor.try_poll(1).expect("poll");
    assert_eq!(third[0].delivery, 3);
}

#[test]
fn per_key_order_holds_with_competing_consumers() {
    let b = Broker::builder().partitions(1).in_memory();
    let c1 = b.consumer("t", "g");
    let c2 = b.consumer("t", "g");
    b.publish("t", Some(b"k1"), b"a").expect("p");
    b.publish("t", Some(b"k1"), b"b").expect("p");
    b.publish("t", Some(b"k2"), b"c").expect("p");
    let got = c1.try_poll(10).expect("poll");
    assert_eq!(payloads(&got), vec![b"a".as_ref(), b"c".as_ref()]);
    // b waits for a, even for another consumer.
    assert!(c2.try_poll(10).expect("poll").is_empty());
    c1.ack(&got[0]).expect("ack");
    let next = c2.try_poll(10).expect("poll");
    assert_eq!(payloads(&next), vec![b"b".as_ref()]);
}

#[test]
fn oversized_messages_are_rejected() {
    let b = Broker::builder().max_message_bytes(8).in_memory();
    assert!(matches!(
        b.publish("t", None, &[0u8; 9]),
        Err(QueueError::Oversized { size: 9, max: 8 })
    ));
    assert!(matches!(
        b.prepare("t", None, &[0u8; 9]),
        Err(QueueError::Oversized { .. })
    ));
}

#[test]
fn durable_broker_restores_messages_offsets_and_redelivers_unacked() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let b = Broker::builder()
            .partitions(1)
            .open(dir.path())
            .expect("open");
        let c = b.consumer("t", "g");
        for i in 0..5u8 {
            b.publish("t", None, &[i]).expect("publish");
        }
        let got = c.try_poll(3).expect("poll");
        c.ack(&got[0]).expect("ack");
        c.ack(&got[1]).expect("ack");
        // got[2] delivered but not acked when the process "dies".
    }
    let b = Broker::builder()
        .partitions(1)
        .open(dir.path())
        .expect("reopen");
    assert_eq!(b.topic_len("t"), 5);
    assert_eq!(b.committed_offsets("t", "g"), vec![2]);
    let c = b.consumer("t", "g");
    let got = c.try_poll(10).expect("poll");
    assert_eq!(payloads(&got), vec![[2u8].as_ref(), &[3], &[4]]);
}

#[test]
fn half_messages_are_invisible_until_commit() {
    let b = broker(&ManualClock::new());
    let c = b.consumer("orders", "g");
    let commit = b.prepare("orders", None, b"paid").expect("prepare");
    let abort = b.prepare("orders", None, b"cancelled").expect("prepare");
    assert!(c.try_poll(10).expect("poll").is_empty());
    b.commit(commit).expect("commit");
    b.commit(commit).expect("commit is idempotent");
    b.rollback(abort).expect("rollback");
    assert!(b.commit(abort).is_err());
    assert!(matches!(b.commit(999), Err(QueueError::NotFound(_))));
    assert_eq!(
        payloads(&c.try_poll(10).expect("poll")),
        vec![b"paid".as_ref()]
    );
    assert!(b.pending_transactions().is_empty());
}

#[test]
fn check_back_follows_rocketmq_schedule_then_rolls_back() {
    let clock = ManualClock::new();
    let b = broker(&clock);
    let tx = b.prepare("t", None, b"m").expect("prepare");
    let asked = std::sync::atomic::AtomicU32::new(0);
    let unknown = |h: &HalfMessage| {
        assert_eq!(h.txid, tx);
        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TxState::Unknown
    };
    clock.advance(Duration::from_millis(5999));
    assert_eq!(
        b.run_checks(&unknown).expect("checks"),
        CheckReport::default()
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.run_checks(&unknown).expect("checks").unknown, vec![tx]);
    // Next check 60 s later, not before.
    clock.advance(Duration::from_secs(59));
    assert!(b.run_checks(&unknown).expect("checks").unknown.is_empty());
    for _ in 0..13 {
        clock.advance(Duration::from_secs(60));
        assert_eq!(b.run_checks(&unknown).expect("checks").unknown, vec![tx]);
    }
    clock.advance(Duration::from_secs(60));
    let r = b.run_checks(&unknown).expect("checks");
    assert_eq!(r.gave_up, vec![tx]);
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 15);
    assert!(b.pending_transactions().is_empty());
    assert_eq!(b.topic_len("t"), 0);
}

#[test]
fn check_back_commits_and_half_messages_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new();
    let open = || {
        Broker::builder()
            .clock(Arc::new(clock.clone()))
            .open(dir.path())
            .expect("open")
    };
    let (tx, tx2) = {
        let b = open();
        let tx = b
            .prepare("orders", Some(b"o-1"), b"created")
            .expect("prepare");
        let tx2 = b
            .prepare("orders", Some(b"o-2"), b"created")
            .expect("prepare");
        clock.advance(Duration::from_secs(6));
        let r = b
            .run_checks(&|_: &HalfMessage| TxState::Unknown)
            .expect("check");
        assert_eq!(r.unknown.len(), 2);
        (tx, tx2)
        // producer and broker "crash" here
    };
    let b = open();
    assert_eq!(b.pending_transactions(), vec![tx, tx2]);
    assert_eq!(b.topic_len("orders"), 0);
    let r = b
        .run_checks(&|h: &HalfMessage| {
            assert_eq!(h.checks, 1, "check count survives the restart");
            if h.txid == tx {
                TxState::Commit
            } else {
                TxState::Rollback
            }
        })
        .expect("check");
    assert_eq!((r.committed, r.rolled_back), (vec![tx], vec![tx2]));
    let c = b.consumer("orders", "g");
    assert_eq!(
        payloads(&c.try_poll(10).expect("poll")),
        vec![b"created".as_ref()]
    );
    drop(c);
    drop(b);
    let b = open();
    assert!(b.pending_transactions().is_empty());
    assert_eq!(b.topic_len("orders"), 1);
}

#[test]
fn blocking_poll_wakes_on_publish() {
    let b = Broker::builder().in_memory();
    let c = b.consumer("t", "g");
    std::thread::scope(|s| {
        let h = s.spawn(|| c.poll(1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(10));
        b.publish("t", None, b"hi").expect("publish");
        assert_eq!(h.join().expect("join").expect("poll").len(), 1);
    });
}

#[test]
fn concurrent_publishes_keep_their_offsets_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut placed: Vec<(u64, Vec<u8>)> = {
        let b = Broker::builder()
            .partitions(1)
            .open(dir.path())
            .expect("open");
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u8)
                .map(|t| {
                    let b = b.clone();
                    s.spawn(move || {
                        (0..50u8)
                            .map(|i| {
                                let body = vec![t, i];
                                let (_, off) = b.publish("t", None, &body).expect("publish");
                                (off, body)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("join"))
                .collect()
        })
    };
    placed.sort();
    assert_eq!(
        placed.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
    let b = Broker::builder()
        .partitions(1)
        .open(dir.path())
        .expect("reopen");
    let c = b.consumer("t", "g");
    let got = c.try_poll(1000).expect("poll");
    assert_eq!(got.len(), 200);
    for m in got {
        assert_eq!(
            m.payload.as_ref(),
            &placed[m.offset as usize].1[..],
            "offset {}",
            m.offset
        );
    }
}

#[test]
fn a_damaged_journal_record_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let b = Broker::builder()
            .partitions(1)
            .open(dir.path())
            .expect("open");
        for i in 0..5 {
            b.publish("t", None, format!("msg-{i}").as_bytes())
                .expect("publish");
        }
    }
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(5)
        .position(|w| w == b"msg-2")
        .expect("record present");
    bytes[at + 4] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write");
    let b = Broker::builder()
        .partitions(1)
        .open(dir.path())
        .expect("reopen");
    assert_eq!(b.corrupt_entries_skipped(), 1);
    assert_eq!(b.topic_len("t"), 4);
}
