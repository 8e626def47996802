//! MappedAppender: growth by remapping, flush semantics, trim on finish.

mod common;

use common::TempDir;
use kuai_zerocopy::{MappedAppender, MappedFile, ZeroCopyError};
use proptest::prelude::*;

#[test]
fn grows_by_remapping_and_keeps_offsets() {
    let dir = TempDir::new("app-grow");
    let path = dir.join("log");
    let mut log = MappedAppender::options()
        .initial_capacity(4096)
        .open(&path)
        .unwrap();
    assert!(log.is_empty());
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let rec = vec![(i % 251) as u8 + 1; 100 + i as usize];
        let at = log.append(&rec).unwrap();
        assert_eq!(at, expected.len() as u64);
        expected.extend_from_slice(&rec);
    }
    assert!(log.capacity() >= log.len());
    assert!(log.capacity() > 4096, "it grew");
    assert_eq!(log.as_slice(), &expected[..]);
    assert_eq!(log.durable_len(), 0);
    log.flush().unwrap();
    assert_eq!(log.durable_len(), log.len());
    log.flush_async().unwrap();
    assert!(log.finish().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn reopen_appends_after_existing_and_resume_at_cuts_the_tail() {
    let dir = TempDir::new("app-reopen");
    let path = dir.join("log");
    let mut log = MappedAppender::open(&path).unwrap();
    log.append_vectored(&[b"head", b"-", b"body"]).unwrap();
    // Simulate a crash: drop without finish leaves the pre-allocated tail.
    log.flush().unwrap();
    drop(log);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    let mut log = MappedAppender::options().resume_at(9).open(&path).unwrap();
    assert_eq!(log.len(), 9);
    assert_eq!(log.append(b"+more").unwrap(), 9);
    assert!(log.finish().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"head-body+more");
    let mut log = MappedAppender::open(&path).unwrap();
    assert_eq!(log.append(b"!").unwrap(), 14);
    assert!(log.finish().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"head-body+more!");
}

#[test]
fn a_second_writer_is_refused() {
    let dir = TempDir::new("app-writer");
    let path = dir.join("log");
    let mut first = MappedAppender::open(&path).unwrap();
    first.append(b"one").unwrap();
    let err = MappedAppender::open(&path).unwrap_err();
    assert!(matches!(err, ZeroCopyError::Busy { .. }), "{err:?}");
    // Readers are not writers: mapping the file does not disturb the lock.
    let reader = MappedFile::open(&path).unwrap();
    drop(reader);
    assert!(matches!(
        MappedAppender::open(&path),
        Err(ZeroCopyError::Busy { .. })
    ));
    assert!(first.finish().unwrap());
    let mut second = MappedAppender::open(&path).unwrap();
    assert_eq!(second.append(b"two").unwrap(), 3);
    assert!(second.finish().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"onetwo");
}

#[test]
fn limits_and_bad_options_are_errors() {
    let dir = TempDir::new("app-limits");
    let path = dir.join("log");
    let mut log = MappedAppender::options()
        .initial_capacity(4096)
        .max_capacity(8192)
        .open(&path)
        .unwrap();
    log.append(&[1u8; 8000]).unwrap();
    let err = log.append(&[2u8; 1000]).unwrap_err();
    assert!(matches!(err, ZeroCopyError::InvalidInput(_)));
    assert_eq!(log.len(), 8000, "a failed append changes nothing");
    assert!(matches!(
        MappedAppender::options()
            .initial_capacity(0)
            .open(dir.join("x")),
        Err(ZeroCopyError::InvalidInput(_))
    ));
    assert!(matches!(
        MappedAppender::options()
            .resume_at(1 << 40)
            .open(dir.join("y")),
        Err(ZeroCopyError::InvalidInput(_))
    ));
    assert!(matches!(
        MappedAppender::open(dir.path()),
        Err(ZeroCopyError::IsDirectory { .. })
    ));
}

#[test]
fn a_mapped_reader_blocks_the_trim_but_nothing_crashes() {
    let dir = TempDir::new("app-reader");
    let path = dir.join("log");
    let mut log = MappedAppender::options()
        .initial_capacity(64 * 1024)
        .open(&path)
        .unwrap();
    log.append(b"visible at once").unwrap();
    // A reader maps the whole pre-allocated file (tail included).
    let reader = MappedFile::open(&path).unwrap();
    assert_eq!(&reader.as_slice()[..15], b"visible at once");
    let tail = reader.slice(60_000..).unwrap();
    // Truncating the log under the reader would fault it: refused.
    assert!(matches!(
        MappedAppender::options().truncate(true).open(&path),
        Err(ZeroCopyError::Busy { .. })
    ));
    assert!(!log.finish().unwrap(), "trim skipped while mapped");
    assert!(tail.iter().all(|&b| b == 0)); // still readable
    drop((reader, tail));
    let log = MappedAppender::options().resume_at(15).open(&path).unwrap();
    assert!(log.finish().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"visible at once");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever the sequence of appends and flushes, the file ends up
    /// holding exactly their concatenation, at the offsets returned.
    #[test]
    fn appends_are_never_lost_or_reordered(
        recs in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..3000), any::<bool>()), 0..40),
        initial in 1u64..10_000,
    ) {
        let dir = TempDir::new("app-prop");
        let path = dir.join("log");
        let mut log = MappedAppender::options().initial_capacity(initial).open(&path).unwrap();
        let mut expected = Vec::new();
        for (rec, flush) in &recs {
            let at = log.append(rec).unwrap();
            prop_assert_eq!(at, expected.len() as u64);
            expected.extend_from_slice(rec);
            if *flush {
                log.flush().unwrap();
                prop_assert_eq!(log.durable_len(), log.len());
            }
        }
        prop_assert_eq!(log.as_slice(), &expected[..]);
        prop_assert!(log.finish().unwrap());
        prop_assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
