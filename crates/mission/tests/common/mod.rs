//! A test instance: a temporary folder with mission.toml, the store, and the fake agent (as
//! `fake-worker`, `claude` and `codex`) first on PATH. Every command runs the real binary.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MISSION: &str = env!("CARGO_BIN_EXE_mission");

pub struct Instance {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

/// The settings tests run with: short timeouts so that failures show quickly.
pub const FAST: &str = r#"
[dispatch]
max_workers = 8
max_attempts = 3
backoff_base = "50ms"
backoff_max = "200ms"
lease = "3s"
stall_timeout = "3s"
run_timeout = "30s"
kill_grace = "300ms"
reconcile_interval = "100ms"
"#;

impl Instance {
    /// `mission init` with the reference configuration.
    pub fn reference() -> Instance {
        let instance = Instance::empty();
        let out = instance.run(&["init", "."]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        instance
    }

    fn empty() -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let bin = mission_testkit::fake_agent_bin_dir(dir.path());
        Instance { dir, bin }
    }

    /// An instance whose workers are the fake agent: `luci` (shell), `claude` (claude-code),
    /// `codex` (codex), `lucienne` a controller; `extra` is appended to the config.
    pub fn with_fake_workers(extra: &str) -> Instance {
        let instance = Instance::empty();
        let worker = instance.bin.join("fake-worker");
        let config = format!(
            r#"[instance]
key = "MC"

[policy]
controllers = ["lucienne"]
{extra}
[workers.luci]
runtime = "shell"
command = ["{worker}"]
max_concurrent = 4

[workers.claude]
runtime = "claude-code"
max_concurrent = 2

[workers.codex]
runtime = "codex"
max_concurrent = 2
"#,
            worker = worker.display()
        );
        std::fs::write(instance.config(), config).unwrap();
        let out = instance.run(&["init", "."]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        instance
    }

    /// An instance with the fake workers and `extra`, plus the worker `script`: `script.sh` in
    /// the instance folder, a shell script with the body `script`.
    pub fn with_script_worker(extra: &str, script: &str) -> Instance {
        Instance::with_script_worker_keys(extra, "", script)
    }

    /// As [`Instance::with_script_worker`], with more keys (`worker_keys`, TOML lines) for the
    /// `script` worker.
    pub fn with_script_worker_keys(extra: &str, worker_keys: &str, script: &str) -> Instance {
        use std::os::unix::fs::PermissionsExt;
        let instance = Instance::with_fake_workers(&format!(
            "{extra}\n[workers.script]\nruntime = \"shell\"\ncommand = [\"./script.sh\"]\n{worker_keys}\n"
        ));
        let path = instance.path().join("script.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        instance
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("mission.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MISSION);
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("MISSION_CONFIG")
            .env("PATH", mission_testkit::path_with(&self.bin))
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed, returning its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command with `--json` that exits 0 or 1, returning its parsed stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {:?}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Adds a ticket, returning its id.
    pub fn add(&self, args: &[&str]) -> String {
        let mut all = vec!["ticket", "add"];
        all.extend_from_slice(args);
        self.json(&all)["id"].as_str().unwrap().to_owned()
    }

    /// Adds a ticket whose body is `body` (given through a file, byte for byte).
    pub fn add_with_body(&self, title: &str, assignee: &str, body: &[u8]) -> String {
        let file = self.path().join(format!("body-{}.txt", rand_suffix()));
        std::fs::write(&file, body).unwrap();
        // `--title=…`: a title may start with a dash.
        let title = format!("--title={title}");
        self.add(&[
            &title,
            "--assignee",
            assignee,
            "--body-file",
            file.to_str().unwrap(),
        ])
    }

    /// Everything stored, as the CLI shows it: to compare before and after a refused command.
    pub fn snapshot(&self) -> (String, String) {
        (self.ok(&["ticket", "list", "--json"]), self.ok(&["events"]))
    }

    pub fn show(&self, id: &str) -> Value {
        self.json(&["ticket", "show", id])
    }

    pub fn state(&self, id: &str) -> String {
        self.show(id)["state"].as_str().unwrap().to_owned()
    }

    pub fn events(&self) -> Vec<Value> {
        self.ok(&["events"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `dispatch --once` with `--json`; returns the report.
    pub fn dispatch(&self, extra: &[&str]) -> Value {
        let mut args = vec!["dispatch", "--once"];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// The run directory of a ticket's attempt.
    pub fn run_dir(&self, id: &str, attempt: u32) -> PathBuf {
        self.path()
            .join("data/runs")
            .join(id)
            .join(attempt.to_string())
    }

    /// Starts `mission serve`, its HTTP side on a port of the system's choosing.
    pub fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    /// Starts `mission serve` with more environment variables.
    pub fn serve_with(&self, env: &[(&str, &str)]) -> Server {
        let child = self
            .command(&["serve", "--bind", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Server { child: Some(child) };
        // Ready when its wake socket takes datagrams (a crashed server's stale socket does not).
        let socket = self.path().join("data/wake.sock");
        wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixDatagram::unbound()
                .and_then(|s| s.send_to(b"w", &socket))
                .is_ok()
        });
        server
    }

    /// Waits until the ticket is in `state`.
    pub fn wait_for_state(&self, id: &str, state: &str, within: Duration) {
        let start = Instant::now();
        loop {
            let now = self.state(id);
            if now == state {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{id} is {now}, not {state}, after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub struct Server {
    pub child: Option<Child>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        signal(child.id() as i32, libc::SIGTERM);
        child.wait_with_output().unwrap()
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[allow(unsafe_code)]
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill only sends a signal; it touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            state != Some('Z')
        }
        Err(_) => false,
    }
}

pub fn wait_for(within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < within,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst) * 1000 + std::process::id() as u64
}

impl Instance {
    /// Processes whose environment names this run of this instance: anything left of it.
    pub fn processes_of_run(&self, run: i64) -> Vec<i64> {
        processes_of_run(&self.config(), run)
    }
}

fn processes_of_run(config: &Path, run: i64) -> Vec<i64> {
    let needle = format!("MISSION_RUN={run}");
    let config = format!("MISSION_CONFIG={}", config.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        if let Ok(environ) = std::fs::read(entry.path().join("environ"))
            && environ.split(|b| *b == 0).any(|e| e == needle.as_bytes())
            && environ.split(|b| *b == 0).any(|e| e == config.as_bytes())
            && alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// `mission serve` with its stderr collected, and the address its HTTP side listens on.
pub struct Served {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub addr: SocketAddr,
}

impl Served {
    pub fn start(instance: &Instance, env: &[(&str, &str)]) -> Served {
        let mut command = instance.command(&["serve", "--bind", "127.0.0.1:0"]);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let start = Instant::now();
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("mission: listening on http://"))
                .map(|a| a.parse::<SocketAddr>().unwrap());
            if let Some(addr) = found {
                break addr;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the server did not listen: {}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Served { child, log, addr }
    }

    /// One request, `Connection: close`; the status and the body parsed as JSON (or Null).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, token, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One request, `Connection: close`; the status and the body as text.
    pub fn request_text(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut socket = TcpStream::connect(self.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        socket.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub fn stop(mut self) -> String {
        signal(self.child.id() as i32, libc::SIGTERM);
        let status = self.child.wait().unwrap();
        // Let the reader thread drain the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "{log}");
        log
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
