//! Task sharding, the seed's example: split a job into shards over a thread
//! pool (map), combine (reduce), and merge-sort by sorting shards in parallel
//! and k-way merging the sorted runs.
//!
//! `cargo run -p kuai-shard --example task_merge_sort`

use kuai_shard::{ShardError, WorkerPool};

fn main() -> Result<(), ShardError> {
    let pool = WorkerPool::new(4)?;

    // Map/reduce: word counts per shard, merged.
    let lines: Vec<String> = (0..10_000)
        .map(|i| format!("shard {} task {}", i % 7, i % 3))
        .collect();
    let words = pool.map_reduce(
        lines,
        8,
        |chunk| {
            chunk
                .iter()
                .map(|l| l.split_whitespace().count())
                .sum::<usize>()
        },
        |a, b| a + b,
    )?;
    println!("words: {}", words.unwrap_or(0));

    // Merge sort: 8 shards sorted in parallel, then one k-way merge.
    let data: Vec<u64> = (0..1_000_000u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20)
        .collect();
    let sorted = pool.merge_sort(data, 8)?;
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    println!(
        "sorted {} values; min {:?}, max {:?}",
        sorted.len(),
        sorted.first(),
        sorted.last()
    );
    Ok(())
}
