//! The zerocopy section of `cargo xtask bench`: the seed's file-transfer
//! table (read+write vs sendfile, 7–350 MiB) reproduced over loopback TCP,
//! with wall time AND CPU time (user+sys of the server and client threads),
//! pinned and unpinned; kuai's wrappers against the raw rustix calls; the
//! automatic choice against the best fixed method; a socket→socket proxy
//! relay; and mmap vs read for sequential scans and random 4 KiB reads.
//!
//! Over loopback there is no NIC: the receiver's copy out of the socket
//! buffer sets the pace, so zero-copy's gain shows at small sizes and as
//! CPU time rather than as a large wall-time ratio. Files live in a temp
//! dir that is removed at the end.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kuai::zerocopy::transfer::{Method, Transfer};
use kuai::zerocopy::{Advice, MappedFile};
use kuai_benches::{Better, Row, Section, ms};
use rustix::pipe::{PipeFlags, SpliceFlags};

const MIB: usize = 1024 * 1024;
/// The seed's table: (MB, normal ms, transferTo ms).
const SEED: [(usize, f64, f64); 6] = [
    (7, 156.0, 45.0),
    (21, 337.0, 128.0),
    (63, 843.0, 387.0),
    (98, 1320.0, 617.0),
    (200, 2124.0, 1150.0),
    (350, 3631.0, 1762.0),
];

// ---------------------------------------------------------------- helpers

/// A temp dir removed on drop.
struct Scratch(PathBuf);
impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let p = std::env::temp_dir().join(format!("kuai-bench-zerocopy-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_file(path: &Path, len: usize) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    let mut chunk = vec![0u8; MIB];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2654435761) as u8;
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    f.sync_all()?;
    // Warm the page cache: the experiment serves from memory.
    let mut r = File::open(path)?;
    let mut buf = vec![0u8; MIB];
    while r.read(&mut buf)? > 0 {}
    Ok(())
}

/// user and system CPU time of the calling thread.
#[derive(Clone, Copy, Default, Debug)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        // SAFETY: `getrusage` writes into the zero-initialised `rusage` we
        // own and pass by pointer; RUSAGE_THREAD is valid on Linux ≥ 2.6.26.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
            ru
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Cpu {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }
    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(start.user),
            sys: self.sys.saturating_sub(start.sys),
        }
    }
    fn total(self) -> Duration {
        self.user + self.sys
    }
}

/// Pins the calling thread to one CPU.
fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

/// Two distinct CPUs this process may run on, if there are two.
fn two_cpus() -> Option<(usize, usize)> {
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c));
    Some((cpus.next()?, cpus.next()?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

// ------------------------------------------------------------ file serving

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Serve {
    Rw8k,
    Rw64k,
    Sendfile,
    Splice,
    Mmap,
    Auto,
    RawSendfile,
    RawSplice,
}

impl Serve {
    fn name(self) -> &'static str {
        match self {
            Serve::Rw8k => "read+write 8 KiB",
            Serve::Rw64k => "read+write 64 KiB",
            Serve::Sendfile => "kuai sendfile",
            Serve::Splice => "kuai splice",
            Serve::Mmap => "kuai mmap+write",
            Serve::Auto => "kuai auto",
            Serve::RawSendfile => "raw rustix sendfile",
            Serve::RawSplice => "raw rustix splice",
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct Sample {
    wall: Duration,
    server: Cpu,
    client: Cpu,
}

fn rw_loop(file: &File, len: usize, sock: &mut TcpStream, buf: usize) -> std::io::Result<()> {
    let mut b = vec![0u8; buf];
    let mut off = 0usize;
    while off < len {
        let n = file.read_at(&mut b[..buf.min(len - off)], off as u64)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        sock.write_all(&b[..n])?;
        off += n;
    }
    Ok(())
}

fn raw_sendfile(file: &File, len: usize, sock: &TcpStream) -> std::io::Result<()> {
    let mut off = 0u64;
    while (off as usize) < len {
        let want = len - off as usize;
        let n = rustix::fs::sendfile(sock, file, Some(&mut off), want)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

fn raw_splice(file: &File, len: usize, sock: &TcpStream) -> std::io::Result<()> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let cap = rustix::pipe::fcntl_setpipe_size(&w, MIB).unwrap_or(64 * 1024);
    let mut off = 0u64;
    while (off as usize) < len {
        let want = cap.min(len - off as usize);
        let n = rustix::pipe::splice(
            file,
            Some(&mut off),
            &w,
            None,
            want,
            SpliceFlags::MOVE | SpliceFlags::MORE,
        )?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut left = n;
        while left > 0 {
            left -= rustix::pipe::splice(
                &r,
                None,
                sock,
                None,
                left,
                SpliceFlags::MOVE | SpliceFlags::MORE,
            )?;
        }
    }
    Ok(())
}

fn serve(
    how: Serve,
    path: &Path,
    file: &File,
    len: usize,
    sock: &mut TcpStream,
) -> std::io::Result<()> {
    let err = |e: kuai::zerocopy::ZeroCopyError| std::io::Error::other(e.to_string());
    match how {
        Serve::Rw8k => rw_loop(file, len, sock, 8 * 1024),
        Serve::Rw64k => rw_loop(file, len, sock, 64 * 1024),
        Serve::Sendfile => Transfer::new()
            .method(Method::Sendfile)
            .file_to_socket(file, 0, len as u64, &*sock)
            .map(drop)
            .map_err(err),
        Serve::Splice => Transfer::new()
            .method(Method::Splice)
            .file_to_socket(file, 0, len as u64, &*sock)
            .map(drop)
            .map_err(err),
        Serve::Auto => Transfer::new()
            .file_to_socket(file, 0, len as u64, &*sock)
            .map(drop)
            .map_err(err),
        Serve::Mmap => {
            let m = MappedFile::options()
                .advice(Advice::Sequential)
                .open(path)
                .map_err(err)?;
            Transfer::new()
                .mapped_to_socket(&m, &*sock)
                .map(drop)
                .map_err(err)
        }
        Serve::RawSendfile => raw_sendfile(file, len, sock),
        Serve::RawSplice => raw_splice(file, len, sock),
    }
}

/// One transfer of the whole file to a fresh loopback connection.
fn serve_once(
    listener: &TcpListener,
    how: Serve,
    path: &Path,
    len: usize,
    cpus: Option<(usize, usize)>,
) -> std::io::Result<Sample> {
    let addr = listener.local_addr()?;
    let client = TcpStream::connect(addr)?;
    let (mut server, _) = listener.accept()?;
    let file = File::open(path)?;
    let barrier = Arc::new(Barrier::new(2));
    let b2 = Arc::clone(&barrier);
    let client_thread = std::thread::spawn(move || -> std::io::Result<(Duration, Cpu)> {
        pin(cpus.map(|c| c.1));
        let mut client = client;
        let mut buf = vec![0u8; 128 * 1024];
        b2.wait();
        let c0 = Cpu::now();
        let t0 = Instant::now();
        let mut got = 0usize;
        while got < len {
            let n = client.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        Ok((t0.elapsed(), Cpu::now().since(c0)))
    });
    let path2 = path.to_path_buf();
    let server_thread = std::thread::spawn(move || -> std::io::Result<Cpu> {
        pin(cpus.map(|c| c.0));
        barrier.wait();
        let c0 = Cpu::now();
        serve(how, &path2, &file, len, &mut server)?;
        Ok(Cpu::now().since(c0))
    });
    let server_cpu = server_thread
        .join()
        .map_err(|_| std::io::Error::other("server thread panicked"))??;
    let (wall, client_cpu) = client_thread
        .join()
        .map_err(|_| std::io::Error::other("client thread panicked"))??;
    Ok(Sample {
        wall,
        server: server_cpu,
        client: client_cpu,
    })
}

/// Medians per method: wall ms, server CPU ms, client CPU ms, total CPU ms.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    wall: f64,
    server: f64,
    client: f64,
    total: f64,
}

fn measure_all(
    listener: &TcpListener,
    methods: &[Serve],
    path: &Path,
    len: usize,
    cpus: Option<(usize, usize)>,
    runs: usize,
) -> std::io::Result<Vec<Stats>> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); methods.len()];
    // One warm-up round, then `runs` rounds, methods interleaved so that
    // background noise does not favour whichever runs last.
    for round in 0..=runs {
        for (i, &m) in methods.iter().enumerate() {
            let s = serve_once(listener, m, path, len, cpus)?;
            if round > 0 {
                samples[i].push(s);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|v| Stats {
            wall: median(v.iter().map(|s| ms(s.wall)).collect()),
            server: median(v.iter().map(|s| ms(s.server.total())).collect()),
            client: median(v.iter().map(|s| ms(s.client.total())).collect()),
            total: median(
                v.iter()
                    .map(|s| ms(s.server.total() + s.client.total()))
                    .collect(),
            ),
        })
        .collect())
}

fn cpu_params(row: Row, prefix: &str, s: &Stats) -> Row {
    row.param(&format!("{prefix}_server_cpu_ms"), round2(s.server))
        .param(&format!("{prefix}_client_cpu_ms"), round2(s.client))
        .param(&format!("{prefix}_total_cpu_ms"), round2(s.total))
        .param(&format!("{prefix}_wall_ms"), round2(s.wall))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

const LOOPBACK_NOTE: &str =
    "loopback: the receiver's copy sets the pace, so zero-copy shows at small sizes and as CPU";

fn file_serving(s: &mut Section, dir: &Path) {
    // KUAI_ZC_SIZES=7,21 restricts the sizes (for exploring by hand).
    let only: Option<Vec<usize>> = std::env::var("KUAI_ZC_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let sizes: Vec<(usize, f64, f64)> = SEED
        .iter()
        .copied()
        .filter(|(mb, _, _)| match &only {
            Some(list) => list.contains(mb),
            None => !s.quick() || *mb == 7 || *mb == 63,
        })
        .collect();
    // Budget: the serving experiments get this long in all; repeats shrink
    // (never below 3 unless the machine is far slower than expected) when
    // the observed throughput says the full count would not fit.
    let budget = Duration::from_secs(s.pick(9, 60));
    let started = Instant::now();
    let mut bytes_per_sec = 1.5e9_f64; // first guess; refined as we go
    let total_mib: usize = sizes.iter().map(|x| x.0).sum();
    let mut mib_left = total_mib;
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            s.record(Row::new("serve files over loopback", "ms", Better::Lower).error(e));
            return;
        }
    };
    let cpus = two_cpus();
    let pinned_methods = [
        Serve::Rw8k,
        Serve::Rw64k,
        Serve::Sendfile,
        Serve::Splice,
        Serve::Mmap,
        Serve::Auto,
        Serve::RawSendfile,
        Serve::RawSplice,
    ];
    let unpinned_methods = [
        Serve::Rw8k,
        Serve::Sendfile,
        Serve::Splice,
        Serve::Mmap,
        Serve::Auto,
    ];
    let per_round = pinned_methods.len() + unpinned_methods.len();
    for (mb, seed_normal, seed_zc) in sizes {
        let len = mb * MIB;
        // Share of the remaining budget for this size, by bytes.
        let left = budget.saturating_sub(started.elapsed()).as_secs_f64();
        let mine = left * mb as f64 / mib_left.max(1) as f64;
        mib_left = mib_left.saturating_sub(mb);
        let round_secs = (per_round * len) as f64 / bytes_per_sec;
        let wanted = if mb <= 21 { s.pick(7, 9) } else { s.pick(3, 5) };
        let fit = (mine / round_secs).floor() as usize; // includes the warm-up
        let runs = wanted
            .min(fit.saturating_sub(1))
            .max(if fit >= 3 { 3 } else { 1 });
        let size_started = Instant::now();
        let path = dir.join(format!("serve-{mb}"));
        if let Err(e) = make_file(&path, len) {
            s.record(Row::new(format!("serve {mb} MiB"), "ms", Better::Lower).error(e));
            continue;
        }
        // ---- pinned: server and client on different cores
        match cpus {
            None => s.record(
                Row::new(format!("serve {mb} MiB, pinned"), "ms", Better::Lower)
                    .error("fewer than two CPUs available for pinning"),
            ),
            Some(c) => match measure_all(&listener, &pinned_methods, &path, len, Some(c), runs) {
                Err(e) => s.record(
                    Row::new(format!("serve {mb} MiB, pinned"), "ms", Better::Lower).error(e),
                ),
                Ok(st) => record_pinned(s, mb, seed_normal, seed_zc, &pinned_methods, &st, runs),
            },
        }
        // ---- unpinned
        match measure_all(&listener, &unpinned_methods, &path, len, None, runs) {
            Err(e) => s.record(
                Row::new(format!("serve {mb} MiB, unpinned"), "ms", Better::Lower).error(e),
            ),
            Ok(st) => {
                let base = st[0];
                for (i, &m) in unpinned_methods.iter().enumerate().skip(1) {
                    let k = st[i];
                    s.record(
                        cpu_params(
                            cpu_params(
                                Row::new(
                                    format!("serve {mb} MiB unpinned: wall, {}", m.name()),
                                    "ms",
                                    Better::Lower,
                                )
                                .peer(Serve::Rw8k.name(), base.wall)
                                .kuai(k.wall)
                                .param("mib", mb)
                                .param("pinned", false)
                                .param("runs", runs),
                                "peer",
                                &base,
                            ),
                            "kuai",
                            &k,
                        )
                        .note(LOOPBACK_NOTE),
                    );
                    s.record(
                        Row::new(format!("serve {mb} MiB unpinned: total CPU, {}", m.name()), "ms", Better::Lower)
                            .peer(Serve::Rw8k.name(), base.total)
                            .kuai(k.total)
                            .param("mib", mb)
                            .param("pinned", false)
                            .param("peer_server_cpu_ms", round2(base.server))
                            .param("peer_client_cpu_ms", round2(base.client))
                            .param("kuai_server_cpu_ms", round2(k.server))
                            .param("kuai_client_cpu_ms", round2(k.client))
                            .note("unpinned: the receiver's kernel work lands on whichever thread runs; compare totals"),
                    );
                }
            }
        }
        let moved = (per_round * len * (runs + 1)) as f64;
        bytes_per_sec = moved / size_started.elapsed().as_secs_f64().max(1e-3);
        let _ = std::fs::remove_file(&path);
    }
}

fn record_pinned(
    s: &mut Section,
    mb: usize,
    seed_normal: f64,
    seed_zc: f64,
    methods: &[Serve],
    st: &[Stats],
    runs: usize,
) {
    let get = |m: Serve| st[methods.iter().position(|&x| x == m).unwrap_or(0)];
    let base = get(Serve::Rw8k);
    let rw64 = get(Serve::Rw64k);
    for m in [Serve::Sendfile, Serve::Splice, Serve::Mmap, Serve::Auto] {
        let k = get(m);
        let mut wall = Row::new(
            format!("serve {mb} MiB pinned: wall, {}", m.name()),
            "ms",
            Better::Lower,
        )
        .peer(Serve::Rw8k.name(), base.wall)
        .kuai(k.wall)
        .param("mib", mb)
        .param("pinned", true)
        .param("rw64k_wall_ms", round2(rw64.wall))
        .param("runs", runs)
        .param("seed_normal_ms", seed_normal);
        if m == Serve::Sendfile {
            wall = wall.seed(seed_zc).note(format!(
                "seed (IBM, sendfile/transferTo): {seed_zc} ms vs normal {seed_normal} ms = {:.2}x; {LOOPBACK_NOTE}",
                seed_normal / seed_zc
            ));
        } else {
            wall = wall.note(LOOPBACK_NOTE);
        }
        s.record(cpu_params(cpu_params(wall, "peer", &base), "kuai", &k));
        let mut cpu = Row::new(
            format!("serve {mb} MiB pinned: total CPU, {}", m.name()),
            "ms",
            Better::Lower,
        )
        .peer(Serve::Rw8k.name(), base.total)
        .kuai(k.total)
        .param("mib", mb)
        .param("pinned", true)
        .param("peer_server_cpu_ms", round2(base.server))
        .param("peer_client_cpu_ms", round2(base.client))
        .param("kuai_server_cpu_ms", round2(k.server))
        .param("kuai_client_cpu_ms", round2(k.client))
        .param("rw64k_total_cpu_ms", round2(rw64.total));
        if m == Serve::Auto {
            cpu = cpu.note("target: auto uses less total CPU than the 8 KiB copy loop (ratio > 1)");
        }
        s.record(cpu);
    }
    // The wrappers against the raw calls they wrap.
    for (kuai, raw) in [
        (Serve::Sendfile, Serve::RawSendfile),
        (Serve::Splice, Serve::RawSplice),
    ] {
        let (k, r) = (get(kuai), get(raw));
        s.record(
            Row::new(
                format!("serve {mb} MiB pinned: wall, {} vs raw", kuai.name()),
                "ms",
                Better::Lower,
            )
            .peer(raw.name(), r.wall)
            .kuai(k.wall)
            .param("mib", mb)
            .note("target: within 5 % of the raw call (ratio ≥ 0.95)"),
        );
        s.record(
            Row::new(
                format!("serve {mb} MiB pinned: total CPU, {} vs raw", kuai.name()),
                "ms",
                Better::Lower,
            )
            .peer(raw.name(), r.total)
            .kuai(k.total)
            .param("mib", mb)
            .note("target: within 5 % of the raw call (ratio ≥ 0.95)"),
        );
    }
    // The automatic choice against the best fixed method at this size.
    let fixed = [
        Serve::Rw8k,
        Serve::Rw64k,
        Serve::Sendfile,
        Serve::Splice,
        Serve::Mmap,
    ];
    let best = fixed
        .iter()
        .copied()
        .min_by(|a, b| get(*a).wall.total_cmp(&get(*b).wall))
        .unwrap_or(Serve::Sendfile);
    s.record(
        Row::new(
            format!("serve {mb} MiB pinned: wall, kuai auto vs best fixed"),
            "ms",
            Better::Lower,
        )
        .peer(format!("best fixed: {}", best.name()), get(best).wall)
        .kuai(get(Serve::Auto).wall)
        .param("mib", mb)
        .note("target: auto never more than 5 % behind the best fixed method (ratio ≥ 0.95)"),
    );
}

// ------------------------------------------------------------ proxy relay

fn relay_once(total: usize, splice: bool) -> std::io::Result<(Duration, Cpu)> {
    let l1 = TcpListener::bind("127.0.0.1:0")?;
    let l2 = TcpListener::bind("127.0.0.1:0")?;
    let mut origin = TcpStream::connect(l1.local_addr()?)?;
    let (proxy_in, _) = l1.accept()?;
    let sink = TcpStream::connect(l2.local_addr()?)?;
    let (mut proxy_out, _) = l2.accept()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            origin.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    });
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let mut sink = sink;
        let mut buf = vec![0u8; 128 * 1024];
        let mut got = 0;
        loop {
            let n = sink.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n;
        }
    });
    let c0 = Cpu::now();
    let t0 = Instant::now();
    if splice {
        Transfer::new()
            .relay(&proxy_in, &proxy_out, Some(total as u64))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    } else {
        let mut proxy_in = proxy_in;
        let mut buf = vec![0u8; 64 * 1024];
        let mut moved = 0;
        while moved < total {
            let n = proxy_in.read(&mut buf)?;
            if n == 0 {
                break;
            }
            proxy_out.write_all(&buf[..n])?;
            moved += n;
        }
    }
    drop(proxy_out);
    let got = reader
        .join()
        .map_err(|_| std::io::Error::other("reader panicked"))??;
    let wall = t0.elapsed();
    let cpu = Cpu::now().since(c0);
    writer
        .join()
        .map_err(|_| std::io::Error::other("writer panicked"))??;
    if got != total {
        return Err(std::io::Error::other(format!(
            "relayed {got} of {total} bytes"
        )));
    }
    Ok((wall, cpu))
}

fn proxy_relay(s: &mut Section) {
    let total = s.pick(64, 256) * MIB;
    let runs = s.pick(3, 5);
    let mut copy = (Vec::new(), Vec::new());
    let mut splice = (Vec::new(), Vec::new());
    for round in 0..=runs {
        for (use_splice, acc) in [(false, &mut copy), (true, &mut splice)] {
            match relay_once(total, use_splice) {
                Ok((wall, cpu)) if round > 0 => {
                    acc.0.push(total as f64 / MIB as f64 / wall.as_secs_f64());
                    acc.1.push(ms(cpu.total()));
                }
                Ok(_) => {}
                Err(e) => {
                    s.record(
                        Row::new("proxy relay socket→socket", "MiB/s", Better::Higher).error(e),
                    );
                    return;
                }
            }
        }
    }
    let mib = total / MIB;
    s.record(
        Row::new(
            format!("proxy relay {mib} MiB socket→socket: throughput"),
            "MiB/s",
            Better::Higher,
        )
        .peer("read+write 64 KiB copy loop", median(copy.0))
        .kuai(median(splice.0))
        .param("mib", mib)
        .note("kuai: splice through a pipe; 3 threads (origin, proxy, sink) share the machine"),
    );
    s.record(
        Row::new(
            format!("proxy relay {mib} MiB socket→socket: proxy CPU"),
            "ms",
            Better::Lower,
        )
        .peer("read+write 64 KiB copy loop", median(copy.1))
        .kuai(median(splice.1))
        .param("mib", mib)
        .note("user+sys CPU of the proxy thread"),
    );
}

// ------------------------------------------------------------ mmap vs read

fn checksum(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        acc = acc.wrapping_add(u64::from_le_bytes(w));
    }
    for &b in chunks.remainder() {
        acc = acc.wrapping_add(b as u64);
    }
    acc
}

fn mmap_vs_read(s: &mut Section, dir: &Path) {
    let len = s.pick(128, 1024) * MIB;
    let path = dir.join("scan");
    if let Err(e) = make_file(&path, len) {
        s.record(Row::new("mmap vs read", "GiB/s", Better::Higher).error(e));
        return;
    }
    let runs = s.pick(3, 5);
    let gib = len as f64 / (1024.0 * MIB as f64);
    // Sequential scan: read() with a 64 KiB buffer vs a fresh mapping.
    let mut read_t = Vec::new();
    let mut map_t = Vec::new();
    let mut sums = (0u64, 0u64);
    let result: std::io::Result<()> = (|| {
        for round in 0..=runs {
            let t0 = Instant::now();
            let mut f = File::open(&path)?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut acc = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                acc = acc.wrapping_add(checksum(&buf[..n]));
            }
            let tr = t0.elapsed();
            let t1 = Instant::now();
            let m = MappedFile::options()
                .advice(Advice::Sequential)
                .open(&path)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut acc2 = 0u64;
            for c in m.as_slice().chunks(64 * 1024) {
                acc2 = acc2.wrapping_add(checksum(c));
            }
            drop(m);
            let tm = t1.elapsed();
            sums = (acc, acc2);
            if round > 0 {
                read_t.push(gib / tr.as_secs_f64());
                map_t.push(gib / tm.as_secs_f64());
            }
        }
        Ok(())
    })();
    match result {
        Err(e) => s.record(Row::new("sequential scan", "GiB/s", Better::Higher).error(e)),
        Ok(()) if sums.0 != sums.1 => s.record(
            Row::new("sequential scan", "GiB/s", Better::Higher)
                .error("checksums differ between read and mmap"),
        ),
        Ok(()) => s.record(
            Row::new(
                format!("sequential scan {} MiB (checksum)", len / MIB),
                "GiB/s",
                Better::Higher,
            )
            .peer("read 64 KiB", median(read_t))
            .kuai(median(map_t))
            .param("mib", len / MIB)
            .note("kuai: MappedFile with MADV_SEQUENTIAL, mapping cost included; page cache warm"),
        ),
    }
    // Random 4 KiB reads: pread into a buffer vs a slice of a mapping made once.
    let reads = s.pick(20_000, 100_000);
    let pages = len / 4096;
    let mut x = 0x9e3779b97f4a7c15u64;
    let offsets: Vec<usize> = (0..reads)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as usize % pages) * 4096
        })
        .collect();
    let result: std::io::Result<(f64, f64)> = (|| {
        let f = File::open(&path)?;
        let m = MappedFile::options()
            .advice(Advice::Random)
            .open(&path)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut pr = Vec::new();
        let mut mm = Vec::new();
        let mut buf = vec![0u8; 4096];
        for round in 0..=runs {
            let t0 = Instant::now();
            let mut a = 0u64;
            for &o in &offsets {
                f.read_exact_at(&mut buf, o as u64)?;
                a = a.wrapping_add(checksum(&buf));
            }
            let tp = t0.elapsed();
            let t1 = Instant::now();
            let mut b = 0u64;
            let data = m.as_slice();
            for &o in &offsets {
                b = b.wrapping_add(checksum(&data[o..o + 4096]));
            }
            let tm = t1.elapsed();
            if a != b {
                return Err(std::io::Error::other("checksums differ"));
            }
            if round > 0 {
                pr.push(tp.as_secs_f64() * 1e9 / reads as f64);
                mm.push(tm.as_secs_f64() * 1e9 / reads as f64);
            }
        }
        Ok((median(pr), median(mm)))
    })();
    match result {
        Err(e) => s.record(Row::new("random 4 KiB reads", "ns/read", Better::Lower).error(e)),
        Ok((p, k)) => s.record(
            Row::new(format!("random 4 KiB reads over {} MiB", len / MIB), "ns/read", Better::Lower)
                .peer("pread 4 KiB", p)
                .kuai(k)
                .param("reads", reads)
                .param("mib", len / MIB)
                .note("kuai: MappedFile (MADV_RANDOM) mapped once, slice + checksum; first round warms the page tables"),
        ),
    }
    let _ = std::fs::remove_file(&path);
}

fn main() {
    let mut s = Section::from_args("zerocopy");
    let t0 = Instant::now();
    let scratch = match Scratch::new() {
        Ok(d) => d,
        Err(e) => {
            s.record(Row::new("zerocopy scratch dir", "ms", Better::Lower).error(e));
            return;
        }
    };
    file_serving(&mut s, &scratch.0);
    proxy_relay(&mut s);
    mmap_vs_read(&mut s, &scratch.0);
    drop(scratch);
    eprintln!("zerocopy section took {:.1} s", t0.elapsed().as_secs_f64());
}
