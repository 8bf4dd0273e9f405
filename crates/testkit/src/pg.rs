//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, `postgres` on a free
//! TCP port of 127.0.0.1 (its unix socket in the same folder), trust authentication for the
//! `postgres` role, fsync on (only `initdb`'s own sync of its template files is skipped). Each test
//! gets a fresh place of its own: a database (`create_database`, about a second with fsync on),
//! or a schema of one shared database, selected through the URL's `search_path`
//! (`create_schema`, a few milliseconds; everything the store creates lives in its connection's
//! current schema). One cluster per test binary (`Cluster::shared`) is enough and much faster
//! than one per test.
//!
//! The server is started through a small `sh` supervisor that reads its standard input from this
//! process: when this process ends, however it ends (a failed assertion, a kill), the pipe closes,
//! and the supervisor stops the server (fast shutdown) and deletes the folder. `Drop` does the
//! same for a cluster that is not shared.
//!
//! PostgreSQL refuses to run as root. As root, the cluster runs as the `postgres` system user
//! (through `runuser`), which owns the temporary folder; otherwise it runs as the current user.
//! The server binaries are looked up in `MISSION_PG_BIN`, then `/usr/lib/postgresql/*/bin`
//! (the newest version first), then `PATH`.
//!
//! ```no_run
//! let cluster = mission_testkit::pg::Cluster::shared();
//! let url = cluster.create_database(); // postgres://postgres@127.0.0.1:PORT/test_P_N
//! let url = cluster.create_schema(); // …/tests?options=-c%20search_path%3Dtest_P_N
//! ```

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Names a folder holding `initdb`, `postgres` and `psql`, instead of searching for them.
pub const PG_BIN_ENV: &str = "MISSION_PG_BIN";

/// The role tests connect as.
pub const SUPERUSER: &str = "postgres";

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running cluster; stopped and deleted when dropped (or when this process ends).
pub struct Cluster {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    /// The supervisor; closing its standard input stops the server.
    supervisor: Option<Child>,
    stdin: Option<ChildStdin>,
    databases: AtomicU64,
    /// The database of `create_schema`, created on first use.
    schemas_db: OnceLock<()>,
}

/// The folder with the PostgreSQL server binaries, if this machine has them.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// Whether this process runs as root (PostgreSQL then runs as the `postgres` user).
fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command that runs `program` as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", SUPERUSER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free TCP port")
}

/// Runs a command to its end, panicking with its output when it fails.
fn check(command: &mut Command, what: &str) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    /// The cluster shared by every test of this test binary, started on first use.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    /// Starts a new cluster. Panics (naming what is missing) when the server binaries cannot be
    /// found or the server does not start.
    pub fn start() -> Cluster {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (looked in ${PG_BIN_ENV}, /usr/lib/postgresql/*/bin \
                 and PATH); install them, e.g. `apt-get install postgresql`"
            )
        });
        let mut last_error = String::new();
        // A port found free can be taken by someone else before the server binds it: try again.
        for _ in 0..3 {
            match Cluster::launch(&bin, &Cluster::init(&bin)) {
                Ok(cluster) => return cluster,
                Err(error) => last_error = error,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// A new temporary folder owned by the cluster's user, with an initialized cluster in `data`.
    fn init(bin: &Path) -> PathBuf {
        let dir = tempfile::Builder::new()
            .prefix("mission-pg-")
            .tempdir()
            .expect("a temporary folder")
            .keep();
        if running_as_root() {
            let owner = nix::unistd::User::from_name(SUPERUSER)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("running as root needs the `{SUPERUSER}` system user"));
            std::os::unix::fs::chown(&dir, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
        }
        check(
            as_owner(&bin.join("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
            "initdb",
        );
        dir
    }

    /// Starts the server of an initialized folder on a free port, through the supervisor.
    fn launch(bin: &Path, dir: &Path) -> Result<Cluster, String> {
        let port = free_port();
        // The supervisor: start the server, wait for the end of standard input (this process
        // closing the pipe, or ending), stop the server, delete the folder.
        let script = r#"
            "$1" -D "$2/data" -k "$2" -h 127.0.0.1 -p "$3" \
                -c fsync=on -c max_connections=400 -c shared_buffers=64MB \
                -c log_min_messages=warning -c logging_collector=off >"$2/server.log" 2>&1 &
            server=$!
            cat >/dev/null
            kill -INT "$server" 2>/dev/null
            wait "$server"
            rm -rf "$2"
        "#;
        let mut supervisor = as_owner(Path::new("/bin/sh"))
            .args(["-c", script, "sh"])
            .arg(bin.join("postgres"))
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the supervisor: {e}"))?;
        let stdin = supervisor.stdin.take();
        let mut cluster = Cluster {
            bin: bin.to_owned(),
            port,
            dir: dir.to_owned(),
            supervisor: Some(supervisor),
            stdin,
            databases: AtomicU64::new(0),
            schemas_db: OnceLock::new(),
        };
        let started = Instant::now();
        loop {
            let ready = cluster
                .psql("postgres")
                .args(["-c", "SELECT 1"])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|out| out.status.success());
            if ready {
                return Ok(cluster);
            }
            let exited = cluster
                .supervisor
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
                .is_some();
            if exited || started.elapsed() > START_TIMEOUT {
                // Dropping the cluster stops the server and deletes the folder.
                return Err(cluster.server_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server_log(&self) -> String {
        let mut log = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.join("server.log")) {
            let _ = file.read_to_string(&mut log);
        }
        log
    }

    /// `psql` on database `db` of this cluster, quiet, stopping at the first error.
    pub fn psql(&self, db: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db]);
        command
    }

    /// Runs `sql` on database `db`, returning what `psql` printed (unaligned, tuples only).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        check(self.psql(db).args(["-A", "-t", "-c", sql]), "psql")
    }

    /// Runs `sql` through `psql` on the database (and schema) a URL of this cluster names,
    /// returning what it printed (unaligned, tuples only, `|` between columns).
    pub fn query(&self, url: &str, sql: &str) -> String {
        let mut command = Command::new(self.bin.join("psql"));
        command.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-A",
            "-t",
            "-c",
            sql,
            url,
        ]);
        check(&mut command, "psql")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{port}/{db}",
            port = self.port
        )
    }

    fn unique_name(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        format!("test_{}_{n}", std::process::id())
    }

    /// Creates an empty database with a name of its own; returns its URL.
    pub fn create_database(&self) -> String {
        let name = self.unique_name();
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Creates an empty schema with a name of its own in the database `tests`; returns a URL
    /// whose connections have it as their only schema (`search_path`).
    pub fn create_schema(&self) -> String {
        const DATABASE: &str = "tests";
        self.schemas_db
            .get_or_init(|| drop(self.sql("postgres", &format!("CREATE DATABASE {DATABASE}"))));
        let name = self.unique_name();
        self.sql(DATABASE, &format!("CREATE SCHEMA {name}"));
        format!("{}?options=-c%20search_path%3D{name}", self.url(DATABASE))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // End of input: the supervisor stops the server and deletes the folder.
        self.stdin = None;
        if let Some(mut supervisor) = self.supervisor.take() {
            let _ = supervisor.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
