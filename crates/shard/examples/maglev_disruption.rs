//! How many keys Maglev moves when one node joins, by table size.
use kuai_core::Partitioner;
use kuai_shard::Maglev;

fn main() {
    let n = 100;
    let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
    let keys: Vec<u64> = (0..200_000u64).collect();
    for size in [65_537u64, 262_147, 1_048_583] {
        let a = Maglev::with_table_size(names.iter().map(String::as_str), size)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = a.with_node("node-new").unwrap_or_else(|e| panic!("{e}"));
        let moved = keys
            .iter()
            .filter(|k| {
                a.nodes()[a.partition(*k) as usize].id() != b.nodes()[b.partition(*k) as usize].id()
            })
            .count();
        let frac = moved as f64 / keys.len() as f64;
        println!(
            "table {size}: moved {frac:.4} = {:.3}x ideal",
            frac * f64::from(n + 1)
        );
    }
}
