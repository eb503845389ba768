//! A real PostgreSQL server for the connector tests: `initdb` into a temporary directory,
//! `wal_level = logical`, a free loopback port, the Unix socket in the same directory, and
//! password (SCRAM) authentication for user `eddy` / password `eddy`. Stopped (immediately)
//! when dropped. Never a mock.
//!
//! The server binaries come from Debian's `postgresql` package (`./scripts/test` installs it);
//! a missing binary fails the test saying so. PostgreSQL refuses to run as root: under root
//! the server runs as the `postgres` user the package creates (`runuser`), owning the
//! directory.
//!
//! eddy-bench's `cdc` workload runs the same server (it includes this file), with
//! [`Postgres::start_with`] making commits durable.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user and password the tests connect as.
pub const USER: &str = "eddy";
pub const PASSWORD: &str = "eddy";

/// A running PostgreSQL.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<String>,
}

fn bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.reverse();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    candidates.into_iter().find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists()).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin: \
             install Debian's `postgresql` package (./scripts/test does)"
        )
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

fn check(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Postgres {
    /// initdb, configure, start; waits until it accepts connections.
    pub fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// [`Postgres::start`], with `extra` (`postgresql.conf` lines) after the harness's own, so
    /// its settings win (e.g. `fsync = on` for a benchmark).
    pub fn start_with(extra: &str) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = is_root();
        let run_as = root.then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let status = Command::new("chown").args(["-R", user]).arg(dir.path()).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "running as root, PostgreSQL must run as user {user} (created by Debian's postgresql package), but chown to it failed"
            );
        }
        let pg = Postgres { port: free_port(), dir, bin, run_as };
        std::fs::write(pg.dir.path().join("pw"), PASSWORD).expect("password file");
        pg.chown(&pg.dir.path().join("pw"));
        let data = pg.data();
        check(
            "initdb",
            pg.command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--pwfile"])
                .arg(pg.dir.path().join("pw"))
                .output(),
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            pg.port,
            pg.dir.path().display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("postgresql.conf");
        text.push_str(&conf);
        text.push_str(extra);
        std::fs::write(&path, text).expect("postgresql.conf");
        pg.ctl(&["start", "-w", "-t", "60"]);
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn chown(&self, path: &Path) {
        if let Some(user) = &self.run_as {
            let _ = Command::new("chown").arg(user).arg(path).status();
        }
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn ctl(&self, args: &[&str]) {
        let log = self.dir.path().join("log");
        check(
            &format!("pg_ctl {args:?}"),
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(log)
                .args(args)
                .output(),
        );
    }

    /// Restarts the server (fast shutdown: sessions and replication connections are cut).
    pub fn restart(&self) {
        self.ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
    }

    /// `postgresql://eddy:eddy@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The JDBC form Confluent's connectors take.
    pub fn jdbc_url(&self, db: &str) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{db}?user={USER}&password={PASSWORD}", self.port)
    }

    /// Runs `sql` with psql on `db` (stopping at the first error); its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        check(&format!("psql {sql:.200}"), self.psql_command(db).arg("-c").arg(sql).output())
    }

    /// A psql process on `db` reading a script from stdin (for concurrent sessions).
    pub fn psql_command(&self, db: &str) -> Command {
        let psql = if self.bin.join("psql").exists() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let mut c = Command::new(psql);
        c.arg(self.url(db)).args(["-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"]);
        c
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate", "-w"])
            .output();
    }
}

/// Whether this process runs as root (PostgreSQL refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
