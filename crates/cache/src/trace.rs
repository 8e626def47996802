//! Cache traces: readers for real access traces and a synthetic Zipf source.
//!
//! Formats (chosen by file name; `.zst` / `.gz` compression by the magic bytes):
//! * ARC `.lis`: each line `start_block num_blocks ignore request_no` stands
//!   for `num_blocks` consecutive page requests from `start_block`.
//! * anything else: one key per line; integers are used as is, other text is
//!   hashed to a `u64`.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::CacheError;
use crate::hashing::FastHashBuilder;

/// The longest run of one ARC line accepted (a corrupt line cannot make the
/// reader allocate without bound).
pub const MAX_ARC_RUN: u64 = 1 << 20;

fn bad(path: &Path, what: impl std::fmt::Display) -> CacheError {
    CacheError::BadTrace(format!("{}: {what}", path.display()))
}

/// Opens `path`, decompressing zstd or gzip when the content says so.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, CacheError> {
    let mut file = BufReader::new(File::open(path).map_err(|e| bad(path, e))?);
    let magic = file.fill_buf().map_err(|e| bad(path, e))?;
    let reader: Box<dyn Read> = if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(file).map_err(|e| bad(path, e))?)
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Reads the requests of a trace file, at most `limit` of them.
pub fn read_keys(path: &Path, limit: Option<usize>) -> Result<Vec<u64>, CacheError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let arc = name.contains(".lis");
    parse(open(path)?, arc, limit).map_err(|e| bad(path, e))
}

/// Parses trace text from `reader` (ARC `.lis` when `arc`, else one key per line).
pub fn parse(reader: impl BufRead, arc: bool, limit: Option<usize>) -> Result<Vec<u64>, String> {
    let limit = limit.unwrap_or(usize::MAX);
    let hasher = FastHashBuilder::with_seed(0x7ace);
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        if out.len() >= limit {
            break;
        }
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if arc {
            let mut f = line.split_ascii_whitespace();
            let start: u64 = f
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("line {}: bad start block", n + 1))?;
            let count: u64 = f
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("line {}: bad block count", n + 1))?;
            if count > MAX_ARC_RUN {
                return Err(format!("line {}: run of {count} blocks is too long", n + 1));
            }
            for b in 0..count {
                if out.len() >= limit {
                    break;
                }
                out.push(start.wrapping_add(b));
            }
        } else {
            let key = line
                .parse::<u64>()
                .unwrap_or_else(|_| hasher.hash_one(line));
            out.push(key);
        }
    }
    Ok(out)
}

/// The number of distinct keys in a trace.
pub fn footprint(keys: &[u64]) -> usize {
    let mut seen =
        hashbrown::HashSet::with_capacity_and_hasher(keys.len() / 4, FastHashBuilder::with_seed(1));
    for &k in keys {
        seen.insert(k);
    }
    seen.len()
}

/// `len` keys drawn from a Zipf(`s`) distribution over `n` keys (key 0 the
/// most popular, but keys are scrambled so popularity is not ordered by
/// value), reproducible from `seed`.
pub fn zipf(n: usize, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let n = n.max(1);
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 1..=n {
        sum += 1.0 / (i as f64).powf(s);
        cdf.push(sum);
    }
    let mut x = seed | 1;
    let scramble = FastHashBuilder::with_seed(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64 * sum;
            let rank = cdf.partition_point(|&c| c < u);
            scramble.hash_one(rank as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arc_and_plain() {
        let arc = "10 3 0 1\n\n20 1 0 2\n";
        assert_eq!(
            parse(arc.as_bytes(), true, None).ok(),
            Some(vec![10, 11, 12, 20])
        );
        assert_eq!(
            parse(arc.as_bytes(), true, Some(2)).ok(),
            Some(vec![10, 11])
        );
        let plain = "5\n6\nfoo\n5\n";
        let keys = parse(plain.as_bytes(), false, None).unwrap_or_default();
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0], 5);
        assert_eq!(footprint(&keys), 3);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(parse("x y\n".as_bytes(), true, None).is_err());
        assert!(parse("1 99999999999 0 0\n".as_bytes(), true, None).is_err());
        assert!(parse("1\n".as_bytes(), true, None).is_err());
        assert!(read_keys(Path::new("/nonexistent/trace.lis"), None).is_err());
    }

    #[test]
    fn zipf_is_skewed_and_reproducible() {
        let a = zipf(1000, 1.0, 10_000, 3);
        assert_eq!(a, zipf(1000, 1.0, 10_000, 3));
        let top = a.iter().filter(|&&k| k == a[0]).count();
        assert!(footprint(&a) < 1000);
        assert!(top > 0);
    }
}
