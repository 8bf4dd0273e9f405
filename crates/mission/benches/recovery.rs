//! Start-up recovery of many orphaned runs: 200 runs alive (each a shell worker that ignores
//! SIGTERM, so every one needs the KILL after the grace), `mission serve` SIGKILLed, then the
//! time from starting the next server to its wake socket taking datagrams — which it binds only
//! once recovery is done — over three rounds; and that nothing of the old runs is left.
//!
//! `cargo bench -p mission --bench recovery` (`BENCH_ORPHANS` to change the 200).

use mission_testkit::process::wait_for_wake_socket;
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

fn mission(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(MISSION);
    command
        .args(args)
        .env("MISSION_CONFIG", dir.join("mission.toml"))
        .stdin(Stdio::null());
    command
}

fn serve(dir: &Path) -> Child {
    mission(dir, &["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Live processes whose environment names this instance's config.
fn live(dir: &Path) -> usize {
    let wanted = format!("MISSION_CONFIG={}", dir.join("mission.toml").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            let zombie = std::fs::read_to_string(e.path().join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true);
            !zombie
                && std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0).any(|i| i == wanted.as_bytes())
                        && env
                            .split(|b| *b == 0)
                            .any(|i| i.starts_with(b"MISSION_RUN="))
                })
        })
        .count()
}

fn round(orphans: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("mission.toml"),
        format!(
            "[dispatch]\nmax_workers = {orphans}\nkill_grace = \"300ms\"\nreconcile_interval = \"100ms\"\nstall_timeout = \"10m\"\nrun_timeout = \"10m\"\n\n[workers.w]\nruntime = \"shell\"\ncommand = [\"./stubborn.sh\"]\nmax_concurrent = {orphans}\n"
        ),
    )
    .unwrap();
    let script = dir.join("stubborn.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ntrap '' TERM\nsleep 600 & wait\nsleep 600\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        mission(dir, &["init", dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    for entry in std::fs::read_dir(dir.join("tasks")).unwrap().flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    for n in 0..orphans {
        let title = format!("t{n}");
        assert!(
            mission(
                dir,
                &["ticket", "add", "--title", &title, "--assignee", "w"]
            )
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
        );
    }
    let mut first = serve(dir);
    let started = Instant::now();
    while live(dir) < orphans {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "runs did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let socket = dir.join("data/wake.sock");
    let _ = std::fs::remove_file(&socket);
    let t = Instant::now();
    let mut second = serve(dir);
    wait_for_wake_socket(&socket, Duration::from_secs(600));
    let took = t.elapsed();
    let left = live(dir);
    send_term(second.id());
    second.wait().unwrap();
    assert_eq!(left, 0, "orphans left after recovery");
    took
}

#[allow(unsafe_code)]
fn send_term(pid: u32) {
    // SAFETY: kill only sends a signal.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
}

fn main() {
    let orphans = std::env::var("BENCH_ORPHANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let times: Vec<Duration> = (0..3).map(|_| round(orphans)).collect();
    println!(
        "{}",
        Stats::new(times).line(&format!(
            "start-up recovery of {orphans} orphaned runs (TERM ignored: KILL after a 300 ms grace), start -> ready"
        ))
    );
}
