//! MappedFile: Bytes slices, empty files, madvise, and the truncation answer.

mod common;

use common::{TempDir, write_file};
use kuai_zerocopy::{Advice, MappedFile, TruncationGuard, ZeroCopyError, truncate_locked};

#[test]
fn empty_file_maps_to_empty_bytes() {
    let dir = TempDir::new("empty");
    let (path, _) = write_file(&dir, "e", 0);
    for guard in [TruncationGuard::Lock, TruncationGuard::Snapshot] {
        let f = MappedFile::options().guard(guard).open(&path).unwrap();
        assert!(f.is_empty());
        assert_eq!(f.len(), 0);
        assert!(f.bytes().is_empty());
        assert!(f.slice(..).unwrap().is_empty());
        assert!(f.slice(0..1).is_err());
        f.advise(Advice::Sequential).unwrap();
        f.advise_range(Advice::Random, 0..0).unwrap();
    }
}

#[test]
fn slices_share_the_mapping_and_outlive_the_handle() {
    let dir = TempDir::new("slices");
    let (path, data) = write_file(&dir, "f", 100_000);
    let f = MappedFile::options()
        .advice(Advice::Sequential)
        .populate(true)
        .open(&path)
        .unwrap();
    let whole = f.bytes();
    let part = f.slice(4096..50_000).unwrap();
    // No copy: the slice points into the mapping.
    assert_eq!(part.as_ptr(), whole[4096..].as_ptr());
    assert_eq!(f.as_slice().as_ptr(), whole.as_ptr());
    f.advise(Advice::WillNeed).unwrap();
    f.advise_range(Advice::Random, 5000..6000).unwrap();
    drop(f);
    drop(whole);
    assert_eq!(&part[..], &data[4096..50_000]);
    let sub = part.slice(10..20);
    drop(part);
    assert_eq!(&sub[..], &data[4106..4116]);
}

#[test]
fn lock_guard_refuses_cooperating_truncation_while_mapped() {
    let dir = TempDir::new("lock");
    let (path, data) = write_file(&dir, "f", 64 * 1024);
    let f = MappedFile::open(&path).unwrap();
    assert_eq!(f.guard(), TruncationGuard::Lock);
    let tail = f.slice(60_000..).unwrap();
    drop(f);
    // A slice still holds the mapping, hence the lock.
    let err = truncate_locked(&path, 0).unwrap_err();
    assert!(matches!(err, ZeroCopyError::Busy { .. }), "{err:?}");
    assert_eq!(
        kuai_core::Error::from(err).kind(),
        kuai_core::ErrorKind::Overloaded
    );
    // Nothing crashed and the bytes are intact.
    assert_eq!(&tail[..], &data[60_000..]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * 1024);
    drop(tail);
    truncate_locked(&path, 10).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
    // A mapping cannot be taken while a truncation holds the exclusive lock.
    let holder = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    assert!(matches!(
        MappedFile::open(&path),
        Err(ZeroCopyError::Busy { .. })
    ));
}

#[test]
fn appending_to_a_mapped_file_is_safe() {
    let dir = TempDir::new("grow");
    let (path, data) = write_file(&dir, "f", 10_000);
    let f = MappedFile::open(&path).unwrap();
    {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(&[9u8; 50_000]).unwrap();
    }
    assert_eq!(f.len(), 10_000);
    assert_eq!(f.as_slice(), &data[..]);
    let again = MappedFile::open(&path).unwrap();
    assert_eq!(again.len(), 60_000);
}

#[test]
fn snapshot_survives_truncation_and_rewrites_of_the_original() {
    let dir = TempDir::new("snap");
    let (path, data) = write_file(&dir, "f", 300_000);
    let f = MappedFile::options()
        .guard(TruncationGuard::Snapshot)
        .open(&path)
        .unwrap();
    let b = f.bytes();
    // A non-cooperating writer truncates and rewrites the file: with a
    // plain shared mapping, reading `b` now would raise SIGBUS.
    let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    w.set_len(0).unwrap();
    std::fs::write(&path, b"short").unwrap();
    assert_eq!(b.len(), 300_000);
    assert_eq!(&b[..], &data[..]); // touches every page: nothing crashes
    // And the cooperative lock is not taken in snapshot mode.
    truncate_locked(&path, 0).unwrap();
    assert_eq!(&f.as_slice()[299_990..], &data[299_990..]);
}

#[test]
fn max_len_is_enforced() {
    let dir = TempDir::new("max");
    let (path, _) = write_file(&dir, "f", 5000);
    let err = MappedFile::options().max_len(4999).open(&path).unwrap_err();
    assert!(matches!(err, ZeroCopyError::InvalidInput(_)));
    assert!(MappedFile::options().max_len(5000).open(&path).is_ok());
}

#[test]
fn bad_paths_are_typed_errors() {
    let dir = TempDir::new("bad");
    assert!(matches!(
        MappedFile::open(dir.join("missing")),
        Err(ZeroCopyError::NotFound { .. })
    ));
    assert!(matches!(
        MappedFile::open(dir.path()),
        Err(ZeroCopyError::IsDirectory { .. })
    ));
    assert!(matches!(
        MappedFile::open("/dev/zero"),
        Err(ZeroCopyError::NotRegularFile { .. })
    ));
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Must not hang waiting for a writer.
    assert!(matches!(
        MappedFile::open(&fifo),
        Err(ZeroCopyError::NotRegularFile { kind: "fifo", .. })
    ));
}
