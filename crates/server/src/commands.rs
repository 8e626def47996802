//! Command dispatch and the commands themselves, with Redis 7.0's semantics
//! and error replies.
//!
//! [`Db::execute`] takes one parsed command and appends its reply to a
//! [`ReplyBuf`]. Mutations are written to the append-only file (when one is
//! open) in a canonical, replay-safe form — relative TTLs become absolute
//! `PXAT`/`PEXPIREAT`, counters become `SET … KEEPTTL` — while the key's
//! shard is still locked, so the log's order is the execution order.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kuai::cache::{CacheError, Compute, Expiry};
use kuai::core::Clock;

use crate::aof::Aof;
use crate::glob;
use crate::keyspace::{Blob, Keyspace};
use crate::reply::{Protocol, ReplyBuf};
use crate::resp::{Limits, parse_i64};
use crate::slot::key_slot;

/// What the connection should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush the replies and close (QUIT).
    Close,
}

/// Per-connection state.
#[derive(Debug)]
pub struct Session {
    /// Client id (`CLIENT ID`, `HELLO`).
    pub id: u64,
    /// RESP2 or RESP3.
    pub proto: Protocol,
    /// Whether AUTH succeeded (or no password is required).
    pub authed: bool,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// Whether this command changed data (the AOF must be flushed).
    pub wrote: bool,
}

impl Session {
    /// A fresh session; `authed` when no password is configured.
    pub fn new(id: u64, authed: bool) -> Self {
        Session {
            id,
            proto: Protocol::Resp2,
            authed,
            name: None,
            wrote: false,
        }
    }
}

/// Server-wide counters shown by `INFO`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Commands processed.
    pub commands: AtomicU64,
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections currently open.
    pub connected_clients: AtomicU64,
    /// Connections refused at `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Protocol errors (connections closed for malformed input).
    pub protocol_errors: AtomicU64,
    /// The kuai-reactor server's counters (refusals, bytes, per thread),
    /// set once it runs.
    pub net: std::sync::OnceLock<kuai::reactor::StatsHandle>,
}

/// Static settings the commands need.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Parser limits (`proto-max-bulk-len` also bounds APPEND/SETRANGE).
    pub limits: Limits,
    /// `requirepass`, if any.
    pub requirepass: Option<Vec<u8>>,
    /// `maxclients`.
    pub maxclients: usize,
    /// TCP port (for INFO / CONFIG GET).
    pub port: u16,
    /// Bind address (for CONFIG GET).
    pub bind: String,
    /// `appendonly` and `appendfsync`, as text.
    pub appendonly: bool,
    /// `appendfsync` policy name.
    pub appendfsync: String,
    /// Reactor threads.
    pub threads: usize,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            limits: Limits::default(),
            requirepass: None,
            maxclients: 10_000,
            port: 6379,
            bind: "127.0.0.1".into(),
            appendonly: false,
            appendfsync: "everysec".into(),
            threads: 1,
        }
    }
}

/// The database: keyspace, log, clock and settings.
#[derive(Debug)]
pub struct Db {
    /// The keyspace (a `kuai::cache::Cache`).
    pub ks: Keyspace,
    /// The append-only file, once replay is done.
    pub aof: Option<Arc<Aof>>,
    /// Time source for TTLs.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: DbSettings,
    /// Counters.
    pub stats: ServerStats,
    /// Connection read buffers come from (and return to) this pool.
    pub buffers: kuai::pool::BufferPool,
    /// Read-through of misses to PostgreSQL (read_through.rs), if configured.
    pub read_through: Option<Arc<crate::read_through::ReadThrough>>,
    started: std::time::Instant,
}

/// Which arguments of `cmd` are keys: `(first, end, step)`.
fn key_span(cmd: Cmd, argc: usize) -> Option<(usize, usize, usize)> {
    use Cmd::*;
    match cmd {
        Mset | Msetnx => Some((1, argc, 2)),
        Mget | Del | Unlink | Exists | Touch => Some((1, argc, 1)),
        Rename | Renamenx => Some((1, 3, 1)),
        Ping | Echo | Hello | Auth | Quit | Select | Command | Info | Dbsize | Flushdb
        | Flushall | Cluster | Config | Client | Lastsave | Time | Keys | Scan | Randomkey => None,
        _ => Some((1, 2.min(argc), 1)),
    }
}

/// What a read-modify-write decided, for the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Did {
    Nothing,
    Wrote,
    Deleted,
    Expire(u64),
    Persisted,
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

macro_rules! commands {
    ($( $variant:ident = $name:literal, $arity:expr, $flags:expr; )*) => {
        /// Every command the server knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Cmd { $( #[doc = $name] $variant, )* }

        /// (command, lowercase name, arity, flags) for every command.
        pub const COMMAND_TABLE: &[(Cmd, &str, i32, u8)] = &[ $( (Cmd::$variant, $name, $arity, $flags), )* ];

        fn lookup(upper: &[u8]) -> Option<(Cmd, &'static str, i32, u8)> {
            $( if upper.eq_ignore_ascii_case($name.as_bytes()) { return Some((Cmd::$variant, $name, $arity, $flags)); } )*
            None
        }
    };
}

/// Command flag: modifies data.
pub const F_WRITE: u8 = 1;
/// Command flag: may add memory (refused under `noeviction` when full).
pub const F_DENYOOM: u8 = 2;
/// Command flag: allowed before AUTH.
pub const F_NOAUTH: u8 = 4;
/// Command flag: read-only.
pub const F_READONLY: u8 = 8;
/// Command flag: fast.
pub const F_FAST: u8 = 16;

const W: u8 = F_WRITE | F_DENYOOM;
const R: u8 = F_READONLY | F_FAST;

commands! {
    Get = "get", 2, R;
    Set = "set", -3, W;
    Incr = "incr", 2, W | F_FAST;
    Mset = "mset", -3, W;
    Ping = "ping", -1, F_FAST;
    Mget = "mget", -2, R;
    Del = "del", -2, F_WRITE;
    Unlink = "unlink", -2, F_WRITE | F_FAST;
    Exists = "exists", -2, R;
    Decr = "decr", 2, W | F_FAST;
    Incrby = "incrby", 3, W | F_FAST;
    Decrby = "decrby", 3, W | F_FAST;
    Incrbyfloat = "incrbyfloat", 3, W | F_FAST;
    Setnx = "setnx", 3, W | F_FAST;
    Setex = "setex", 4, W;
    Psetex = "psetex", 4, W;
    Getset = "getset", 3, W | F_FAST;
    Getdel = "getdel", 2, F_WRITE | F_FAST;
    Getex = "getex", -2, F_WRITE | F_FAST;
    Msetnx = "msetnx", -3, W;
    Expire = "expire", -3, F_WRITE | F_FAST;
    Pexpire = "pexpire", -3, F_WRITE | F_FAST;
    Expireat = "expireat", -3, F_WRITE | F_FAST;
    Pexpireat = "pexpireat", -3, F_WRITE | F_FAST;
    Expiretime = "expiretime", 2, R;
    Pexpiretime = "pexpiretime", 2, R;
    Persist = "persist", 2, F_WRITE | F_FAST;
    Ttl = "ttl", 2, R;
    Pttl = "pttl", 2, R;
    Type = "type", 2, R;
    Append = "append", 3, W;
    Strlen = "strlen", 2, R;
    Getrange = "getrange", 4, F_READONLY;
    Substr = "substr", 4, F_READONLY;
    Setrange = "setrange", 4, W;
    Keys = "keys", 2, F_READONLY;
    Scan = "scan", -2, F_READONLY;
    Rename = "rename", 3, F_WRITE;
    Renamenx = "renamenx", 3, F_WRITE | F_FAST;
    Randomkey = "randomkey", 1, F_READONLY;
    Touch = "touch", -2, R;
    Echo = "echo", 2, F_FAST;
    Hello = "hello", -1, F_NOAUTH | F_FAST;
    Auth = "auth", -2, F_NOAUTH | F_FAST;
    Quit = "quit", -1, F_NOAUTH | F_FAST;
    Select = "select", 2, F_FAST;
    Command = "command", -1, 0;
    Info = "info", -1, 0;
    Dbsize = "dbsize", 1, R;
    Flushdb = "flushdb", -1, F_WRITE;
    Flushall = "flushall", -1, F_WRITE;
    Cluster = "cluster", -2, 0;
    Config = "config", -2, 0;
    Client = "client", -2, 0;
    Lastsave = "lastsave", 1, F_FAST;
    Time = "time", 1, F_FAST;
}

fn wrong_arity(out: &mut ReplyBuf, name: &str) {
    out.error(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ));
}

const E_SYNTAX: &str = "ERR syntax error";
const E_NOT_INT: &str = "ERR value is not an integer or out of range";
const E_NOT_FLOAT: &str = "ERR value is not a valid float";
const E_OVERFLOW: &str = "ERR increment or decrement would overflow";
const E_TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const E_OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

fn expire_error(out: &mut ReplyBuf, cmd: &str) {
    out.error(&format!("ERR invalid expire time in '{cmd}' command"));
}

fn unknown_command(out: &mut ReplyBuf, args: &[&[u8]]) {
    let mut s = String::from("ERR unknown command '");
    s.push_str(&String::from_utf8_lossy(&args[0][..args[0].len().min(128)]));
    s.push_str("', with args beginning with: ");
    for a in args.iter().skip(1) {
        if s.len() >= 128 + 60 {
            break;
        }
        s.push('\'');
        s.push_str(&String::from_utf8_lossy(&a[..a.len().min(128)]));
        s.push_str("' ");
    }
    out.error(&s);
}

/// Parses a string as Redis parses a long double (`strtold`, no leading
/// space, whole string, not NaN).
fn parse_float(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b.len() > 5 * 1024 || b[0].is_ascii_whitespace() {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let v: f64 = s.parse().ok()?;
    if v.is_nan() { None } else { Some(v) }
}

/// Formats a float like Redis's humanized `ld2string` (no exponent, trailing
/// zeros removed), rounded to 17 significant digits of an `f64`'s 15–17.
pub fn format_float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits_before = v.abs().log10().floor() as i32 + 1;
    let decimals = (15 - digits_before).clamp(0, 17) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

struct ExpireArg {
    // Absolute Unix milliseconds.
    at: i64,
}

/// Redis's `getExpireMillisecondsOrReply`.
fn parse_expire(
    raw: &[u8],
    seconds: bool,
    absolute: bool,
    now_ms: u64,
    cmd: &str,
    out: &mut ReplyBuf,
) -> Option<ExpireArg> {
    let Some(mut v) = parse_i64(raw) else {
        out.error(E_NOT_INT);
        return None;
    };
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        expire_error(out, cmd);
        return None;
    }
    if seconds {
        v *= 1000;
    }
    if !absolute {
        match v.checked_add(now_ms as i64) {
            Some(x) => v = x,
            None => {
                expire_error(out, cmd);
                return None;
            }
        }
    }
    if v <= 0 {
        expire_error(out, cmd);
        return None;
    }
    Some(ExpireArg { at: v })
}

#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(usize, bool, bool)>, // (arg index, seconds, absolute)
}

/// Redis's `parseExtendedStringArgumentsOrReply` for SET (`is_set`) and GETEX.
fn parse_set_opts(args: &[&[u8]], from: usize, is_set: bool) -> Option<SetOpts> {
    let mut o = SetOpts::default();
    let mut i = from;
    while i < args.len() {
        let a = args[i];
        let has_next = i + 1 < args.len();
        let eq = |s: &str| a.eq_ignore_ascii_case(s.as_bytes());
        let no_expire = o.expire.is_none() && !o.keepttl && !o.persist;
        if is_set && eq("nx") && !o.xx {
            o.nx = true;
        } else if is_set && eq("xx") && !o.nx {
            o.xx = true;
        } else if is_set && eq("get") {
            o.get = true;
        } else if is_set && eq("keepttl") && no_expire {
            o.keepttl = true;
        } else if !is_set && eq("persist") && no_expire {
            o.persist = true;
        } else if (eq("ex") || eq("px") || eq("exat") || eq("pxat")) && no_expire && has_next {
            let seconds = eq("ex") || eq("exat");
            let absolute = eq("exat") || eq("pxat");
            o.expire = Some((i + 1, seconds, absolute));
            i += 1;
        } else {
            return None;
        }
        i += 1;
    }
    Some(o)
}

impl Db {
    /// A database over `ks`, with no AOF yet.
    pub fn new(ks: Keyspace, clock: Arc<dyn Clock>, settings: DbSettings) -> Self {
        Db {
            ks,
            aof: None,
            clock,
            settings,
            stats: ServerStats::default(),
            buffers: kuai::pool::BufferPool::new(),
            read_through: None,
            started: std::time::Instant::now(),
        }
    }

    /// Current Unix time in milliseconds (the keyspace's time base).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.ks.now_ms()
    }

    #[inline]
    fn log(&self, args: &[&[u8]]) {
        if let Some(aof) = &self.aof {
            aof.append(args);
        }
    }

    fn log_set(&self, key: &[u8], value: &[u8], expire_at: u64) {
        if self.aof.is_none() {
            return;
        }
        if expire_at == 0 {
            self.log(&[b"SET", key, value]);
        } else {
            let t = itoa::Buffer::new().format(expire_at).to_owned();
            self.log(&[b"SET", key, value, b"PXAT", t.as_bytes()]);
        }
    }

    fn log_pexpireat(&self, key: &[u8], at: u64) {
        if self.aof.is_some() {
            let t = itoa::Buffer::new().format(at).to_owned();
            self.log(&[b"PEXPIREAT", key, t.as_bytes()]);
        }
    }

    /// Logs what a read-modify-write of `key` did.
    fn log_did(&self, key: &[u8], did: Did) {
        match did {
            Did::Nothing | Did::Wrote => {}
            Did::Deleted => self.log(&[b"DEL", key]),
            Did::Expire(at) => self.log_pexpireat(key, at),
            Did::Persisted => self.log(&[b"PERSIST", key]),
        }
    }

    /// Executes one command, appending its reply to `out`.
    pub fn execute(
        &self,
        sess: &mut Session,
        args: &[&[u8]],
        out: &mut ReplyBuf,
        now_ms: u64,
    ) -> Flow {
        let Some(first) = args.first() else {
            return Flow::Continue;
        };
        let Some((cmd, name, arity, flags)) = lookup(first) else {
            if !sess.authed {
                out.error("NOAUTH Authentication required.");
            } else {
                unknown_command(out, args);
            }
            return Flow::Continue;
        };
        let argc = args.len() as i32;
        if (arity > 0 && argc != arity) || argc < -arity {
            if !sess.authed && flags & F_NOAUTH == 0 {
                out.error("NOAUTH Authentication required.");
            } else {
                wrong_arity(out, name);
            }
            return Flow::Continue;
        }
        if !sess.authed && flags & F_NOAUTH == 0 {
            out.error("NOAUTH Authentication required.");
            return Flow::Continue;
        }
        if flags & F_WRITE != 0 {
            sess.wrote = true;
            // Read-through: a write voids in-flight loads of its keys (read_through.rs).
            if let Some(rt) = &self.read_through {
                rt.note_write(args, key_span(cmd, args.len()));
            }
        }
        let cache = self.ks.cache();
        match cmd {
            Cmd::Get => self.get(args, out),
            Cmd::Set => self.set(args, out, now_ms),
            Cmd::Incr => self.incr_by(args[1], 1, out),
            Cmd::Decr => self.incr_by(args[1], -1, out),
            Cmd::Incrby | Cmd::Decrby => match parse_i64(args[2]) {
                None => out.error(E_NOT_INT),
                Some(n) if cmd == Cmd::Decrby => match n.checked_neg() {
                    Some(n) => self.incr_by(args[1], n, out),
                    None => out.error("ERR decrement would overflow"),
                },
                Some(n) => self.incr_by(args[1], n, out),
            },
            Cmd::Incrbyfloat => self.incrbyfloat(args, out),
            Cmd::Mset | Cmd::Msetnx => self.mset(args, cmd == Cmd::Msetnx, name, out),
            Cmd::Mget => {
                out.array_len(args.len() - 1);
                for k in &args[1..] {
                    if cache.get_with(*k, |v| v.reply(out)).is_none() {
                        out.null();
                    }
                }
            }
            Cmd::Ping => match args.len() {
                1 => out.simple("PONG"),
                2 => out.bulk(args[1]),
                _ => wrong_arity(out, name),
            },
            Cmd::Echo => out.bulk(args[1]),
            Cmd::Del | Cmd::Unlink => {
                let n = args[1..].iter().filter(|k| self.delete(k)).count();
                out.integer(n as i64);
            }
            Cmd::Exists => {
                let n = args[1..].iter().filter(|k| cache.contains_key(**k)).count();
                out.integer(n as i64);
            }
            Cmd::Touch => {
                let n = args[1..]
                    .iter()
                    .filter(|k| cache.get_with(**k, |_| ()).is_some())
                    .count();
                out.integer(n as i64);
            }
            Cmd::Setnx => {
                let done = Cell::new(false);
                let r = cache.compute_ref(
                    args[1],
                    Blob::new,
                    |cur| match cur {
                        Some(_) => Compute::Keep,
                        None => {
                            done.set(true);
                            Compute::Insert(Blob::new(args[2]), Expiry::Never)
                        }
                    },
                    |_| {
                        if done.get() {
                            self.log_set(args[1], args[2], 0);
                        }
                    },
                );
                match r {
                    Ok(_) => out.integer(i64::from(done.get())),
                    Err(_) => out.error(E_OOM),
                }
            }
            Cmd::Setex | Cmd::Psetex => {
                let Some(exp) = parse_expire(args[2], cmd == Cmd::Setex, false, now_ms, name, out)
                else {
                    return Flow::Continue;
                };
                match self.store(args[1], args[3], Some(exp.at as u64), now_ms) {
                    Ok(()) => out.ok(),
                    Err(_) => out.error(E_OOM),
                }
            }
            Cmd::Getset => {
                let v = Blob::new(args[2]);
                let r = cache.compute_ref(
                    args[1],
                    Blob::new,
                    move |_| Compute::Insert(v, Expiry::Never),
                    |_| self.log_set(args[1], args[2], 0),
                );
                match r {
                    Ok(Some(old)) => old.reply(out),
                    Ok(None) => out.null(),
                    Err(_) => out.error(E_OOM),
                }
            }
            Cmd::Getdel => {
                let r = cache.compute_ref(
                    args[1],
                    Blob::new,
                    |cur| match cur {
                        Some(_) => Compute::Remove,
                        None => Compute::Keep,
                    },
                    |old| {
                        if old.is_some() {
                            self.log(&[b"DEL", args[1]]);
                        }
                    },
                );
                match r {
                    Ok(Some(old)) => old.reply(out),
                    _ => out.null(),
                }
            }
            Cmd::Getex => self.getex(args, out, now_ms),
            Cmd::Expire | Cmd::Pexpire | Cmd::Expireat | Cmd::Pexpireat => {
                let seconds = matches!(cmd, Cmd::Expire | Cmd::Expireat);
                let base = if matches!(cmd, Cmd::Expire | Cmd::Pexpire) {
                    now_ms as i64
                } else {
                    0
                };
                self.expire(args, seconds, base, name, out, now_ms);
            }
            Cmd::Expiretime | Cmd::Pexpiretime | Cmd::Ttl | Cmd::Pttl => {
                let v = match self.ks.expire_at(args[1]) {
                    None => -2,
                    Some(0) => -1,
                    Some(t) => match cmd {
                        Cmd::Expiretime => (t as i64 + 500) / 1000,
                        Cmd::Pexpiretime => t as i64,
                        Cmd::Ttl => ((t - now_ms.min(t)) as i64 + 500) / 1000,
                        _ => (t - now_ms.min(t)) as i64,
                    },
                };
                out.integer(v);
            }
            Cmd::Persist => {
                let done = Cell::new(false);
                let _ = cache.compute_ref(
                    args[1],
                    Blob::new,
                    |cur| match cur {
                        Some(e) if e.expires_at().is_some() => {
                            done.set(true);
                            Compute::SetExpiry(Expiry::Never)
                        }
                        _ => Compute::Keep,
                    },
                    |_| {
                        if done.get() {
                            self.log(&[b"PERSIST", args[1]]);
                        }
                    },
                );
                out.integer(i64::from(done.get()));
            }
            Cmd::Type => {
                let found = cache.contains_key(args[1]);
                out.simple(if found { "string" } else { "none" });
            }
            Cmd::Append => self.append(args, out),
            Cmd::Strlen => {
                let n = cache.peek_with(args[1], |v| v.len()).unwrap_or(0);
                out.integer(n as i64);
            }
            Cmd::Getrange | Cmd::Substr => {
                let (Some(start), Some(end)) = (parse_i64(args[2]), parse_i64(args[3])) else {
                    out.error(E_NOT_INT);
                    return Flow::Continue;
                };
                if cache
                    .peek_with(args[1], |v| out.bulk(getrange(v.as_slice(), start, end)))
                    .is_none()
                {
                    out.bulk(b"");
                }
            }
            Cmd::Setrange => self.setrange(args, out),
            Cmd::Keys => {
                let mut keys = Vec::new();
                let all = args[1] == b"*";
                cache.for_each(|k, _| {
                    if all || glob::matches(args[1], k.as_slice()) {
                        keys.push(k.to_bytes());
                    }
                });
                out.array_len(keys.len());
                for k in &keys {
                    out.bulk(k);
                }
            }
            Cmd::Scan => self.scan(args, out),
            Cmd::Rename | Cmd::Renamenx => self.rename(args, cmd == Cmd::Renamenx, out),
            Cmd::Randomkey => {
                let n = self.ks.shard_count() as u64;
                let start = (now_ms.wrapping_mul(2_654_435_761) ^ sess.id) % n;
                let mut found = None;
                for cursor in [start << 32, 0] {
                    let mut c = cursor;
                    loop {
                        c = cache.scan(c, 1, |k, _| {
                            if found.is_none() {
                                found = Some(k.to_bytes());
                            }
                        });
                        if found.is_some() || c == 0 {
                            break;
                        }
                    }
                    if found.is_some() {
                        break;
                    }
                }
                match found {
                    Some(k) => out.bulk(&k),
                    None => out.null(),
                }
            }
            Cmd::Hello => return self.hello(sess, args, out),
            Cmd::Auth => self.auth(sess, args, out),
            Cmd::Quit => {
                out.ok();
                return Flow::Close;
            }
            Cmd::Select => match parse_i64(args[1]) {
                None => out.error(E_NOT_INT),
                Some(0) => out.ok(),
                Some(_) => out.error("ERR DB index is out of range"),
            },
            Cmd::Command => self.command(args, out),
            Cmd::Info => self.info(args, out),
            Cmd::Dbsize => out.integer(self.ks.len() as i64),
            Cmd::Flushdb | Cmd::Flushall => {
                if args.len() > 2
                    || (args.len() == 2
                        && !args[1].eq_ignore_ascii_case(b"sync")
                        && !args[1].eq_ignore_ascii_case(b"async"))
                {
                    out.error(E_SYNTAX);
                    return Flow::Continue;
                }
                self.ks.clear();
                self.log(&[b"FLUSHALL"]);
                out.ok();
            }
            Cmd::Cluster => {
                if args[1].eq_ignore_ascii_case(b"keyslot") {
                    if args.len() != 3 {
                        wrong_arity(out, "cluster|keyslot");
                    } else {
                        out.integer(i64::from(key_slot(args[2])));
                    }
                } else {
                    out.error("ERR This instance has cluster support disabled");
                }
            }
            Cmd::Config => self.config(args, out),
            Cmd::Client => self.client(sess, args, out),
            Cmd::Lastsave => out.integer((now_ms / 1000) as i64),
            Cmd::Time => {
                let us = now_ms * 1000;
                out.array_len(2);
                out.bulk(itoa::Buffer::new().format(us / 1_000_000).as_bytes());
                out.bulk(itoa::Buffer::new().format(us % 1_000_000).as_bytes());
            }
        }
        Flow::Continue
    }

    #[inline]
    fn get(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        if self
            .ks
            .cache()
            .get_with(args[1], |v| v.reply(out))
            .is_none()
        {
            out.null();
        }
    }

    /// Deletes `key` (logged); whether it was live.
    fn delete(&self, key: &[u8]) -> bool {
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| match cur {
                Some(_) => Compute::Remove,
                None => Compute::Keep,
            },
            |old| {
                if old.is_some() {
                    self.log(&[b"DEL", key]);
                }
            },
        );
        matches!(r, Ok(Some(_)))
    }

    /// Stores a value with a TTL (`Some(0)` = none, `None` = keep), deleting
    /// instead when the TTL is already in the past. Errors mean `-OOM`.
    fn store(
        &self,
        key: &[u8],
        value: &[u8],
        expire_at: Option<u64>,
        now_ms: u64,
    ) -> Result<(), CacheError> {
        if let Some(t) = expire_at {
            if t != 0 && t <= now_ms {
                self.delete(key);
                return Ok(());
            }
        }
        let expiry = match expire_at {
            None => Expiry::Keep,
            Some(t) => self.ks.expiry_for(key, t),
        };
        // Copy the value before taking the shard lock.
        let v = Blob::new(value);
        self.ks
            .cache()
            .compute_ref(
                key,
                Blob::new,
                move |_| Compute::Insert(v, expiry),
                |_| self.log_store(key, value, expire_at),
            )
            .map(|_| ())
    }

    fn log_store(&self, key: &[u8], value: &[u8], expire_at: Option<u64>) {
        if self.aof.is_some() {
            match expire_at {
                None => self.log(&[b"SET", key, value, b"KEEPTTL"]),
                Some(t) => self.log_set(key, value, t),
            }
        }
    }

    fn set(&self, args: &[&[u8]], out: &mut ReplyBuf, now_ms: u64) {
        if args.len() == 3 {
            // The hot path: a plain SET.
            match self.store(args[1], args[2], Some(0), now_ms) {
                Ok(()) => out.ok(),
                Err(_) => out.error(E_OOM),
            }
            return;
        }
        let Some(o) = parse_set_opts(args, 3, true) else {
            out.error(E_SYNTAX);
            return;
        };
        let expire_at = match o.expire {
            Some((i, secs, abs)) => match parse_expire(args[i], secs, abs, now_ms, "set", out) {
                Some(e) => Some(e.at as u64),
                None => return,
            },
            None if o.keepttl => None,
            None => Some(0),
        };
        let (key, value) = (args[1], args[2]);
        if !o.nx && !o.xx && !o.get {
            match self.store(key, value, expire_at, now_ms) {
                Ok(()) => out.ok(),
                Err(_) => out.error(E_OOM),
            }
            return;
        }
        let past = matches!(expire_at, Some(t) if t != 0 && t <= now_ms);
        let did = Cell::new(Did::Nothing);
        let mut old: Option<Bytes> = None;
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                if o.get {
                    old = cur.as_ref().map(|e| e.value().to_bytes());
                }
                let exists = cur.is_some();
                if (o.nx && exists) || (o.xx && !exists) {
                    Compute::Keep
                } else if past {
                    did.set(Did::Deleted);
                    Compute::Remove
                } else {
                    did.set(Did::Wrote);
                    let expiry = match expire_at {
                        None => Expiry::Keep,
                        Some(t) => self.ks.expiry_for(key, t),
                    };
                    Compute::Insert(Blob::new(value), expiry)
                }
            },
            |_| match did.get() {
                Did::Wrote => self.log_store(key, value, expire_at),
                d => self.log_did(key, d),
            },
        );
        if r.is_err() {
            out.error(E_OOM);
        } else if o.get {
            match &old {
                Some(v) => out.bulk_bytes(v),
                None => out.null(),
            }
        } else if did.get() == Did::Nothing {
            out.null();
        } else {
            out.ok();
        }
    }

    fn getex(&self, args: &[&[u8]], out: &mut ReplyBuf, now_ms: u64) {
        let Some(o) = parse_set_opts(args, 2, false) else {
            out.error(E_SYNTAX);
            return;
        };
        let expire_at = match o.expire {
            Some((i, secs, abs)) => match parse_expire(args[i], secs, abs, now_ms, "getex", out) {
                Some(e) => Some(e.at as u64),
                None => return,
            },
            None => None,
        };
        let key = args[1];
        let did = Cell::new(Did::Nothing);
        let mut found = false;
        let _ = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let Some(e) = cur else {
                    return Compute::Keep;
                };
                found = true;
                e.value().reply(out);
                match expire_at {
                    Some(t) if t <= now_ms => {
                        did.set(Did::Deleted);
                        Compute::Remove
                    }
                    Some(t) => {
                        did.set(Did::Expire(t));
                        Compute::SetExpiry(self.ks.expiry_for(key, t))
                    }
                    None if o.persist && e.expires_at().is_some() => {
                        did.set(Did::Persisted);
                        Compute::SetExpiry(Expiry::Never)
                    }
                    None => Compute::Keep,
                }
            },
            |_| self.log_did(key, did.get()),
        );
        if !found {
            out.null();
        }
    }

    fn incr_by(&self, key: &[u8], by: i64, out: &mut ReplyBuf) {
        let res: Cell<Result<i64, &'static str>> = Cell::new(Err(E_NOT_INT));
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let n = match cur {
                    Some(e) => match parse_i64(e.value().as_slice()) {
                        None => return Compute::Keep,
                        Some(cur) => match cur.checked_add(by) {
                            None => {
                                res.set(Err(E_OVERFLOW));
                                return Compute::Keep;
                            }
                            Some(n) => n,
                        },
                    },
                    None => by,
                };
                res.set(Ok(n));
                Compute::Insert(
                    Blob::new(itoa::Buffer::new().format(n).as_bytes()),
                    Expiry::Keep,
                )
            },
            |_| {
                if let (Some(_), Ok(n)) = (&self.aof, res.get()) {
                    let mut b = itoa::Buffer::new();
                    self.log(&[b"SET", key, b.format(n).as_bytes(), b"KEEPTTL"]);
                }
            },
        );
        match (r, res.get()) {
            (Err(_), _) => out.error(E_OOM),
            (Ok(_), Ok(n)) => out.integer(n),
            (Ok(_), Err(e)) => out.error(e),
        }
    }

    fn incrbyfloat(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let key = args[1];
        let res: RefCell<Result<String, &'static str>> = RefCell::new(Err(E_NOT_FLOAT));
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let cur = match cur {
                    Some(e) => match parse_float(e.value().as_slice()) {
                        Some(v) => v,
                        None => return Compute::Keep,
                    },
                    None => 0.0,
                };
                let Some(by) = parse_float(args[2]) else {
                    return Compute::Keep;
                };
                let n = cur + by;
                if !n.is_finite() {
                    *res.borrow_mut() = Err("ERR increment would produce NaN or Infinity");
                    return Compute::Keep;
                }
                let text = format_float(n);
                let v = Blob::new(text.as_bytes());
                *res.borrow_mut() = Ok(text);
                Compute::Insert(v, Expiry::Keep)
            },
            |_| {
                if let Ok(t) = &*res.borrow() {
                    self.log(&[b"SET", key, t.as_bytes(), b"KEEPTTL"]);
                }
            },
        );
        match (r, res.into_inner()) {
            (Err(_), _) => out.error(E_OOM),
            (Ok(_), Ok(t)) => out.bulk(t.as_bytes()),
            (Ok(_), Err(e)) => out.error(e),
        }
    }

    /// MSET / MSETNX: every key's shard is locked for the whole command
    /// (`Cache::batch`), so no client sees it half done.
    fn mset(&self, args: &[&[u8]], nx: bool, name: &str, out: &mut ReplyBuf) {
        if args.len() % 2 == 0 {
            wrong_arity(out, name);
            return;
        }
        let pairs = &args[1..];
        let keys: Vec<&[u8]> = pairs.chunks(2).map(|p| p[0]).collect();
        let r = self.ks.cache().batch(&keys, |b| {
            if nx && keys.iter().any(|k| b.peek_with(*k, |_| ()).is_some()) {
                return Ok(false);
            }
            for p in pairs.chunks(2) {
                b.compute_ref(
                    p[0],
                    Blob::new,
                    |_| Compute::Insert(Blob::new(p[1]), Expiry::Never),
                    |_| self.log_set(p[0], p[1], 0),
                )?;
            }
            Ok::<_, CacheError>(true)
        });
        match r {
            Err(_) => out.error(E_OOM),
            Ok(false) => out.integer(0),
            Ok(true) if nx => out.integer(1),
            Ok(true) => out.ok(),
        }
    }

    fn expire(
        &self,
        args: &[&[u8]],
        seconds: bool,
        base: i64,
        name: &str,
        out: &mut ReplyBuf,
        now_ms: u64,
    ) {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for a in &args[3..] {
            if a.eq_ignore_ascii_case(b"nx") {
                nx = true;
            } else if a.eq_ignore_ascii_case(b"xx") {
                xx = true;
            } else if a.eq_ignore_ascii_case(b"gt") {
                gt = true;
            } else if a.eq_ignore_ascii_case(b"lt") {
                lt = true;
            } else {
                out.error(&format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(a)
                ));
                return;
            }
        }
        if nx && (xx || gt || lt) {
            out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
            return;
        }
        if gt && lt {
            out.error("ERR GT and LT options at the same time are not compatible");
            return;
        }
        let Some(mut when) = parse_i64(args[2]) else {
            out.error(E_NOT_INT);
            return;
        };
        if seconds {
            if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
                expire_error(out, name);
                return;
            }
            when *= 1000;
        }
        if when > i64::MAX - base {
            expire_error(out, name);
            return;
        }
        when += base;
        let key = args[1];
        let did = Cell::new(Did::Nothing);
        let _ = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let Some(e) = cur else {
                    return Compute::Keep;
                };
                let cur = e
                    .expires_at()
                    .map_or(-1, |at| self.ks.deadline_ms(key, at) as i64);
                if (nx && cur != -1)
                    || (xx && cur == -1)
                    || (gt && (when <= cur || cur == -1))
                    || (lt && cur != -1 && when >= cur)
                {
                    return Compute::Keep;
                }
                if when <= now_ms as i64 {
                    did.set(Did::Deleted);
                    Compute::Remove
                } else {
                    did.set(Did::Expire(when as u64));
                    Compute::SetExpiry(self.ks.expiry_for(key, when as u64))
                }
            },
            |_| self.log_did(key, did.get()),
        );
        out.integer(i64::from(did.get() != Did::Nothing));
    }

    fn append(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let (key, tail) = (args[1], args[2]);
        let max = self.settings.limits.max_bulk_len;
        let res: Cell<Result<usize, &'static str>> = Cell::new(Ok(0));
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let old = cur.as_ref().map_or(&[][..], |e| e.value().as_slice());
                let new_len = old.len() + tail.len();
                if new_len > max {
                    res.set(Err(E_TOO_BIG));
                    return Compute::Keep;
                }
                let mut v = Vec::with_capacity(new_len);
                v.extend_from_slice(old);
                v.extend_from_slice(tail);
                res.set(Ok(new_len));
                Compute::Insert(Blob::from_vec(v), Expiry::Keep)
            },
            |_| {
                if res.get().is_ok() {
                    self.log(&[b"APPEND", key, tail]);
                }
            },
        );
        match (r, res.get()) {
            (Err(_), _) => out.error(E_OOM),
            (Ok(_), Ok(n)) => out.integer(n as i64),
            (Ok(_), Err(e)) => out.error(e),
        }
    }

    fn setrange(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let Some(offset) = parse_i64(args[2]) else {
            out.error(E_NOT_INT);
            return;
        };
        if offset < 0 {
            out.error("ERR offset is out of range");
            return;
        }
        let (key, val) = (args[1], args[3]);
        let offset = offset as usize;
        let max = self.settings.limits.max_bulk_len;
        let wrote = Cell::new(false);
        let res: Cell<Result<usize, &'static str>> = Cell::new(Ok(0));
        let r = self.ks.cache().compute_ref(
            key,
            Blob::new,
            |cur| {
                let old = cur.as_ref().map(|e| e.value().as_slice());
                match old {
                    None if val.is_empty() => return Compute::Keep,
                    Some(c) if val.is_empty() => {
                        res.set(Ok(c.len()));
                        return Compute::Keep;
                    }
                    _ => {}
                }
                if offset.saturating_add(val.len()) > max {
                    res.set(Err(E_TOO_BIG));
                    return Compute::Keep;
                }
                let old = old.unwrap_or_default();
                let new_len = old.len().max(offset + val.len());
                let mut v = Vec::with_capacity(new_len);
                v.extend_from_slice(old);
                v.resize(new_len, 0);
                v[offset..offset + val.len()].copy_from_slice(val);
                res.set(Ok(new_len));
                wrote.set(true);
                Compute::Insert(Blob::from_vec(v), Expiry::Keep)
            },
            |_| {
                if wrote.get() {
                    self.log(&[b"SETRANGE", key, args[2], val]);
                }
            },
        );
        match (r, res.get()) {
            (Err(_), _) => out.error(E_OOM),
            (Ok(_), Ok(n)) => out.integer(n as i64),
            (Ok(_), Err(e)) => out.error(e),
        }
    }

    /// RENAME / RENAMENX: both keys' shards are locked for the whole
    /// command (`Cache::batch`); the value and its TTL move, uncopied.
    fn rename(&self, args: &[&[u8]], nx: bool, out: &mut ReplyBuf) {
        enum Done {
            NoSuchKey,
            Kept,
            Moved,
        }
        let (src, dst) = (args[1], args[2]);
        let r = self.ks.cache().batch(&[src, dst], |b| {
            if b.peek_with(src, |_| ()).is_none() {
                return Ok(Done::NoSuchKey);
            }
            if src == dst || (nx && b.peek_with(dst, |_| ()).is_some()) {
                return Ok(Done::Kept);
            }
            let mut expiry = Expiry::Never;
            let removed = b.compute_ref(
                src,
                Blob::new,
                |cur| {
                    if let Some(at) = cur.and_then(|e| e.expires_at()) {
                        expiry = self.ks.expiry_for(dst, self.ks.deadline_ms(src, at));
                    }
                    Compute::Remove
                },
                |_| (),
            )?;
            let Some(value) = removed else {
                return Ok(Done::NoSuchKey);
            };
            let back = value.clone();
            match b.compute_ref(
                dst,
                Blob::new,
                move |_| Compute::Insert(value, expiry),
                |_| self.log(&[b"RENAME", src, dst]),
            ) {
                Ok(_) => Ok(Done::Moved),
                Err(e) => {
                    // The destination's shard is full: put the source back
                    // (it fits: its room was just freed).
                    let _ = b.compute_ref(
                        src,
                        Blob::new,
                        move |_| Compute::Insert(back, expiry),
                        |_| (),
                    );
                    Err(e)
                }
            }
        });
        match r {
            Err(_) => out.error(E_OOM),
            Ok(Done::NoSuchKey) => out.error("ERR no such key"),
            Ok(Done::Kept) if nx => out.integer(0),
            Ok(Done::Kept) => out.ok(),
            Ok(Done::Moved) if nx => out.integer(1),
            Ok(Done::Moved) => out.ok(),
        }
    }

    fn scan(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let Some(cursor) = std::str::from_utf8(args[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            out.error("ERR invalid cursor");
            return;
        };
        let mut count = 10usize;
        let mut pattern: Option<&[u8]> = None;
        let mut type_filter: Option<&[u8]> = None;
        let mut i = 2;
        while i < args.len() {
            let a = &args[i];
            let has_next = i + 1 < args.len();
            if a.eq_ignore_ascii_case(b"count") && has_next {
                match parse_i64(args[i + 1]) {
                    None => {
                        out.error(E_NOT_INT);
                        return;
                    }
                    Some(n) if n < 1 => {
                        out.error(E_SYNTAX);
                        return;
                    }
                    Some(n) => count = n as usize,
                }
            } else if a.eq_ignore_ascii_case(b"match") && has_next {
                pattern = (args[i + 1] != b"*").then_some(args[i + 1]);
            } else if a.eq_ignore_ascii_case(b"type") && has_next {
                type_filter = Some(args[i + 1]);
            } else {
                out.error(E_SYNTAX);
                return;
            }
            i += 2;
        }
        let (keys, next) = scan_keys(&self.ks, cursor, count);
        let want_type = type_filter.is_none_or(|t| t.eq_ignore_ascii_case(b"string"));
        let keys: Vec<Bytes> = keys
            .into_iter()
            .filter(|k| want_type && pattern.is_none_or(|p| glob::matches(p, k)))
            .collect();
        out.array_len(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array_len(keys.len());
        for k in &keys {
            out.bulk(k);
        }
    }

    fn hello(&self, sess: &mut Session, args: &[&[u8]], out: &mut ReplyBuf) -> Flow {
        let mut proto = sess.proto;
        let mut i = 1;
        if args.len() > 1 {
            match parse_i64(args[1]) {
                Some(2) => proto = Protocol::Resp2,
                Some(3) => proto = Protocol::Resp3,
                Some(_) => {
                    out.error("NOPROTO unsupported protocol version");
                    return Flow::Continue;
                }
                None => {
                    out.error("ERR Protocol version is not an integer or out of range");
                    return Flow::Continue;
                }
            }
            i = 2;
        }
        let mut auth: Option<(&[u8], &[u8])> = None;
        let mut setname: Option<&[u8]> = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
                auth = Some((args[i + 1], args[i + 2]));
                i += 3;
            } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
                setname = Some(args[i + 1]);
                i += 2;
            } else {
                out.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(args[i])
                ));
                return Flow::Continue;
            }
        }
        if let Some((user, pass)) = auth {
            if !self.check_password(user, pass) {
                out.error("WRONGPASS invalid username-password pair or user is disabled.");
                return Flow::Continue;
            }
            sess.authed = true;
        }
        if !sess.authed {
            out.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
            return Flow::Continue;
        }
        if let Some(n) = setname {
            sess.name = Some(Bytes::copy_from_slice(n));
        }
        sess.proto = proto;
        out.set_protocol(proto);
        out.map_len(7);
        out.bulk(b"server");
        out.bulk(b"kuai");
        out.bulk(b"version");
        out.bulk(b"7.0.0");
        out.bulk(b"proto");
        out.integer(if proto == Protocol::Resp3 { 3 } else { 2 });
        out.bulk(b"id");
        out.integer(sess.id as i64);
        out.bulk(b"mode");
        out.bulk(b"standalone");
        out.bulk(b"role");
        out.bulk(b"master");
        out.bulk(b"modules");
        out.array_len(0);
        Flow::Continue
    }

    fn check_password(&self, user: &[u8], pass: &[u8]) -> bool {
        let Some(want) = &self.settings.requirepass else {
            // No password: the default user accepts any (Redis's "nopass").
            return user == b"default";
        };
        let pass_ok = constant_time_eq(pass, want);
        user == b"default" && pass_ok
    }

    fn auth(&self, sess: &mut Session, args: &[&[u8]], out: &mut ReplyBuf) {
        if args.len() > 3 {
            out.error(E_SYNTAX);
            return;
        }
        if args.len() == 2 && self.settings.requirepass.is_none() {
            out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            return;
        }
        let (user, pass): (&[u8], &[u8]) = if args.len() == 3 {
            (args[1], args[2])
        } else {
            (b"default", args[1])
        };
        if self.check_password(user, pass) {
            sess.authed = true;
            out.ok();
        } else {
            out.error("WRONGPASS invalid username-password pair or user is disabled.");
        }
    }

    fn command(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let flag_names = |f: u8| {
            let mut v = Vec::new();
            if f & F_WRITE != 0 {
                v.push("write");
            }
            if f & F_READONLY != 0 {
                v.push("readonly");
            }
            if f & F_DENYOOM != 0 {
                v.push("denyoom");
            }
            if f & F_NOAUTH != 0 {
                v.push("no_auth");
            }
            if f & F_FAST != 0 {
                v.push("fast");
            }
            v
        };
        let info = |out: &mut ReplyBuf, name: &str, arity: i32, f: u8| {
            let keyed = f & (F_WRITE | F_READONLY) != 0
                && !matches!(
                    name,
                    "dbsize" | "flushdb" | "flushall" | "keys" | "scan" | "randomkey"
                );
            let multi = matches!(name, "mget" | "del" | "unlink" | "exists" | "touch");
            let pairs = matches!(name, "mset" | "msetnx");
            out.array_len(6);
            out.bulk(name.as_bytes());
            out.integer(i64::from(arity));
            let fl = flag_names(f);
            out.set_len(fl.len());
            for x in fl {
                out.simple(x);
            }
            let (first, last, step) = if !keyed {
                (0, 0, 0)
            } else if multi || pairs {
                (1, -1, if pairs { 2 } else { 1 })
            } else if name == "rename" || name == "renamenx" {
                (1, 2, 1)
            } else {
                (1, 1, 1)
            };
            out.integer(first);
            out.integer(last);
            out.integer(step);
        };
        if args.len() == 1 {
            out.array_len(COMMAND_TABLE.len());
            for &(_, name, arity, f) in COMMAND_TABLE {
                info(out, name, arity, f);
            }
            return;
        }
        let sub = &args[1];
        if sub.eq_ignore_ascii_case(b"count") {
            out.integer(COMMAND_TABLE.len() as i64);
        } else if sub.eq_ignore_ascii_case(b"info") {
            let names: Vec<&[u8]> = args[2..].to_vec();
            if names.is_empty() {
                out.array_len(COMMAND_TABLE.len());
                for &(_, name, arity, f) in COMMAND_TABLE {
                    info(out, name, arity, f);
                }
                return;
            }
            out.array_len(names.len());
            for n in names {
                match lookup(n) {
                    Some((_, name, arity, f)) => info(out, name, arity, f),
                    None => out.null_array(),
                }
            }
        } else if sub.eq_ignore_ascii_case(b"docs") {
            let wanted: Vec<(&str, i32)> = if args.len() == 2 {
                COMMAND_TABLE.iter().map(|c| (c.1, c.2)).collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|n| lookup(n).map(|c| (c.1, c.2)))
                    .collect()
            };
            out.map_len(wanted.len());
            for (name, arity) in wanted {
                out.bulk(name.as_bytes());
                out.map_len(2);
                out.bulk(b"summary");
                out.bulk(
                    format!("The {} command (arity {arity}).", name.to_uppercase()).as_bytes(),
                );
                out.bulk(b"group");
                out.bulk(b"string");
            }
        } else if sub.eq_ignore_ascii_case(b"list") {
            out.array_len(COMMAND_TABLE.len());
            for c in COMMAND_TABLE {
                out.bulk(c.1.as_bytes());
            }
        } else {
            out.error(&format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(sub)
            ));
        }
    }

    /// The `INFO` text for `section` (`None` = default sections).
    pub fn info_text(&self, section: Option<&str>) -> String {
        let want = |s: &str| match section {
            None => true,
            Some(x) => {
                x.eq_ignore_ascii_case(s)
                    || x.eq_ignore_ascii_case("all")
                    || x.eq_ignore_ascii_case("everything")
                    || x.eq_ignore_ascii_case("default")
            }
        };
        let mut t = String::new();
        use std::fmt::Write as _;
        let up = self.started.elapsed().as_secs();
        if want("server") {
            let _ = write!(
                t,
                "# Server\r\nredis_version:7.0.0\r\nkuai_server_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nio_threads_active:0\r\nreactor_threads:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                self.settings.port,
                self.settings.threads
            );
        }
        if want("clients") {
            let _ = write!(
                t,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
                self.stats.connected_clients.load(Ordering::Relaxed),
                self.settings.maxclients
            );
        }
        if want("memory") {
            let used = self.ks.used_memory();
            let _ = write!(
                t,
                "# Memory\r\nused_memory:{used}\r\nmaxmemory:{}\r\nmaxmemory_policy:{}\r\nmaxmemory_cache_policy:{:?}\r\n\r\n",
                self.ks.maxmemory(),
                self.ks.policy().name(),
                self.ks.cache().policy()
            );
        }
        if want("persistence") {
            let (on, size, fsyncs) = match &self.aof {
                Some(a) => (1, a.size(), a.fsyncs()),
                None => (0, 0, 0),
            };
            let _ = write!(
                t,
                "# Persistence\r\nloading:0\r\naof_enabled:{on}\r\naof_current_size:{size}\r\naof_fsyncs:{fsyncs}\r\nappendfsync:{}\r\n\r\n",
                self.settings.appendfsync
            );
        }
        if want("stats") {
            let s = self.ks.stats();
            let net = self.stats.net.get().map(|n| n.stats()).unwrap_or_default();
            let _ = write!(
                t,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies_protocol:{}\r\n\r\n",
                self.stats.connections_received.load(Ordering::Relaxed),
                self.stats.commands.load(Ordering::Relaxed),
                self.stats.rejected_connections.load(Ordering::Relaxed) + net.refused,
                net.bytes_in,
                net.bytes_out,
                s.expired,
                s.evicted,
                s.hits,
                s.misses,
                self.stats.protocol_errors.load(Ordering::Relaxed),
            );
        }
        if want("keyspace") {
            t.push_str("# Keyspace\r\n");
            let n = self.ks.len();
            if n > 0 {
                let _ = write!(
                    t,
                    "db0:keys={n},expires={},avg_ttl=0\r\n",
                    self.ks.volatile()
                );
            }
            t.push_str("\r\n");
        }
        if want("kuai") {
            let b = self.buffers.stats();
            let _ = write!(
                t,
                "# Kuai\r\nkeyspace_shards:{}\r\nkeyspace:kuai-cache\r\nevent_loops:kuai-reactor\r\nbuffer_pool_hits:{}\r\nbuffer_pool_misses:{}\r\nbuffer_pool_bytes:{}\r\n",
                self.ks.shard_count(),
                b.hits,
                b.misses,
                b.bytes_pooled
            );
            if let Some(net) = self.stats.net.get() {
                let mode = match net.accept_mode() {
                    kuai::reactor::AcceptMode::MainSub => "main-sub",
                    _ => "reuseport",
                };
                let _ = write!(t, "reactor_accept_mode:{mode}\r\n");
                for th in net.thread_stats() {
                    let _ = write!(
                        t,
                        "reactor_thread{}:connected_clients={},connections={},commands={},net_input_bytes={},net_output_bytes={}\r\n",
                        th.thread,
                        th.active,
                        th.connections,
                        th.requests,
                        th.bytes_in,
                        th.bytes_out
                    );
                }
            }
            t.push_str("\r\n");
        }
        // Read-through counters (read_through.rs).
        if let (true, Some(rt)) = (want("readthrough"), &self.read_through) {
            rt.info(&mut t);
        }
        while t.ends_with("\r\n\r\n") {
            t.truncate(t.len() - 2);
        }
        t
    }

    fn info(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let section = args.get(1).map(|s| String::from_utf8_lossy(s).into_owned());
        let t = self.info_text(section.as_deref());
        out.verbatim(t.as_bytes());
    }

    fn config(&self, args: &[&[u8]], out: &mut ReplyBuf) {
        let sub = &args[1];
        if sub.eq_ignore_ascii_case(b"get") {
            if args.len() < 3 {
                wrong_arity(out, "config|get");
                return;
            }
            let params: Vec<(&str, String)> = vec![
                ("save", String::new()),
                (
                    "appendonly",
                    if self.settings.appendonly {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ),
                ("appendfsync", self.settings.appendfsync.clone()),
                ("maxmemory", self.ks.maxmemory().to_string()),
                ("maxmemory-policy", self.ks.policy().name().into()),
                ("maxclients", self.settings.maxclients.to_string()),
                ("port", self.settings.port.to_string()),
                ("bind", self.settings.bind.clone()),
                ("databases", "1".into()),
                (
                    "proto-max-bulk-len",
                    self.settings.limits.max_bulk_len.to_string(),
                ),
            ];
            let mut hits = Vec::new();
            for p in &args[2..] {
                for (k, v) in &params {
                    if glob::matches(&p.to_ascii_lowercase(), k.as_bytes())
                        && !hits.iter().any(|(h, _): &(&str, String)| h == k)
                    {
                        hits.push((*k, v.clone()));
                    }
                }
            }
            out.map_len(hits.len());
            for (k, v) in hits {
                out.bulk(k.as_bytes());
                out.bulk(v.as_bytes());
            }
        } else if sub.eq_ignore_ascii_case(b"resetstat") {
            out.ok();
        } else if sub.eq_ignore_ascii_case(b"set") {
            out.error("ERR CONFIG SET is not supported by kuai-server (restart with new flags)");
        } else {
            out.error(&format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(sub)
            ));
        }
    }

    fn client(&self, sess: &mut Session, args: &[&[u8]], out: &mut ReplyBuf) {
        let sub = &args[1];
        if sub.eq_ignore_ascii_case(b"id") {
            out.integer(sess.id as i64);
        } else if sub.eq_ignore_ascii_case(b"setname") && args.len() == 3 {
            sess.name = Some(Bytes::copy_from_slice(args[2]));
            out.ok();
        } else if sub.eq_ignore_ascii_case(b"getname") {
            match &sess.name {
                Some(n) => out.bulk(n),
                None => out.null(),
            }
        } else if sub.eq_ignore_ascii_case(b"setinfo") {
            out.ok();
        } else {
            out.error(&format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(sub)
            ));
        }
    }
}

/// Redis 7.0's GETRANGE index arithmetic.
pub fn getrange(v: &[u8], mut start: i64, mut end: i64) -> &[u8] {
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return b"";
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    if start < 0 {
        start = 0;
    }
    if end < 0 {
        end = 0;
    }
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return b"";
    }
    &v[start as usize..=end as usize]
}

/// One SCAN step over the keyspace: `kuai::cache::Cache::scan`, whose cursor
/// is `(shard << 32) | slab index`. Slab indices do not move while a key
/// lives, so every key present for the whole scan is returned (once) however
/// the tables grow or shrink meanwhile.
pub fn scan_keys(ks: &Keyspace, cursor: u64, count: usize) -> (Vec<Bytes>, u64) {
    let mut keys = Vec::new();
    let next = ks
        .cache()
        .scan(cursor, count, |k, _| keys.push(k.to_bytes()));
    (keys, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_matches_redis() {
        assert_eq!(getrange(b"Hello World", 0, 4), b"Hello");
        assert_eq!(getrange(b"Hello World", -3, -1), b"rld");
        assert_eq!(getrange(b"Hello World", 0, -100), b"H");
        assert_eq!(getrange(b"Hello World", 5, 3), b"");
        assert_eq!(getrange(b"Hello World", -1, -5), b"");
        assert_eq!(getrange(b"", 0, -1), b"");
    }

    #[test]
    fn floats() {
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(5.0e3), "5000");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn scan_visits_every_key() {
        let ks = Keyspace::new(
            8,
            0,
            crate::keyspace::EvictionPolicy::NoEviction,
            Arc::new(kuai::core::SystemClock),
        )
        .expect("ok");
        for i in 0..500 {
            let k = Blob::new(format!("k{i}").as_bytes());
            ks.cache()
                .compute(k, |_| Compute::Insert(Blob::new(b"v"), Expiry::Never))
                .expect("ok");
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut steps = 0;
        loop {
            let (keys, next) = scan_keys(&ks, cursor, 10);
            seen.extend(keys);
            steps += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 500);
        assert!(steps > 8);
    }
}
