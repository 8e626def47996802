//! loom models of the buffer queue's wait protocol: no lost wake-up when a
//! producer and a consumer both block on a capacity-1 queue, and `close`
//! wakes a blocked receiver. Run with
//! `RUSTFLAGS="--cfg kuai_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p kuai-queue --test loom --release`.
#![cfg(kuai_loom)]

use kuai_queue::{BufferQueue, QueueError};

#[test]
fn blocking_send_and_recv_never_lose_a_wakeup() {
    loom::model(|| {
        let q = BufferQueue::new(1);
        let tx = q.clone();
        let producer = loom::thread::spawn(move || {
            for i in 0..2u32 {
                tx.send(i).expect("open");
            }
        });
        assert_eq!(q.recv().expect("first"), 0);
        assert_eq!(q.recv().expect("second"), 1);
        producer.join().expect("producer");
    });
}

#[test]
fn close_wakes_a_blocked_receiver_after_draining() {
    loom::model(|| {
        let q: BufferQueue<u32> = BufferQueue::new(1);
        let closer = q.clone();
        let t = loom::thread::spawn(move || {
            let _ = closer.try_send(7);
            closer.close();
        });
        let first = q.recv();
        let second = q.recv();
        t.join().expect("closer");
        // The value sent before close is received (unless the close won the
        // race and the send failed); then Closed.
        match (first, second) {
            (Ok(7), Err(QueueError::Closed))
            | (Err(QueueError::Closed), Err(QueueError::Closed)) => {}
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn two_blocked_producers_are_both_woken() {
    loom::model(|| {
        let q = BufferQueue::new(1);
        let handles: Vec<_> = (0..2u32)
            .map(|i| {
                let tx = q.clone();
                loom::thread::spawn(move || tx.send(i).expect("open"))
            })
            .collect();
        let a = q.recv().expect("first");
        let b = q.recv().expect("second");
        assert_eq!(a + b, 1);
        for h in handles {
            h.join().expect("producer");
        }
    });
}
