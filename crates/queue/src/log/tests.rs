use super::*;
use std::os::unix::fs::FileExt;

const BACKENDS: [SegmentBackend; 2] = [SegmentBackend::Write, SegmentBackend::Mapped];

fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 200) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

#[test]
fn append_read_reopen_per_record_and_group() {
    for (backend, mode) in [
        (SegmentBackend::Write, ReadMode::Mmap),
        (SegmentBackend::Write, ReadMode::Pread),
        (SegmentBackend::Mapped, ReadMode::Mmap),
        (SegmentBackend::Mapped, ReadMode::Pread),
    ] {
        append_read_reopen(backend, mode);
    }
}

fn append_read_reopen(backend: SegmentBackend, mode: ReadMode) {
    for sync in [
        SyncPolicy::PerRecord,
        SyncPolicy::Group {
            max_latency: Duration::from_micros(200),
            max_batch_bytes: 1 << 16,
        },
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = Log::builder(dir.path())
                .sync_policy(sync)
                .backend(backend)
                .read_mode(mode)
                .segment_bytes(4096)
                .index_interval_bytes(256)
                .open()
                .expect("open");
            let tickets: Vec<_> = (0..300)
                .map(|i| log.append(&payload(i)).expect("append"))
                .collect();
            for (i, t) in tickets.into_iter().enumerate() {
                assert_eq!(t.wait().expect("ack"), i as u64);
            }
            assert!(log.segment_count() > 3, "{}", log.segment_count());
            for i in 0..300 {
                assert_eq!(log.read(i).expect("read").payload.as_ref(), &payload(i)[..]);
            }
            log.close().expect("close");
        }
        let log = Log::builder(dir.path())
            .sync_policy(sync)
            .backend(backend)
            .read_mode(mode)
            .segment_bytes(4096)
            .open()
            .expect("reopen");
        assert_eq!(log.recovery().truncated_bytes, 0);
        assert_eq!(log.recovery().trimmed_preallocation, 0, "{backend:?}");
        // A clean close leaves every segment exactly as long as its records.
        assert_eq!(log.size_bytes(), dir_bytes(dir.path()), "{backend:?}");
        assert_eq!(log.end_offset(), 300);
        let mut next = 0;
        while next < 300 {
            let batch = log.read_from(next, 1000).expect("batch");
            assert!(!batch.is_empty());
            for r in batch {
                assert_eq!(r.offset, next);
                assert_eq!(r.payload.as_ref(), &payload(next)[..]);
                next += 1;
            }
        }
        assert!(log.read_from(300, 10).expect("end").is_empty());
        assert!(matches!(
            log.read(301),
            Err(QueueError::OutOfRange { offset: 301, .. })
        ));
        assert_eq!(log.append_sync(b"more").expect("append"), 300);
    }
}

#[test]
fn oversized_records_are_rejected_and_log_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::builder(dir.path())
        .max_record_bytes(100)
        .open()
        .expect("open");
    let err = log.append(&[0u8; 101]).err();
    assert!(matches!(
        err,
        Some(QueueError::Oversized {
            size: 101,
            max: 100
        })
    ));
    assert_eq!(log.append_sync(&[1u8; 100]).expect("fits"), 0);
}

#[test]
fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path()).expect("open");
        for i in 0..10 {
            log.append_sync(&payload(i)).expect("append");
        }
    }
    let path = segment::log_path(dir.path(), 0);
    let len = fs::metadata(&path).expect("meta").len();
    // A record half written: header claims 100 bytes, only 10 present.
    let mut tail = Vec::new();
    record::encode(&mut tail, 10, 0, &[7u8; 100]);
    tail.truncate(30);
    let f = fs::OpenOptions::new().append(true).open(&path).expect("f");
    f.write_all_at(&tail, len).expect("write");
    drop(f);
    let log = Log::open(dir.path()).expect("reopen");
    assert_eq!(log.recovery().truncated_bytes, 30);
    assert_eq!(log.end_offset(), 10);
    assert_eq!(fs::metadata(&path).expect("meta").len(), len);
    assert_eq!(log.append_sync(b"x").expect("append"), 10);
}

#[test]
fn crc_mismatch_reports_offset_and_rest_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg_bytes = 2048;
    {
        let log = Log::builder(dir.path())
            .segment_bytes(seg_bytes)
            .index_interval_bytes(128)
            .open()
            .expect("open");
        for i in 0..100 {
            log.append_sync(&[i as u8; 50]).expect("append");
        }
    }
    // Flip a payload byte of offset 3 (first segment, sealed).
    let rec_len = record::encoded_len(50) as u64;
    let path = segment::log_path(dir.path(), 0);
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .expect("f");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 3 * rec_len + 30).expect("read");
    b[0] ^= 0xff;
    f.write_all_at(&b, 3 * rec_len + 30).expect("write");
    drop(f);
    let log = Log::builder(dir.path())
        .segment_bytes(seg_bytes)
        .open()
        .expect("reopen");
    assert_eq!(log.end_offset(), 100);
    match log.read(3) {
        Err(QueueError::Corrupt { offset, .. }) => assert_eq!(offset, 3),
        other => panic!("expected corrupt, got {other:?}"),
    }
    // A batch read stops before the damage; reading past it continues.
    let first = log.read_from(0, 1 << 20).expect("batch");
    assert_eq!(first.len(), 3);
    for i in (0..100).filter(|&i| i != 3) {
        assert_eq!(log.read(i).expect("read").payload[0], i as u8, "offset {i}");
    }
}

#[test]
fn damage_inside_the_active_segment_is_kept_not_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path()).expect("open");
        for i in 0..20 {
            log.append_sync(&[i as u8; 40]).expect("append");
        }
    }
    let rec_len = record::encoded_len(40) as u64;
    let path = segment::log_path(dir.path(), 0);
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .expect("f");
    f.write_all_at(&[0xee], 5 * rec_len + 30).expect("write");
    drop(f);
    let log = Log::open(dir.path()).expect("reopen");
    assert_eq!(log.recovery().truncated_bytes, 0);
    assert_eq!(log.recovery().corrupt_records, 1);
    assert_eq!(log.end_offset(), 20);
    assert!(matches!(
        log.read(5),
        Err(QueueError::Corrupt { offset: 5, .. })
    ));
    assert_eq!(log.read(19).expect("after the damage").payload[0], 19);
    assert_eq!(log.append_sync(b"next").expect("append"), 20);
}

#[test]
fn retention_by_size_and_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = kuai_core::ManualClock::new();
    let log = Log::builder(dir.path())
        .segment_bytes(1024)
        .retention_bytes(4096)
        .clock(Arc::new(clock.clone()))
        .sync_policy(SyncPolicy::PerRecord)
        .open()
        .expect("open");
    for _ in 0..200 {
        log.append_sync(&[0u8; 100]).expect("append");
    }
    assert!(log.size_bytes() <= 4096 + 1024, "{}", log.size_bytes());
    let start = log.start_offset();
    assert!(start > 0);
    assert!(matches!(log.read(0), Err(QueueError::OutOfRange { .. })));
    assert!(log.read(start).is_ok());
    drop(log);

    let log = Log::builder(dir.path())
        .segment_bytes(1024)
        .retention_age(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .open()
        .expect("reopen");
    assert_eq!(log.enforce_retention().expect("retention"), 0);
    clock.advance(Duration::from_secs(120));
    assert!(log.enforce_retention().expect("retention") > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.end_offset(), 200);
}

#[test]
fn concurrent_appenders_get_distinct_dense_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path()).expect("open"));
    let mut all: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let log = Arc::clone(&log);
                s.spawn(move || {
                    (0..250)
                        .map(|i| {
                            let off = log.append_sync(format!("{t}-{i}").as_bytes());
                            off.expect("append")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("join"))
            .collect()
    });
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}

#[test]
fn async_ticket_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let off = rt.block_on(log.append_async(b"a")).expect("ack");
    assert_eq!(off, 0);
}

#[cfg(target_os = "linux")]
#[test]
fn write_errors_are_never_acknowledged() {
    // A segment that is really /dev/full: every write fails with ENOSPC.
    if !Path::new("/dev/full").exists() {
        panic!("this test needs /dev/full (Linux)");
    }
    for (sync, backend) in [
        SyncPolicy::PerRecord,
        SyncPolicy::Group {
            max_latency: Duration::from_millis(1),
            max_batch_bytes: 1 << 20,
        },
    ]
    .into_iter()
    .flat_map(|s| BACKENDS.map(|b| (s, b)))
    {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/dev/full", segment::log_path(dir.path(), 0)).expect("link");
        let log = Log::builder(dir.path())
            .sync_policy(sync)
            .backend(backend)
            .open()
            .expect("open");
        let res = log.append(b"doomed").and_then(AppendTicket::wait);
        assert!(res.is_err(), "{res:?}");
        assert_eq!(log.end_offset(), 0);
        assert!(log.append_sync(b"again").is_err());
        let core: kuai_core::Error = res.expect_err("err").into();
        assert_eq!(core.kind(), kuai_core::ErrorKind::Backend);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Arbitrary segment bytes: opening and reading report errors, never panic.
    #[test]
    fn arbitrary_segments_never_panic(
        sealed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        active in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        valid_prefix in 0usize..5,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seg0 = Vec::new();
        for i in 0..valid_prefix as u64 {
            record::encode(&mut seg0, i, 0, &[i as u8; 3]);
        }
        seg0.extend_from_slice(&sealed);
        fs::write(segment::log_path(dir.path(), 0), &seg0).expect("write");
        let mut seg1 = Vec::new();
        record::encode(&mut seg1, 10, 0, b"ok");
        seg1.extend_from_slice(&active);
        fs::write(segment::log_path(dir.path(), 10), &seg1).expect("write");
        let log = Log::builder(dir.path()).max_record_bytes(4096).open().expect("open");
        proptest::prop_assert!(log.end_offset() >= 11);
        for off in 0..log.end_offset() {
            let r = log.read(off);
            if off < valid_prefix as u64 || off == 10 {
                proptest::prop_assert!(r.is_ok(), "offset {} {:?}", off, r);
            }
        }
        proptest::prop_assert_eq!(log.append_sync(b"x").expect("append"), log.end_offset() - 1);
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().expect("meta").len())
        .sum()
}

#[test]
fn mapped_crash_tail_of_zeros_is_trimmed_not_reported_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || {
        Log::builder(dir.path())
            .backend(SegmentBackend::Mapped)
            .segment_bytes(2048)
            .open()
            .expect("open")
    };
    {
        let log = open();
        for i in 0..100 {
            log.append_sync(&payload(i)).expect("append");
        }
    }
    // What a crash leaves: pre-allocated zeros after the last record, in
    // the active segment and (a crash between roll and trim) a sealed one.
    let mut bases: Vec<u64> = fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() > 2);
    let grow = |base: u64| {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(segment::log_path(dir.path(), base))
            .expect("f");
        let len = f.metadata().expect("meta").len();
        f.set_len(len + 8192).expect("grow");
        len
    };
    let sealed_len = grow(bases[0]);
    grow(bases[bases.len() - 1]);
    let log = open();
    assert_eq!(log.recovery().truncated_bytes, 0);
    assert_eq!(log.recovery().trimmed_preallocation, 8192);
    assert_eq!(
        fs::metadata(segment::log_path(dir.path(), bases[0]))
            .expect("meta")
            .len(),
        sealed_len
    );
    assert_eq!(log.end_offset(), 100);
    for i in 0..100 {
        assert_eq!(log.read(i).expect("read").payload.as_ref(), &payload(i)[..]);
    }
    assert_eq!(log.append_sync(b"next").expect("append"), 100);
}

#[test]
fn mmap_reads_are_zero_copy_and_follow_a_growing_segment() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::builder(dir.path())
            .backend(backend)
            .read_mode(ReadMode::Mmap)
            .open()
            .expect("open");
        log.append_sync(b"first").expect("append");
        let a = log.read(0).expect("read");
        // Served from one shared mapping: the same bytes, not a fresh copy.
        let b = log.read(0).expect("read");
        assert_eq!(a.payload.as_ptr(), b.payload.as_ptr(), "{backend:?}");
        // The segment grows past what was mapped: reads remap.
        for i in 1..2000u64 {
            let _ticket = log.append(&i.to_le_bytes()).expect("append");
        }
        log.flush().expect("flush");
        let last = log.read(1999).expect("read after growth");
        assert_eq!(last.payload.as_ref(), &1999u64.to_le_bytes());
        // Payloads outlive the log (the mapping lives as long as they do).
        drop(log);
        assert_eq!(a.payload.as_ref(), b"first");
        assert_eq!(last.payload.as_ref(), &1999u64.to_le_bytes());
    }
}

#[test]
fn mapped_payloads_survive_retention_deleting_their_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::builder(dir.path())
        .backend(SegmentBackend::Mapped)
        .segment_bytes(1024)
        .retention_bytes(2048)
        .open()
        .expect("open");
    log.append_sync(&[7u8; 100]).expect("append");
    let kept = log.read(0).expect("read");
    for _ in 0..100 {
        log.append_sync(&[1u8; 100]).expect("append");
    }
    assert!(log.start_offset() > 0);
    assert!(!segment::log_path(dir.path(), 0).exists());
    assert_eq!(kept.payload.as_ref(), &[7u8; 100]);
}

#[test]
fn a_log_written_by_one_backend_opens_with_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (round, backend) in [
        SegmentBackend::Mapped,
        SegmentBackend::Write,
        SegmentBackend::Mapped,
    ]
    .into_iter()
    .enumerate()
    {
        let log = Log::builder(dir.path())
            .backend(backend)
            .segment_bytes(1024)
            .open()
            .expect("open");
        let base = round as u64 * 50;
        assert_eq!(log.end_offset(), base);
        for i in base..base + 50 {
            assert_eq!(log.append_sync(&payload(i)).expect("append"), i);
        }
        for i in 0..base + 50 {
            assert_eq!(log.read(i).expect("read").payload.as_ref(), &payload(i)[..]);
        }
    }
}

#[test]
fn sealing_a_mapped_segment_under_a_live_mapping_is_safe() {
    // The reader maps the active segment while it still carries its
    // zero-filled pre-allocation; rolling trims the file below the mapping's
    // length. Reads stay below the durable size, so they never touch a page
    // past the new end of file (which would SIGBUS).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::builder(dir.path())
        .backend(SegmentBackend::Mapped)
        .read_mode(ReadMode::Mmap)
        .segment_bytes(64 << 10)
        .open()
        .expect("open");
    log.append_sync(&payload(0)).expect("append");
    let first = log.read(0).expect("read");
    let path = segment::log_path(dir.path(), 0);
    assert!(fs::metadata(&path).expect("meta").len() > log.size_bytes());
    let mut i = 1;
    while log.segment_count() == 1 {
        log.append_sync(&payload(i)).expect("append");
        i += 1;
    }
    // Sealed and trimmed to its records, while the old mapping is alive.
    let sealed_len = fs::metadata(&path).expect("meta").len();
    assert!(sealed_len <= 64 << 10);
    assert_eq!(first.payload.as_ref(), &payload(0)[..]);
    for j in 0..i {
        assert_eq!(log.read(j).expect("read").payload.as_ref(), &payload(j)[..]);
    }
}
