//! Crash safety of the durable log: a child process appends and prints every
//! acknowledged offset; it is killed with SIGKILL at random moments; after
//! each kill (and, every other round, a simulated power cut that drops and
//! tears the un-fsynced tail) the log must reopen with every acknowledged
//! record intact and a clean tail.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kuai_queue::log::{Log, SegmentBackend};

const CHILD_ENV: &str = "KUAI_QUEUE_CRASH_CHILD_DIR";
const BACKEND_ENV: &str = "KUAI_QUEUE_CRASH_BACKEND";
const SEGMENT_BYTES: u64 = 64 * 1024;

/// Payload for (writer, seq): self-describing, variable length.
fn payload(writer: u64, seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(2_654_435_761) % 700) as usize;
    let mut v = writer.to_le_bytes().to_vec();
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..len).map(|j| (seq as usize).wrapping_add(j) as u8));
    v
}

fn open(dir: &Path, backend: SegmentBackend) -> Log {
    Log::builder(dir)
        .backend(backend)
        .segment_bytes(SEGMENT_BYTES)
        .index_interval_bytes(512)
        .group_commit(Duration::from_millis(1))
        .open()
        .expect("open log")
}

/// The child: two writers, up to 32 acks in flight each, printing
/// `ack <offset> <writer> <seq>` only after the record is durable.
#[test]
#[ignore = "helper process for crash_recovery_keeps_every_acknowledged_record"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let backend = match std::env::var(BACKEND_ENV).as_deref() {
        Ok("mapped") => SegmentBackend::Mapped,
        _ => SegmentBackend::Write,
    };
    let log = Arc::new(open(Path::new(&dir), backend));
    let start: u64 = std::env::var("KUAI_QUEUE_CRASH_SEQ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::thread::scope(|s| {
        for writer in 0..2u64 {
            let log = Arc::clone(&log);
            s.spawn(move || {
                let mut in_flight = VecDeque::new();
                let mut seq = start;
                loop {
                    while in_flight.len() < 32 {
                        match log.append(&payload(writer, seq)) {
                            Ok(t) => in_flight.push_back((t, seq)),
                            Err(e) => panic!("append failed: {e}"),
                        }
                        seq += 1;
                    }
                    if let Some((t, seq)) = in_flight.pop_front() {
                        let off = t.wait().expect("ack");
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {off} {writer} {seq}");
                        let _ = out.flush();
                    }
                }
            });
        }
    });
}

/// Simulates a power cut: everything after the last acknowledged record of
/// the last segment may be lost or torn. Cuts the file at a random point
/// after that record and appends random garbage.
fn power_cut(dir: &Path, max_acked: Option<u64>, rng: &mut fastrand::Rng) {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let Some(last) = logs.last() else { return };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(last)
        .expect("open segment");
    let len = f.metadata().expect("meta").len();
    // Walk the documented record format to find the end of the last acked record.
    let mut pos = 0u64;
    let mut keep = 0u64;
    let mut hdr = [0u8; 24];
    while pos + 24 <= len && f.read_exact_at(&mut hdr, pos).is_ok() {
        let body = u64::from(u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]));
        let off = u64::from_le_bytes(hdr[8..16].try_into().expect("8 bytes"));
        if body < 16 || pos + 8 + body > len {
            break;
        }
        pos += 8 + body;
        if max_acked.is_some_and(|m| off <= m) {
            keep = pos;
        }
    }
    let cut = keep + rng.u64(0..=len.saturating_sub(keep));
    f.set_len(cut).expect("truncate");
    let garbage: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
    f.write_all_at(&garbage, cut).expect("garbage");
}

#[test]
fn crash_recovery_keeps_every_acknowledged_record() {
    crash_rounds(SegmentBackend::Write, "write");
}

#[test]
fn crash_recovery_keeps_every_acknowledged_record_mapped() {
    crash_rounds(SegmentBackend::Mapped, "mapped");
}

fn crash_rounds(backend: SegmentBackend, backend_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut rng = fastrand::Rng::with_seed(0x6b75_6169);
    // offset -> (writer, seq) of every acknowledged record, across rounds.
    let mut acked: HashMap<u64, (u64, u64)> = HashMap::new();
    let rounds = 8;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(BACKEND_ENV, backend_name)
            .env("KUAI_QUEUE_CRASH_SEQ", (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (first_ack, got_first) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split_whitespace();
                if it.next() != Some("ack") {
                    continue;
                }
                let nums: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
                if let [off, w, s] = nums[..] {
                    if got.is_empty() {
                        let _ = first_ack.send(());
                    }
                    got.push((off, w, s));
                }
            }
            got
        });
        // Once it acknowledges something, kill it at a random moment.
        if got_first.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("round {round}: the child acknowledged nothing within 60 s");
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..120)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let got = reader.join().expect("reader");
        for (off, w, s) in got {
            assert!(
                acked.insert(off, (w, s)).is_none(),
                "offset {off} acknowledged twice"
            );
        }
        if round % 2 == 1 {
            power_cut(dir.path(), acked.keys().copied().max(), &mut rng);
        }
        let log = open(dir.path(), backend);
        eprintln!(
            "{backend_name} round {round}: {} acked so far, end {}, recovery {:?}",
            acked.len(),
            log.end_offset(),
            log.recovery()
        );
        for (&off, &(w, s)) in &acked {
            let rec = log
                .read(off)
                .unwrap_or_else(|e| panic!("round {round}: acked offset {off} lost: {e}"));
            assert_eq!(rec.payload.as_ref(), &payload(w, s)[..], "offset {off}");
        }
        // Everything up to the end is readable (the torn tail is gone).
        let mut next = log.start_offset();
        while next < log.end_offset() {
            let batch = log.read_from(next, 1 << 20).expect("clean tail");
            assert!(!batch.is_empty());
            next += batch.len() as u64;
        }
        assert_eq!(next, log.end_offset());
    }
    assert!(
        acked.len() >= rounds as usize,
        "the child acknowledged only {} records",
        acked.len()
    );
}
