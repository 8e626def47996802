//! The shard section of `cargo xtask bench`: partitioner lookup cost, balance
//! and movement against crates.io peers, and scatter-gather deep paging.

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use kuai::core::Partitioner;
use kuai::shard::{
    Assignment, HashRing, JumpHash, Maglev, ModuloHash, Node, Page, Rendezvous, SlotMap,
};
use kuai_benches::{Better, Row, Section, median_pair, ns};

/// Interleaved runs of `a` and `b`, keeping each side's fastest: lookups cost
/// nanoseconds, and on a shared machine the minimum is the estimate least
/// polluted by other processes (both sides are treated alike).
fn min_pair(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let _ = (a(), b());
    let (mut ma, mut mb) = (Duration::MAX, Duration::MAX);
    for _ in 0..runs.max(1) {
        ma = ma.min(a());
        mb = mb.min(b());
    }
    (ma, mb)
}

const NODE_COUNTS: [u32; 3] = [10, 100, 1000];

fn node_names(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

/// Keys that look like real ids: sequential, so the hash does the spreading.
fn u64_keys(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9) ^ 0x5555)
        .collect()
}

/// Times `f` over every key and returns the total duration.
fn per_key<K>(keys: &[K], mut f: impl FnMut(&K) -> u32) -> Duration {
    let t = Instant::now();
    let mut acc = 0u64;
    for k in keys {
        acc = acc.wrapping_add(u64::from(f(black_box(k))));
    }
    black_box(acc);
    t.elapsed()
}

#[allow(clippy::too_many_arguments)]
fn lookup_row(
    s: &mut Section,
    algo: &str,
    nodes: u32,
    peer_name: &str,
    keys: usize,
    runs: usize,
    measured: Result<(Duration, Duration), String>,
    note: &str,
) {
    let row = Row::new(
        format!("lookup ns/key, {algo}, {nodes} nodes"),
        "ns",
        Better::Lower,
    )
    .param("nodes", nodes)
    .param("keys", keys as u64)
    .param("runs", runs as u64);
    let row = match measured {
        Ok((peer, kuai)) => row
            .peer(peer_name, ns(peer) / keys as f64)
            .kuai(ns(kuai) / keys as f64),
        Err(e) => row.peer(peer_name, f64::NAN).error(e),
    };
    let row = if note.is_empty() { row } else { row.note(note) };
    s.record(row);
}

fn bench_lookups(s: &mut Section) {
    // Short runs (16k keys, well under a scheduler slice) and many of them:
    // the minimum then comes from runs nobody interrupted.
    let runs = s.pick(25, 60);
    let base_keys = 16_384;
    let keys = u64_keys(base_keys);
    for &n in &NODE_COUNTS {
        let names = node_names(n);

        // Modulo: std's SipHash % n is what most code writes.
        let m = ModuloHash::new(n).map_err(|e| e.to_string());
        let res = m.map(|m| {
            min_pair(
                runs,
                || {
                    per_key(&keys, |k| {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        k.hash(&mut h);
                        (h.finish() % u64::from(n)) as u32
                    })
                },
                || per_key(&keys, |k| m.partition(k)),
            )
        });
        lookup_row(s, "modulo", n, "std SipHash % n", keys.len(), runs, res, "");

        // Jump consistent hash vs the `jumphash` crate (SipHash-1-3 + jump).
        let peer = jumphash::JumpHasher::new_with_keys(1, 2);
        let res = JumpHash::new(n).map_err(|e| e.to_string()).map(|j| {
            min_pair(
                runs,
                || per_key(&keys, |k| peer.slot(k, n)),
                || per_key(&keys, |k| j.partition(k)),
            )
        });
        let note = if n == 1000 {
            "target ≤ 30 ns and ≥ 1.0× jumphash"
        } else {
            "target ≥ 1.0× jumphash"
        };
        lookup_row(s, "jump", n, "jumphash 0.1.9", keys.len(), runs, res, note);
        if n == 1000 {
            // Where the speed comes from: the same hash, reference double step vs exact integer step.
            let res = JumpHash::new(n).map_err(|e| e.to_string()).map(|j| {
                min_pair(
                    runs,
                    || {
                        per_key(&keys, |k| {
                            kuai::shard::jump_consistent_hash_reference(kuai::shard::hash_key(k), n)
                        })
                    },
                    || per_key(&keys, |k| j.partition(k)),
                )
            });
            lookup_row(
                s,
                "jump step: integer vs double",
                n,
                "kuai jump with the reference double step",
                keys.len(),
                runs,
                res,
                "same hash and key sequence; only the step arithmetic differs",
            );
        }

        // Ring with 100 vnodes per node vs `hashring` with the same points.
        let vn = 100u32;
        let mut peer: hashring::HashRing<(u32, u32)> = hashring::HashRing::new();
        peer.batch_add((0..n).flat_map(|i| (0..vn).map(move |r| (i, r))).collect());
        let res = HashRing::new(names.iter().map(String::as_str), vn)
            .map_err(|e| e.to_string())
            .map(|r| {
                min_pair(
                    runs,
                    || per_key(&keys, |k| peer.get(k).map_or(0, |v| v.0)),
                    || per_key(&keys, |k| r.partition(k)),
                )
            });
        lookup_row(
            s,
            "ring 100 vnodes",
            n,
            "hashring 0.3.6",
            keys.len(),
            runs,
            res,
            "",
        );

        // Rendezvous: O(n) per key, so fewer keys at scale.
        let rk = &keys[..(base_keys / n as usize * 4).clamp(64, base_keys)];
        let mut peer = rendezvous_hash::RendezvousNodes::default();
        for name in &names {
            peer.insert(name.as_str());
        }
        let res = Rendezvous::new(names.iter().map(String::as_str))
            .map_err(|e| e.to_string())
            .map(|r| {
                min_pair(
                    runs,
                    || {
                        per_key(rk, |k| {
                            peer.calc_candidates(k).next().map_or(0, |v| v.len() as u32)
                        })
                    },
                    || per_key(rk, |k| r.partition(k)),
                )
            });
        lookup_row(
            s,
            "rendezvous",
            n,
            "rendezvous_hash 0.3.0",
            rk.len(),
            runs,
            res,
            "",
        );

        // Maglev vs the `maglev` crate with the same table size.
        let res = Maglev::new(names.iter().map(String::as_str))
            .map_err(|e| e.to_string())
            .and_then(|m| {
                let size = m.table_size();
                if n >= 1000 && s.quick() {
                    return Err(format!(
                        "peer skipped in --quick: maglev 0.2.1 materialises an n×M permutation ({} MB at {n} nodes)",
                        (n as usize * size * 8) >> 20
                    ));
                }
                let peer = maglev::Maglev::with_capacity(names.clone(), size);
                use maglev::ConsistentHasher;
                Ok(min_pair(
                    runs,
                    || per_key(&keys, |k| peer.get(k).map_or(0, |v| v.len() as u32)),
                    || per_key(&keys, |k| m.partition(k)),
                ))
            });
        lookup_row(s, "maglev", n, "maglev 0.2.1", keys.len(), runs, res, "");

        // 16384 slots (CRC16 + hash tag + slot table) vs the `crc16` crate's XMODEM.
        let skeys: Vec<String> = keys
            .iter()
            .take(base_keys)
            .map(|k| format!("user:{k}:profile"))
            .collect();
        let res = SlotMap::balanced(names.iter().map(String::as_str))
            .map_err(|e| e.to_string())
            .map(|map| {
                let owners = map.owners().to_vec();
                min_pair(
                    runs,
                    || {
                        per_key(&skeys, |k| {
                            let b = kuai::shard::hash_tag(k.as_bytes());
                            let slot = crc16::State::<crc16::XMODEM>::calculate(b) & 16383;
                            owners[usize::from(slot)]
                        })
                    },
                    || per_key(&skeys, |k| map.partition(k.as_str())),
                )
            });
        lookup_row(
            s,
            "slots (crc16 + table)",
            n,
            "crc16 0.4 XMODEM + same table",
            skeys.len(),
            runs,
            res,
            "",
        );
    }
}

type Built = Result<Box<dyn Partitioner<u64>>, String>;

/// max/mean and coefficient of variation of the per-node counts.
fn balance(counts: &[u64]) -> (f64, f64) {
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let var = counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (max / mean, var.sqrt() / mean)
}

fn count_loads(keys: &[u64], nodes: u32, p: &dyn Partitioner<u64>) -> Vec<u64> {
    let mut c = vec![0u64; nodes as usize];
    for k in keys {
        c[p.partition(k) as usize] += 1;
    }
    c
}

fn bench_balance(s: &mut Section) {
    let nkeys = s.pick(200_000, 1_000_000);
    let keys = u64_keys(nkeys);
    for &n in &[10u32, 100] {
        let names = node_names(n);
        let modulo = match ModuloHash::new(n) {
            Ok(m) => m,
            Err(e) => {
                s.record(Row::new("balance", "max/mean", Better::Lower).error(e));
                continue;
            }
        };
        let (peer_mm, peer_cv) = balance(&count_loads(&keys, n, &modulo));
        let ids = || names.iter().map(String::as_str);
        let algos: Vec<(&str, Built)> = vec![
            (
                "jump",
                JumpHash::new(n)
                    .map(|p| Box::new(p) as Box<dyn Partitioner<u64>>)
                    .map_err(|e| e.to_string()),
            ),
            (
                "maglev",
                Maglev::new(ids())
                    .map(|p| Box::new(p) as _)
                    .map_err(|e| e.to_string()),
            ),
            (
                "rendezvous",
                Rendezvous::new(ids())
                    .map(|p| Box::new(p) as _)
                    .map_err(|e| e.to_string()),
            ),
            (
                "ring 100 vnodes",
                HashRing::new(ids(), 100)
                    .map(|p| Box::new(p) as _)
                    .map_err(|e| e.to_string()),
            ),
            (
                "ring 1000 vnodes",
                HashRing::new(ids(), 1000)
                    .map(|p| Box::new(p) as _)
                    .map_err(|e| e.to_string()),
            ),
        ];
        // Sampling noise alone gives max/mean ≈ 1 + z·sqrt(n/keys).
        let floor = (f64::from(n) / nkeys as f64).sqrt();
        for (name, p) in algos {
            let row = Row::new(
                format!("balance max/mean, {name}, {n} nodes, {nkeys} keys"),
                "max/mean",
                Better::Lower,
            )
            .param("nodes", n)
            .param("keys", nkeys as u64);
            let row = match p {
                Ok(p) => {
                    let (mm, cv) = balance(&count_loads(&keys, n, p.as_ref()));
                    let target = if matches!(name, "jump" | "maglev") && n == 10 {
                        "target ≤ 1.01; "
                    } else {
                        ""
                    };
                    row.peer("modulo hash (random ideal)", peer_mm)
                        .kuai(mm)
                        .param("stddev_over_mean", cv)
                        .param("peer_stddev_over_mean", peer_cv)
                        .note(format!("{target}stddev/mean {cv:.4} (modulo {peer_cv:.4}); sampling floor σ/mean ≈ {floor:.4}"))
                }
                Err(e) => row.error(e),
            };
            s.record(row);
        }
    }
}

fn moved_fraction(keys: &[u64], a: impl Fn(&u64) -> String, b: impl Fn(&u64) -> String) -> f64 {
    let moved = keys.iter().filter(|k| a(k) != b(k)).count();
    moved as f64 / keys.len() as f64
}

fn bench_movement(s: &mut Section) {
    let nkeys = s.pick(100_000, 400_000);
    let keys = u64_keys(nkeys);
    let n = 100u32;
    let names = node_names(n);
    let ids = || names.iter().map(String::as_str);
    let add_ideal = 1.0 / f64::from(n + 1);
    let remove_ideal = 1.0 / f64::from(n);
    let victim = "node-37";
    let record = |s: &mut Section,
                  name: &str,
                  op: &str,
                  ideal: f64,
                  frac: Result<f64, String>,
                  consistent: bool| {
        let row = Row::new(
            format!("keys moved / ideal, {op} one node, {name}, {n} nodes"),
            "× ideal",
            Better::Lower,
        )
        .param("nodes", n)
        .param("keys", nkeys as u64);
        let row = match frac {
            Ok(f) => row
                .peer("ideal 1/n", 1.0)
                .kuai(f / ideal)
                .param("moved_fraction", f)
                .note(if consistent {
                    "target ≤ 1.1× ideal"
                } else {
                    "not a consistent scheme: shown for contrast"
                }),
            Err(e) => row.error(e),
        };
        s.record(row);
    };
    let owner = |nodes: &[Node], i: u32| nodes[i as usize].id().to_string();

    // Modulo (contrast).
    let f = (|| -> Result<(f64, f64), String> {
        let a = ModuloHash::new(n).map_err(|e| e.to_string())?;
        let b = ModuloHash::new(n + 1).map_err(|e| e.to_string())?;
        let c = ModuloHash::new(n - 1).map_err(|e| e.to_string())?;
        Ok((
            moved_fraction(
                &keys,
                |k| a.partition(k).to_string(),
                |k| b.partition(k).to_string(),
            ),
            moved_fraction(
                &keys,
                |k| a.partition(k).to_string(),
                |k| c.partition(k).to_string(),
            ),
        ))
    })();
    record(s, "modulo", "add", add_ideal, f.clone().map(|x| x.0), false);
    record(s, "modulo", "remove", remove_ideal, f.map(|x| x.1), false);

    // Jump: buckets are numbered; removing means dropping the last bucket.
    let f = (|| -> Result<(f64, f64), String> {
        let a = JumpHash::new(n).map_err(|e| e.to_string())?;
        let b = JumpHash::new(n + 1).map_err(|e| e.to_string())?;
        let c = JumpHash::new(n - 1).map_err(|e| e.to_string())?;
        Ok((
            moved_fraction(
                &keys,
                |k| a.partition(k).to_string(),
                |k| b.partition(k).to_string(),
            ),
            moved_fraction(
                &keys,
                |k| a.partition(k).to_string(),
                |k| c.partition(k).to_string(),
            ),
        ))
    })();
    record(s, "jump", "add", add_ideal, f.clone().map(|x| x.0), true);
    record(
        s,
        "jump (last bucket)",
        "remove",
        remove_ideal,
        f.map(|x| x.1),
        true,
    );

    macro_rules! by_id {
        ($name:expr, $build:expr) => {{
            let f = (|| -> Result<(f64, f64), String> {
                let a = $build.map_err(|e| e.to_string())?;
                let b = a.with_node("node-new").map_err(|e| e.to_string())?;
                let c = a.without_node(victim).map_err(|e| e.to_string())?;
                Ok((
                    moved_fraction(
                        &keys,
                        |k| owner(a.nodes(), a.partition(k)),
                        |k| owner(b.nodes(), b.partition(k)),
                    ),
                    moved_fraction(
                        &keys,
                        |k| owner(a.nodes(), a.partition(k)),
                        |k| owner(c.nodes(), c.partition(k)),
                    ),
                ))
            })();
            record(s, $name, "add", add_ideal, f.clone().map(|x| x.0), true);
            record(s, $name, "remove", remove_ideal, f.map(|x| x.1), true);
        }};
    }
    by_id!("ring 100 vnodes", HashRing::new(ids(), 100));
    by_id!("rendezvous", Rendezvous::new(ids()));
    by_id!("maglev (M = 65537)", Maglev::new(ids()));
    // Maglev's disruption shrinks as the table grows (paper §5.3): ~1.1× at M ≈ 10^4·n.
    by_id!(
        "maglev (M = 1048583)",
        Maglev::with_table_size(ids(), 1_048_583)
    );

    // Fixed slots + the rebalancing planner: moves whole slots, minimally.
    let f = (|| -> Result<(f64, f64), String> {
        let a = Assignment::new(16_384, ids()).map_err(|e| e.to_string())?;
        let add = a
            .plan_add(Node::new("node-new"))
            .map_err(|e| e.to_string())?;
        let remove = a.plan_remove(victim).map_err(|e| e.to_string())?;
        Ok((
            add.moves().len() as f64 / 16_384.0,
            remove.moves().len() as f64 / 16_384.0,
        ))
    })();
    record(
        s,
        "16384 slots + planner",
        "add",
        add_ideal,
        f.clone().map(|x| x.0),
        true,
    );
    record(
        s,
        "16384 slots + planner",
        "remove",
        remove_ideal,
        f.map(|x| x.1),
        true,
    );
}

/// 16 shards each holding `rows` sorted rows; the query asks for a deep page.
fn bench_scatter_merge(s: &mut Section) {
    let shards = 16usize;
    let rows = s.pick(50_000usize, 400_000);
    let page = Page::new(s.pick(10_000, 50_000), 100);
    let runs = s.pick(3, 5);
    // Interleaved keys so every shard contributes to every page.
    let data: Vec<Vec<u64>> = (0..shards)
        .map(|sh| {
            let mut v: Vec<u64> = (0..rows as u64)
                .map(|i| (i * shards as u64 + sh as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20)
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut naive_out = Vec::new();
    let mut kuai_out = Vec::new();
    let (naive, pushed) = median_pair(
        runs,
        || {
            let t = Instant::now();
            // Middleware without pushdown: every shard ships everything.
            let mut all: Vec<u64> = Vec::with_capacity(shards * rows);
            for d in &data {
                all.extend_from_slice(d);
            }
            all.sort_unstable();
            naive_out = all[page.offset.min(all.len())..]
                .iter()
                .take(page.limit)
                .copied()
                .collect();
            t.elapsed()
        },
        || {
            let t = Instant::now();
            // LIMIT offset+limit pushed down; each shard ships one bounded page.
            let pages: Vec<Vec<u64>> = data
                .iter()
                .map(|d| d[..page.per_shard_limit().min(d.len())].to_vec())
                .collect();
            kuai_out = page.merge(pages);
            t.elapsed()
        },
    );
    let (_, streamed) = median_pair(
        runs,
        || Duration::ZERO,
        || {
            let t = Instant::now();
            // Cursors: rows are pulled from each shard as the merge needs them.
            let cursors: Vec<_> = data.iter().map(|d| d.iter().copied()).collect();
            black_box(page.merge(cursors));
            t.elapsed()
        },
    );
    let params = |r: Row| {
        r.param("shards", shards as u64)
            .param("rows_per_shard", rows as u64)
            .param("offset", page.offset as u64)
            .param("limit", page.limit as u64)
    };
    let exp = format!(
        "16 shards × {rows} sorted rows, OFFSET {} LIMIT {}",
        page.offset, page.limit
    );
    if naive_out != kuai_out || naive_out.len() != page.limit {
        s.record(
            params(Row::new(
                format!("scatter-gather merge time, {exp}"),
                "ms",
                Better::Lower,
            ))
            .error("merged page differs from collect-all-then-sort"),
        );
        return;
    }
    s.record(
        params(Row::new(
            format!("scatter-gather merge time, {exp}"),
            "ms",
            Better::Lower,
        ))
        .peer("collect all, sort, slice", kuai_benches::ms(naive))
        .kuai(kuai_benches::ms(pushed))
        .note("kuai: LIMIT offset+limit pushed down to each shard + k-way heap merge"),
    );
    let mb = |rows: usize| (rows * std::mem::size_of::<u64>()) as f64 / (1 << 20) as f64;
    s.record(
        params(Row::new(
            format!("scatter-gather memory held, {exp}"),
            "MB",
            Better::Lower,
        ))
        .peer("collect all, sort, slice", mb(shards * rows))
        .kuai(mb(shards * page.per_shard_limit()))
        .note("rows buffered at the merger: 16×rows vs 16×(offset+limit)"),
    );
    s.record(
        params(Row::new(
            format!("scatter-gather streaming merge time, {exp}"),
            "ms",
            Better::Lower,
        ))
        .peer("collect all, sort, slice", kuai_benches::ms(naive))
        .kuai(kuai_benches::ms(streamed))
        .note(format!(
            "cursors pulled lazily: the merger holds 16 heads + the page ({:.4} MB)",
            mb(shards + page.limit)
        )),
    );
}

fn main() {
    let mut s = Section::from_args("shard");
    let t = Instant::now();
    bench_lookups(&mut s);
    eprintln!("shard: lookups done in {:?}", t.elapsed());
    bench_balance(&mut s);
    eprintln!("shard: balance done in {:?}", t.elapsed());
    bench_movement(&mut s);
    eprintln!("shard: movement done in {:?}", t.elapsed());
    bench_scatter_merge(&mut s);
    eprintln!("shard: scatter-gather done in {:?}", t.elapsed());
}
