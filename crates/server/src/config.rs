//! Server configuration: a builder, and a `redis.conf`-style file reader
//! (`key value` per line, `#` comments) whose keys match the flags.

use std::path::{Path, PathBuf};

use kuai::reactor::AcceptMode;

use crate::aof::FsyncPolicy;
use crate::error::ServerError;
use crate::keyspace::EvictionPolicy;
use crate::read_through::ReadThroughConfig;
use crate::resp::Limits;

/// Everything a server needs to start. Build with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (127.0.0.1 by default, like Redis's protected mode).
    pub bind: String,
    /// TCP port (6379 by default; 0 picks a free one).
    pub port: u16,
    /// kuai-reactor I/O threads (sub-reactors), each with its own event loop;
    /// a connection is served on one of them for life.
    pub threads: usize,
    /// How connections reach the I/O threads: `main-sub` (one acceptor
    /// thread hands them out) or `reuseport` (a `SO_REUSEPORT` listener per
    /// thread).
    pub accept_mode: AcceptMode,
    /// Close a client idle for this many seconds (Redis's `timeout`; 0 = never).
    pub timeout: u64,
    /// Keyspace shards.
    pub shards: usize,
    /// Password required by AUTH, if any.
    pub requirepass: Option<String>,
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Memory budget for keys and values in bytes (0 = unlimited).
    pub maxmemory: usize,
    /// What to do at `maxmemory`.
    pub maxmemory_policy: EvictionPolicy,
    /// Whether to keep an append-only file.
    pub appendonly: bool,
    /// When to fsync it.
    pub appendfsync: FsyncPolicy,
    /// The log's directory name, inside `dir` (Redis 7's `appenddirname`).
    pub appenddirname: String,
    /// Working directory for the append-only file.
    pub dir: PathBuf,
    /// Protocol limits.
    pub limits: Limits,
    /// Read-through of misses to PostgreSQL (`read-through*` keys; read_through.rs).
    pub read_through: ReadThroughConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 6379,
            threads: 1,
            // Measured against reuseport with redis-benchmark (-c 50, 1
            // thread, 84 paired runs per depth): +1 % at -P 1, -2 % at
            // -P 16, both within the noise; main/sub is the issue's design.
            accept_mode: AcceptMode::MainSub,
            timeout: 0,
            shards: 64,
            requirepass: None,
            maxclients: 10_000,
            maxmemory: 0,
            maxmemory_policy: EvictionPolicy::NoEviction,
            appendonly: false,
            appendfsync: FsyncPolicy::EverySec,
            appenddirname: "appendonlydir".into(),
            dir: PathBuf::from("."),
            limits: Limits::default(),
            read_through: ReadThroughConfig::default(),
        }
    }
}

/// Parses a size like `100mb`, `1gb`, `512k`, `42`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1usize << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1_000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.to_owned(), *m)))
    .unwrap_or((s.clone(), 1));
    num.trim().parse::<usize>().ok()?.checked_mul(mul)
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// The append-only log's directory.
    pub fn aof_path(&self) -> PathBuf {
        self.dir.join(&self.appenddirname)
    }

    /// Applies one `key value` setting (file line or flag).
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), ServerError> {
        let bad = || ServerError::Config(format!("invalid value {value:?} for {key}"));
        let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(bad()),
        };
        match key.to_ascii_lowercase().as_str() {
            "bind" => self.bind = value.split_whitespace().next().ok_or_else(bad)?.to_owned(),
            "port" => self.port = value.parse().map_err(|_| bad())?,
            "threads" | "io-threads" => {
                self.threads = value.parse().map_err(|_| bad())?;
                if self.threads == 0 {
                    return Err(bad());
                }
            }
            "accept-mode" => {
                self.accept_mode = match value.to_ascii_lowercase().as_str() {
                    "main-sub" | "mainsub" => AcceptMode::MainSub,
                    "reuseport" | "reuse-port" => AcceptMode::ReusePort,
                    _ => return Err(bad()),
                }
            }
            "timeout" => self.timeout = value.parse().map_err(|_| bad())?,
            "shards" => self.shards = value.parse().map_err(|_| bad())?,
            "requirepass" => {
                self.requirepass = (!value.is_empty()).then(|| value.to_owned());
            }
            "maxclients" => self.maxclients = value.parse().map_err(|_| bad())?,
            "maxmemory" => self.maxmemory = parse_size(value).ok_or_else(bad)?,
            "maxmemory-policy" => {
                self.maxmemory_policy = EvictionPolicy::parse(value).ok_or_else(bad)?
            }
            "appendonly" => self.appendonly = yes_no(value)?,
            "appendfsync" => self.appendfsync = FsyncPolicy::parse(value).ok_or_else(bad)?,
            "appenddirname" | "appendfilename" => {
                self.appenddirname = value.trim_matches('"').to_owned()
            }
            "dir" => self.dir = PathBuf::from(value.trim_matches('"')),
            "proto-max-bulk-len" => self.limits.max_bulk_len = parse_size(value).ok_or_else(bad)?,
            "proto-max-multibulk-len" => {
                self.limits.max_multibulk_len = parse_size(value).ok_or_else(bad)?
            }
            "proto-max-inline-len" => {
                self.limits.max_inline_len = parse_size(value).ok_or_else(bad)?
            }
            "client-query-buffer-limit" => {
                self.limits.max_query_buffer = parse_size(value).ok_or_else(bad)?
            }
            // Read-through settings are parsed in read_through.rs.
            k if self.read_through.apply(k, value)? => {}
            // Accepted for redis.conf compatibility; kuai has no snapshots.
            "save" | "protected-mode" | "daemonize" | "loglevel" | "logfile" | "databases" => {}
            other => return Err(ServerError::Config(format!("unknown setting {other:?}"))),
        }
        Ok(())
    }

    /// Applies a `redis.conf`-style text.
    pub fn apply_text(&mut self, text: &str) -> Result<(), ServerError> {
        for (no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            self.apply(k, v.trim().trim_matches('"'))
                .map_err(|e| ServerError::Config(format!("line {}: {e}", no + 1)))?;
        }
        Ok(())
    }

    /// Applies a config file.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("reading {}: {e}", path.display())))?;
        self.apply_text(&text)
    }
}

/// Builds a [`Config`].
///
/// ```
/// use kuai_server::Config;
/// let c = Config::builder().port(0).threads(2).requirepass("s3cret").build();
/// assert_eq!(c.bind, "127.0.0.1");
/// assert_eq!(c.threads, 2);
/// ```
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Bind address.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.config.bind = addr.into();
        self
    }
    /// Port (0 = any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }
    /// Reactor threads (at least 1).
    pub fn threads(mut self, n: usize) -> Self {
        self.config.threads = n.max(1);
        self
    }
    /// How connections reach the I/O threads.
    pub fn accept_mode(mut self, mode: AcceptMode) -> Self {
        self.config.accept_mode = mode;
        self
    }
    /// Idle timeout in seconds (0 = never).
    pub fn timeout(mut self, secs: u64) -> Self {
        self.config.timeout = secs;
        self
    }
    /// Keyspace shards.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n.max(1);
        self
    }
    /// Password for AUTH.
    pub fn requirepass(mut self, pass: impl Into<String>) -> Self {
        self.config.requirepass = Some(pass.into());
        self
    }
    /// Most simultaneous clients.
    pub fn maxclients(mut self, n: usize) -> Self {
        self.config.maxclients = n;
        self
    }
    /// Memory budget and eviction policy.
    pub fn maxmemory(mut self, bytes: usize, policy: EvictionPolicy) -> Self {
        self.config.maxmemory = bytes;
        self.config.maxmemory_policy = policy;
        self
    }
    /// Enables the append-only file in `dir` with the given fsync policy.
    pub fn appendonly(mut self, dir: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        self.config.appendonly = true;
        self.config.dir = dir.into();
        self.config.appendfsync = fsync;
        self
    }
    /// Protocol limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }
    /// Read-through of misses to PostgreSQL (read_through.rs).
    pub fn read_through(mut self, rt: ReadThroughConfig) -> Self {
        self.config.read_through = rt;
        self
    }
    /// The configuration.
    pub fn build(self) -> Config {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_sizes() {
        let mut c = Config::default();
        c.apply_text("# comment\nport 7000\nmaxmemory 100mb\nmaxmemory-policy allkeys-lru\nappendonly yes\nappendfsync always\nsave \"\"\n")
            .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.maxmemory, 100 << 20);
        assert_eq!(c.maxmemory_policy, EvictionPolicy::AllKeysLru);
        assert!(c.appendonly);
        assert_eq!(c.appendfsync, FsyncPolicy::Always);
        assert!(c.apply_text("port x").is_err());
        assert!(c.apply_text("nonsense 1").is_err());
        assert_eq!(parse_size("1gb"), Some(1 << 30));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("x"), None);
        assert_eq!(c.accept_mode, AcceptMode::MainSub);
        c.apply_text("accept-mode reuseport\ntimeout 30\n").unwrap();
        assert_eq!(c.accept_mode, AcceptMode::ReusePort);
        assert_eq!(c.timeout, 30);
        assert!(c.apply_text("accept-mode sideways").is_err());
    }
}
