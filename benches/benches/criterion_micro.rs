//! Criterion micro-benchmarks of a few hot paths, each beside its peer, for
//! `cargo bench -p kuai-benches --bench criterion_micro` (statistics, HTML
//! reports under `target/criterion`). `cargo xtask bench` does not run this
//! file: the report's rows come from the section binaries, which also record
//! non-time figures (hit ratios, bytes, CPU).

use std::collections::LinkedList;
use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kuai::core::{Decoder, Encoder, Partitioner};

fn push_front(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_front 1k");
    group.bench_function("Mutex<LinkedList>", |b| {
        b.iter(|| {
            let list = Mutex::new(LinkedList::new());
            for i in 0..1000u64 {
                if let Ok(mut l) = list.lock() {
                    l.push_front(black_box(i));
                }
            }
            list
        })
    });
    group.bench_function("kuai List", |b| {
        b.iter(|| {
            let list = kuai::lockfree::List::new();
            for i in 0..1000u64 {
                list.push_front(black_box(i));
            }
            list
        })
    });
    group.finish();
}

fn jump_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("jump hash lookup");
    for nodes in [10u32, 1000] {
        let Ok(ours) = kuai::shard::JumpHash::new(nodes) else {
            continue;
        };
        group.bench_with_input(BenchmarkId::new("kuai", nodes), &nodes, |b, _| {
            let mut key = 0u64;
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                ours.partition(black_box(&key))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("jumphash crate", nodes),
            &nodes,
            |b, &n| {
                let peer = jumphash::JumpHasher::new_with_keys(1, 2);
                let mut key = 0u64;
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    peer.slot(black_box(&key), n)
                })
            },
        );
    }
    group.finish();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
    qty: u32,
}

fn codec(c: &mut Criterion) {
    let order = Order {
        id: 7,
        item: "green tea, 250 g".into(),
        qty: 3,
    };
    let mut group = c.benchmark_group("encode+decode small struct");
    let msgpack = kuai::codec::MsgPack::compact();
    group.bench_function("kuai MessagePack compact", |b| {
        b.iter(|| {
            let bytes = msgpack.encode_to_vec(black_box(&order)).unwrap_or_default();
            let back: Option<Order> = msgpack.decode(&bytes).ok();
            back
        })
    });
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(black_box(&order)).unwrap_or_default();
            let back: Option<Order> = serde_json::from_slice(&bytes).ok();
            back
        })
    });
    group.finish();
}

criterion_group!(benches, push_front, jump_hash, codec);
criterion_main!(benches);
