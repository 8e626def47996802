//! Cache traces: readers for real access traces and a synthetic Zipf source.
//!
//! Formats (chosen by file name; zstd, gzip or xz compression by the magic
//! bytes, decompressed as a stream under a size cap, [`MAX_DECOMPRESSED`]):
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

/// The most decompressed bytes read from one compressed trace (16 GiB): a
/// corrupt file or a decompression bomb ends in
/// [`CacheError::TraceTooLarge`] instead of filling the disk or the memory.
pub const MAX_DECOMPRESSED: u64 = 16 << 30;

const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// The error a [`Capped`] reader returns past its cap.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decompressed trace exceeds {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

/// Fails once more than `left` bytes were read.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(std::io::Error::other(TooLarge(self.limit))),
        }
    }
}

/// xz decompression on its own thread (lzma-rs decodes xz only from a whole
/// `BufRead` into a `Write`): the decoder writes 64 KiB chunks into a bounded
/// channel and this reader hands them out, so memory stays bounded whatever
/// the trace's size. Dropping the reader stops the decoder at its next chunk.
struct XzReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

struct ChunkWriter {
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

const XZ_CHUNK: usize = 1 << 16;

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= XZ_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(XZ_CHUNK));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader gone"))
    }
}

impl XzReader {
    fn spawn(mut input: impl BufRead + Send + 'static) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("kuai-trace-xz".into())
            .spawn(move || {
                let mut out = ChunkWriter {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(XZ_CHUNK),
                };
                let r = lzma_rs::xz_decompress(&mut input, &mut out)
                    .map_err(|e| match e {
                        lzma_rs::error::Error::IoError(e) => e,
                        other => std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("xz: {other}"),
                        ),
                    })
                    .and_then(|()| std::io::Write::flush(&mut out));
                if let Err(e) = r {
                    // The reader may be gone (dropped early): nothing to tell.
                    let _ = tx.send(Err(e));
                }
            })?;
        Ok(XzReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        })
    }
}

impl Read for XzReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The decoder finished and hung up: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens `path`, decompressing zstd, gzip or xz when the content says so.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, CacheError> {
    open_capped(path, MAX_DECOMPRESSED)
}

/// [`open`] with a cap on the decompressed size: reading past `limit`
/// decompressed bytes fails (see [`read_keys_capped`] for the typed error).
pub fn open_capped(path: &Path, limit: u64) -> Result<Box<dyn BufRead>, CacheError> {
    let mut file = BufReader::new(File::open(path).map_err(|e| bad(path, e))?);
    let magic = file.fill_buf().map_err(|e| bad(path, e))?;
    let reader: Box<dyn Read> = if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(file).map_err(|e| bad(path, e))?)
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if magic.starts_with(&XZ_MAGIC) {
        Box::new(XzReader::spawn(file).map_err(|e| bad(path, e))?)
    } else {
        return Ok(Box::new(file));
    };
    let capped = Capped {
        inner: reader,
        left: limit,
        limit,
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, capped)))
}

/// Reads the requests of a trace file, at most `limit` of them.
pub fn read_keys(path: &Path, limit: Option<usize>) -> Result<Vec<u64>, CacheError> {
    read_keys_capped(path, limit, MAX_DECOMPRESSED)
}

/// [`read_keys`] with a cap on the decompressed size of a compressed trace:
/// past it, [`CacheError::TraceTooLarge`].
pub fn read_keys_capped(
    path: &Path,
    limit: Option<usize>,
    max_decompressed: u64,
) -> Result<Vec<u64>, CacheError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let arc = name.contains(".lis");
    parse_io(open_capped(path, max_decompressed)?, arc, limit).map_err(|e| {
        if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
            CacheError::TraceTooLarge {
                limit: max_decompressed,
            }
        } else {
            bad(path, e)
        }
    })
}

/// Parses trace text from `reader` (ARC `.lis` when `arc`, else one key per line).
pub fn parse(reader: impl BufRead, arc: bool, limit: Option<usize>) -> Result<Vec<u64>, String> {
    parse_io(reader, arc, limit).map_err(|e| e.to_string())
}

fn parse_io(
    reader: impl BufRead,
    arc: bool,
    limit: Option<usize>,
) -> Result<Vec<u64>, std::io::Error> {
    let err = |n: usize, what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {}: {what}", n + 1),
        )
    };
    let limit = limit.unwrap_or(usize::MAX);
    let hasher = FastHashBuilder::with_seed(0x7ace);
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        if out.len() >= limit {
            break;
        }
        // A read error keeps its payload (the size cap is told apart by it).
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if arc {
            let mut f = line.split_ascii_whitespace();
            let start: u64 = f
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err(n, "bad start block".into()))?;
            let count: u64 = f
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err(n, "bad block count".into()))?;
            if count > MAX_ARC_RUN {
                return Err(err(n, format!("run of {count} blocks is too long")));
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

    fn write_xz(name: &str, text: &[u8]) -> std::path::PathBuf {
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &text[..], &mut xz).expect("compress");
        let path = std::env::temp_dir().join(format!("kuai-trace-{}-{name}", std::process::id()));
        std::fs::write(&path, xz).expect("write");
        path
    }

    #[test]
    fn reads_xz_streams_and_caps_their_size() {
        let text: String = (0..50_000u64).map(|k| format!("{}\n", k % 977)).collect();
        let path = write_xz("plain.trace.xz", text.as_bytes());
        let keys = read_keys(&path, None).expect("xz trace");
        assert_eq!(keys.len(), 50_000);
        assert_eq!(keys[978], 1);
        assert_eq!(read_keys(&path, Some(10)).map(|k| k.len()).ok(), Some(10));
        assert!(matches!(
            read_keys_capped(&path, None, 1000),
            Err(CacheError::TraceTooLarge { limit: 1000 })
        ));
        let _ = std::fs::remove_file(&path);
        // Garbage after the magic: a typed error, no panic, no hang.
        let path = std::env::temp_dir().join(format!("kuai-trace-{}-bad.xz", std::process::id()));
        let mut junk = XZ_MAGIC.to_vec();
        junk.extend_from_slice(&[7u8; 100]);
        std::fs::write(&path, junk).expect("write");
        assert!(matches!(
            read_keys(&path, None),
            Err(CacheError::BadTrace(_))
        ));
        let _ = std::fs::remove_file(&path);
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
