//! Test support: the fake agent (`src/bin/fake-agent.rs`) and helpers to find it and put it on
//! `PATH` under the names the runtimes launch; throwaway PostgreSQL clusters (`pg`).
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! let bin = mission_testkit::fake_agent_bin_dir(dir.path());
//! // Spawn with PATH = mission_testkit::path_with(&bin): `claude`, `codex` and `fake-worker`
//! // now start the fake agent, which imitates the CLI it was run as.
//! ```

pub mod breakdown;
pub mod crash;
pub mod pg;
pub mod process;
pub mod pytools;
pub mod stats;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The names [`fake_agent_bin_dir`] links to the fake agent.
pub const FAKE_AGENT_NAMES: [&str; 3] = ["claude", "codex", "fake-worker"];

/// Overrides where the fake agent is: a path to an already built binary.
pub const FAKE_AGENT_ENV: &str = "MISSION_FAKE_AGENT";

/// The fake agent binary, `target/<profile>/fake-agent` beside the running test executable.
///
/// Once per process it runs `$CARGO build -p mission-testkit --bin fake-agent` for that target
/// folder and profile, so tests of other crates never run a stale fake agent (a no-op when it is
/// current). If cargo cannot be run, an existing binary is used as it is. `MISSION_FAKE_AGENT`
/// names a binary to use instead, without building.
pub fn fake_agent_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(locate_or_build).clone()
}

/// Creates `dir/bin` holding symlinks `claude`, `codex` and `fake-worker` to the fake agent, and
/// returns it: put it first on `PATH` (see [`path_with`]).
pub fn fake_agent_bin_dir(dir: &Path) -> PathBuf {
    let agent = fake_agent_path();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    for name in FAKE_AGENT_NAMES {
        let link = bin.join(name);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        }
        std::os::unix::fs::symlink(&agent, &link)
            .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    }
    bin
}

/// Runs `git -C dir ARGS` as a test's author (`user.name` and `user.email` set) and returns its
/// standard output, trimmed; panics with git's error when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Makes `repo` (and its parents) a git repository with one commit (a `README`) on `main`;
/// returns it.
pub fn git_repo(repo: &Path) -> PathBuf {
    std::fs::create_dir_all(repo).unwrap_or_else(|e| panic!("{}: {e}", repo.display()));
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(repo, &["add", "README"]);
    git(repo, &["commit", "-q", "-m", "init"]);
    repo.to_path_buf()
}

/// This process's `PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest)))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn locate_or_build() -> PathBuf {
    if let Some(path) = std::env::var_os(FAKE_AGENT_ENV) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of the test executable");
    // Tests run from target/<profile>/deps; binaries live in target/<profile>.
    let mut profile_dir = exe
        .parent()
        .expect("the test executable's folder")
        .to_path_buf();
    if profile_dir.file_name().is_some_and(|name| name == "deps") {
        profile_dir.pop();
    }
    let binary = profile_dir.join("fake-agent");
    let target_dir = profile_dir.parent().expect("the target folder");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the profile folder's name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "mission-testkit",
            "--bin",
            "fake-agent",
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    match build.output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "building the fake agent failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) if binary.is_file() => {
            eprintln!(
                "cannot run cargo ({e}); using {} as it is",
                binary.display()
            );
        }
        Err(e) => panic!("cannot run cargo to build the fake agent: {e}"),
    }
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// The time (nanoseconds since the epoch) the fake agent stamped at its start, for `ticket`'s
/// first attempt in the instance `dir` (`data/runs/TICKET/1/started.ns`), waiting for it up to
/// 10 s: the end of a pickup, as the benchmarks measure it.
pub fn agent_started_ns(dir: &Path, ticket: &str) -> u128 {
    let stamp = dir.join("data/runs").join(ticket).join("1/started.ns");
    let waited = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&stamp)
            && let Ok(ns) = text.trim().parse()
        {
            return ns;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(10),
            "{ticket} was not picked up"
        );
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}
