//! The `kuai-server` binary: flags (or a `redis.conf`-style file) in, a
//! Redis-protocol server out. SIGTERM / Ctrl-C shut it down gracefully,
//! syncing the append-only file.

// The allocator is a build choice (the seed's pooling chapter compares
// ptmalloc with tcmalloc/jemalloc): `--features jemalloc` or `mimalloc`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kuai_server::{Config, Server};

/// A Redis-protocol key-value server built from the kuai crates.
#[derive(Debug, Parser)]
#[command(name = "kuai-server", version)]
struct Args {
    /// A redis.conf-style file (`key value` per line); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long)]
    bind: Option<String>,
    /// TCP port (0 = any free port).
    #[arg(long)]
    port: Option<u16>,
    /// kuai-reactor I/O threads (event loops).
    #[arg(long)]
    threads: Option<usize>,
    /// How connections reach the I/O threads: main-sub (an acceptor thread
    /// hands each connection to one I/O thread, the default) or reuseport
    /// (a `SO_REUSEPORT` listener per thread).
    #[arg(long)]
    accept_mode: Option<String>,
    /// Close clients idle for this many seconds (0 = never).
    #[arg(long)]
    timeout: Option<u64>,
    /// Require this password (AUTH).
    #[arg(long)]
    requirepass: Option<String>,
    /// Most simultaneous clients.
    #[arg(long)]
    maxclients: Option<usize>,
    /// Memory budget for keys and values (e.g. 100mb; 0 = unlimited).
    #[arg(long)]
    maxmemory: Option<String>,
    /// noeviction | allkeys-lru | allkeys-lfu | allkeys-random | volatile-lru | volatile-lfu | volatile-random | volatile-ttl
    /// (volatile-* are served like their allkeys-* twins; volatile-ttl by FIFO).
    #[arg(long)]
    maxmemory_policy: Option<String>,
    /// yes | no: keep an append-only file.
    #[arg(long)]
    appendonly: Option<String>,
    /// always | everysec | no.
    #[arg(long)]
    appendfsync: Option<String>,
    /// Append-only log directory name inside --dir (default appendonlydir).
    #[arg(long)]
    appenddirname: Option<String>,
    /// Working directory for the append-only file.
    #[arg(long)]
    dir: Option<String>,
    /// Largest bulk string accepted (e.g. 512mb).
    #[arg(long)]
    proto_max_bulk_len: Option<String>,
    /// Load keyspace misses from this PostgreSQL database (postgres://user@host:port/db).
    #[arg(long, value_name = "URL")]
    read_through: Option<String>,
    /// Read-through table or view (`name` or `schema.name`, taken as written).
    #[arg(long)]
    read_through_table: Option<String>,
    /// Read-through key column (default `key`).
    #[arg(long)]
    read_through_key_column: Option<String>,
    /// Read-through value column (default `value`).
    #[arg(long)]
    read_through_value_column: Option<String>,
    /// TTL given to keys filled from PostgreSQL (e.g. 5m; 0 = none, the default).
    #[arg(long)]
    read_through_ttl: Option<String>,
    /// How long "not in the table" is remembered (default 1s; 0 = not at all).
    #[arg(long)]
    read_through_negative_ttl: Option<String>,
    /// Bound on one load; a slower load answers nil (default 100ms).
    #[arg(long)]
    read_through_timeout: Option<String>,
    /// Any other setting, as `key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    extra: Vec<String>,
}

fn build_config(a: &Args) -> Result<Config, kuai_server::ServerError> {
    let mut c = Config::default();
    if let Some(p) = &a.config {
        c.apply_file(p)?;
    }
    let threads = a.threads.map(|t| t.to_string());
    let port = a.port.map(|p| p.to_string());
    let maxclients = a.maxclients.map(|m| m.to_string());
    let timeout = a.timeout.map(|t| t.to_string());
    let pairs: [(&str, Option<&String>); 21] = [
        ("bind", a.bind.as_ref()),
        ("port", port.as_ref()),
        ("threads", threads.as_ref()),
        ("accept-mode", a.accept_mode.as_ref()),
        ("timeout", timeout.as_ref()),
        ("requirepass", a.requirepass.as_ref()),
        ("maxclients", maxclients.as_ref()),
        ("maxmemory", a.maxmemory.as_ref()),
        ("maxmemory-policy", a.maxmemory_policy.as_ref()),
        ("appendonly", a.appendonly.as_ref()),
        ("appendfsync", a.appendfsync.as_ref()),
        ("appenddirname", a.appenddirname.as_ref()),
        ("dir", a.dir.as_ref()),
        ("proto-max-bulk-len", a.proto_max_bulk_len.as_ref()),
        ("read-through", a.read_through.as_ref()),
        ("read-through-table", a.read_through_table.as_ref()),
        (
            "read-through-key-column",
            a.read_through_key_column.as_ref(),
        ),
        (
            "read-through-value-column",
            a.read_through_value_column.as_ref(),
        ),
        ("read-through-ttl", a.read_through_ttl.as_ref()),
        (
            "read-through-negative-ttl",
            a.read_through_negative_ttl.as_ref(),
        ),
        ("read-through-timeout", a.read_through_timeout.as_ref()),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            c.apply(k, v)?;
        }
    }
    for kv in &a.extra {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            kuai_server::ServerError::Config(format!("--set expects KEY=VALUE, got {kv:?}"))
        })?;
        c.apply(k, v)?;
    }
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kuai-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kuai-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Watch SIGTERM before the server accepts anyone: a client that connects
    // and then stops the server must get the graceful path, not the default
    // action of the signal.
    let term = {
        let _rt = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    };
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kuai-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("kuai-server listening on {}", server.local_addr());
    rt.block_on(async {
        let mut term = match term {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kuai-server: cannot watch SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    println!("kuai-server shutting down");
    match server.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kuai-server: shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}
