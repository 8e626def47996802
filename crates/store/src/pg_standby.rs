//! A throwaway hot standby of a local PostgreSQL primary, for tests and
//! benchmarks (feature `postgres`).
//!
//! [`TempStandby::start`] checks that the primary can feed a standby
//! (`wal_level`, `max_wal_senders`, a `replication` line in `pg_hba.conf`)
//! and says exactly what is missing when it cannot; then it runs
//! `pg_basebackup -R -X stream` into a temporary directory, starts the
//! Debian `postgres` binary on a spare port as the `postgres` user and
//! waits until the standby accepts queries. Dropping it stops the server
//! and deletes the directory.
//!
//! It runs blocking processes: call it outside async code (or in
//! `spawn_blocking`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::StoreError;

/// Where the primary is and how to reach it.
#[derive(Debug, Clone)]
pub struct PrimaryAddr {
    /// Host (default `127.0.0.1`).
    pub host: String,
    /// Port (default 5432, or `KUAI_STORE_PG_PORT`).
    pub port: u16,
    /// Superuser with replication rights (default `postgres`).
    pub user: String,
    /// Database (default `test`).
    pub dbname: String,
}

impl Default for PrimaryAddr {
    fn default() -> Self {
        let port = std::env::var("KUAI_STORE_PG_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432);
        PrimaryAddr {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            dbname: "test".into(),
        }
    }
}

impl PrimaryAddr {
    /// A libpq connection string for this primary.
    pub fn conn_string(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, self.dbname
        )
    }
}

/// A running hot standby in a temporary directory; stopped and deleted on drop.
#[derive(Debug)]
pub struct TempStandby {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    as_postgres: bool,
    dbname: String,
}

fn fail(msg: String) -> StoreError {
    StoreError::NotFound(msg)
}

fn run(cmd: &mut Command) -> Result<Output, StoreError> {
    cmd.output()
        .map_err(|e| fail(format!("cannot run {:?}: {e}", cmd.get_program())))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (postgres refuses
/// to run as root).
fn pg_command(bin: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn psql(addr: &PrimaryAddr, port: u16, sql: &str) -> Result<String, StoreError> {
    let out = run(Command::new("psql")
        .env("PGCONNECT_TIMEOUT", "5")
        .arg("-h")
        .arg(&addr.host)
        .arg("-p")
        .arg(port.to_string())
        .arg("-U")
        .arg(&addr.user)
        .arg("-d")
        .arg(&addr.dbname)
        .arg("-Atqc")
        .arg(sql))?;
    if !out.status.success() {
        return Err(fail(format!(
            "psql on port {port} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn spare_port() -> Result<u16, StoreError> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TempStandby {
    /// Creates and starts a standby of `primary`. Fails with a message
    /// saying what to fix when the primary is unreachable or not set up for
    /// replication.
    pub fn start(primary: &PrimaryAddr) -> Result<TempStandby, StoreError> {
        let version = psql(primary, primary.port, "SHOW server_version_num").map_err(|e| {
            fail(format!(
                "PostgreSQL primary at {}:{} is not reachable ({e}). Start it (e.g. \
                 `pg_ctlcluster 15 main start`) with trust auth for user {} and database {}.",
                primary.host, primary.port, primary.user, primary.dbname
            ))
        })?;
        let major = version
            .parse::<u32>()
            .map(|v| v / 10000)
            .map_err(|_| fail(format!("unexpected server_version_num {version:?}")))?;
        let wal_level = psql(primary, primary.port, "SHOW wal_level")?;
        let senders: u32 = psql(primary, primary.port, "SHOW max_wal_senders")?
            .parse()
            .unwrap_or(0);
        let hba = psql(primary, primary.port, "SHOW hba_file").unwrap_or_default();
        let conf = psql(primary, primary.port, "SHOW config_file").unwrap_or_default();
        if wal_level != "replica" && wal_level != "logical" {
            return Err(fail(format!(
                "the primary has wal_level={wal_level}; set `wal_level = replica` in {conf} and restart it"
            )));
        }
        if senders == 0 {
            return Err(fail(format!(
                "the primary has max_wal_senders=0; set `max_wal_senders = 10` in {conf} and restart it"
            )));
        }
        let rules = psql(
            primary,
            primary.port,
            "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) \
             AND type IN ('host','hostnossl') AND auth_method = 'trust' \
             AND (address IS NULL OR address IN ('127.0.0.1','all','0.0.0.0'))",
        )
        .unwrap_or_default();
        if rules == "0" {
            return Err(fail(format!(
                "the primary does not accept replication connections from 127.0.0.1: add the line \
                 `host replication all 127.0.0.1/32 trust` to {hba} and reload \
                 (`psql -h {} -p {} -U {} -c 'SELECT pg_reload_conf()'`)",
                primary.host, primary.port, primary.user
            )));
        }
        let bindir = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        if !bindir.join("postgres").exists() {
            return Err(fail(format!(
                "{} not found: install postgresql-{major}",
                bindir.join("postgres").display()
            )));
        }
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "kuai-store-standby-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = spare_port()?;
        let mut standby = TempStandby {
            dir: dir.clone(),
            port,
            bindir: bindir.clone(),
            as_postgres,
            dbname: primary.dbname.clone(),
        };
        if as_postgres {
            let out = run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
            if !out.status.success() {
                return Err(fail(format!("cannot chown {}", dir.display())));
            }
        }
        let out = run(pg_command(&bindir.join("pg_basebackup"), as_postgres)
            .arg("-h")
            .arg(&primary.host)
            .arg("-p")
            .arg(primary.port.to_string())
            .arg("-U")
            .arg(&primary.user)
            .arg("-D")
            .arg(&dir)
            .arg("-R")
            .arg("-X")
            .arg("stream")
            .arg("-c")
            .arg("fast"))?;
        if !out.status.success() {
            return Err(fail(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Debian-style clusters keep postgresql.conf, pg_hba.conf and
        // pg_ident.conf in /etc/postgresql, so pg_basebackup copies none of
        // them: give the standby its own minimal set.
        let configs = [
            (
                "postgresql.conf",
                "# kuai-store temporary standby: settings come from the command line\n",
            ),
            (
                "pg_hba.conf",
                "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
            ),
            ("pg_ident.conf", ""),
        ];
        for (name, text) in configs {
            let path = dir.join(name);
            if path.exists() {
                continue;
            }
            std::fs::write(&path, text)
                .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
            if as_postgres {
                let out = run(Command::new("chown").arg("postgres:postgres").arg(&path))?;
                if !out.status.success() {
                    return Err(fail(format!("cannot chown {}", path.display())));
                }
            }
        }
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c hot_standby=on -c fsync=off \
             -c logging_collector=off -c max_standby_streaming_delay=-1",
            dir.display()
        );
        let out = run(pg_command(&bindir.join("pg_ctl"), as_postgres)
            .arg("-D")
            .arg(&dir)
            .arg("-o")
            .arg(&opts)
            .arg("-l")
            .arg(dir.join("standby.log"))
            .arg("-t")
            .arg("60")
            .arg("-w")
            .arg("start"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join("standby.log")).unwrap_or_default();
            standby.port = 0;
            return Err(fail(format!(
                "the standby did not start: {} {log}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Wait until it answers queries as a standby.
        let until = Instant::now() + Duration::from_secs(60);
        let addr = PrimaryAddr {
            port,
            ..primary.clone()
        };
        loop {
            if psql(&addr, port, "SELECT pg_is_in_recovery()")
                .ok()
                .as_deref()
                == Some("t")
            {
                break;
            }
            if Instant::now() > until {
                return Err(fail(
                    "the standby did not accept queries within 60 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(standby)
    }

    /// The standby's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for the standby.
    pub fn conn_string(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={}",
            self.port, self.dbname
        )
    }

    /// The standby's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempStandby {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = pg_command(&self.bindir.join("pg_ctl"), self.as_postgres)
                .arg("-D")
                .arg(&self.dir)
                .arg("-m")
                .arg("immediate")
                .arg("-w")
                .arg("stop")
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
