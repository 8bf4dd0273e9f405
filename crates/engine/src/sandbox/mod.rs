//! The sandbox of a run: what its process tree may read and write, and how that is enforced.
//!
//! The runner never starts an agent with the server's own rights. The thread that starts it
//! is made for that start and restricts itself first ([`Confined::spawn`],
//! [`launch::restrict_thread`]) — or, for a run that changes its user, the runner starts the
//! launcher binary (`mission-sandbox`, or `mission __run-sandboxed`), which restricts itself
//! before `exec` ([`launch::run`]). Either way, before anything of the agent runs, what must
//! hold for the whole tree the agent will start is in place:
//!
//! 1. a Landlock ruleset (when the worker's `sandbox` is on and the kernel has Landlock):
//!    read-write the run's workspace, its run folder (with its private temp folder) and the
//!    worker's home; read-only the system and the paths the worker declares; nothing of the
//!    instance folder (store, config, `tasks/`, other runs); signals and abstract unix sockets
//!    scoped to the run (Landlock ABI 6 and later);
//! 2. an empty capability bounding set (and no inheritable or ambient capabilities) when running
//!    as root, so the agent holds no capability — in particular not `CAP_SYS_PTRACE`, without
//!    which it cannot read the server's `/proc/PID/environ`;
//! 3. the configured unprivileged `run_as` user, when the server runs as root;
//! 4. `PR_SET_NO_NEW_PRIVS`;
//!
//! then the agent is `exec`'d. The server marks itself non-dumpable, so that a run of the same user
//! cannot read its environment either.
//!
//! [`Policy`] is what a run may touch, built by the runner from the run's folders and the
//! worker's configuration; [`Spec`] is the program and its restriction (for the launcher, a
//! JSON file in the run folder). [`probe`] tells what the kernel offers, once, for the server to report.

pub mod launch;

use crate::settings::Settings;
use mission_core::config::{HomeMode, RuntimeKind, SandboxMode, WorkerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Set (to anything) to pretend the kernel has no Landlock: the path taken where it is missing.
pub const PRETEND_NO_LANDLOCK: &str = "MISSION_TEST_NO_LANDLOCK";

/// What the kernel offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "landlock", rename_all = "snake_case")]
pub enum Landlock {
    /// Not probed: the launcher enforces what it can and says so in the run folder.
    #[default]
    Unknown,
    /// Landlock with this ABI version.
    Available { abi: u32 },
    /// No Landlock: runs start unsandboxed (capabilities are still dropped).
    Unavailable { reason: String },
}

impl Landlock {
    pub fn is_available(&self) -> bool {
        !matches!(self, Landlock::Unavailable { .. })
    }
}

/// How runs are sandboxed, resolved once for the engines.
#[derive(Clone, Debug, Default)]
pub struct SandboxSettings {
    /// The launcher binary, for runs that change their user (`Some`: processes start confined;
    /// the others by a restricted thread). `None` starts runs directly, without any of the
    /// sandbox — for engine tests that have no `mission` binary.
    pub launcher: Option<PathBuf>,
    /// What the kernel offers.
    pub landlock: Landlock,
    /// The private `HOME` folders of workers: `DATA/homes/WORKER`.
    pub homes_dir: PathBuf,
}

/// The newest Landlock ABI whose rights this code asks for (and is tested with). Newer kernels
/// are used at this level; older ones enforce what they know (best effort, reported).
const ABI: landlock::ABI = landlock::ABI::V7;

/// What the kernel offers: the newest Landlock ABI (up to the one this code uses) with which a
/// ruleset can be created. Creating a ruleset restricts nothing. Honours [`PRETEND_NO_LANDLOCK`].
pub fn probe() -> Landlock {
    use landlock::{
        ABI as Abi, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope,
    };
    if std::env::var_os(PRETEND_NO_LANDLOCK).is_some() {
        return Landlock::Unavailable {
            reason: format!("{PRETEND_NO_LANDLOCK} is set"),
        };
    }
    let levels = [
        (Abi::V7, 7),
        (Abi::V6, 6),
        (Abi::V5, 5),
        (Abi::V4, 4),
        (Abi::V3, 3),
        (Abi::V2, 2),
        (Abi::V1, 1),
    ];
    let mut last_error = String::new();
    for (abi, number) in levels {
        let created = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|ruleset| {
                if number >= 6 {
                    ruleset.scope(Scope::from_all(abi))
                } else {
                    Ok(ruleset)
                }
            })
            .and_then(|ruleset| ruleset.create());
        match created {
            Ok(_) => return Landlock::Available { abi: number },
            Err(error) => last_error = error.to_string(),
        }
    }
    Landlock::Unavailable { reason: last_error }
}

/// The system, readable (and executable) by every run. Missing paths are skipped.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/run/systemd/resolve",
    "/nix/store",
    "/dev/urandom",
    "/dev/random",
];

/// Devices and shared memory every run may write. (Not `/dev` as a whole: its disks are owned
/// by root, whom a run as root would otherwise be able to read through.)
const SYSTEM_WRITE: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// A run's workspace as the sandbox sees it.
#[derive(Clone, Debug)]
pub struct WorkspaceAccess {
    pub path: PathBuf,
    /// For a git worktree: the main repository's git folder (its "common dir") and the
    /// worktree's own folder within it (`COMMON/worktrees/NAME`).
    pub git: Option<GitAccess>,
}

#[derive(Clone, Debug)]
pub struct GitAccess {
    pub common_dir: PathBuf,
    pub worktree_git_dir: PathBuf,
}

impl GitAccess {
    /// Reads the `gitdir:` pointer of a worktree (`WORKTREE/.git`, a file) and the `commondir`
    /// it names. `None` for anything else (a plain folder, a full clone).
    pub fn of_worktree(worktree: &Path) -> Option<GitAccess> {
        let pointer = std::fs::read_to_string(worktree.join(".git")).ok()?;
        let git_dir = PathBuf::from(pointer.strip_prefix("gitdir:")?.trim());
        let git_dir = if git_dir.is_relative() {
            worktree.join(git_dir)
        } else {
            git_dir
        };
        let common = std::fs::read_to_string(git_dir.join("commondir")).ok()?;
        let common = git_dir.join(common.trim());
        Some(GitAccess {
            common_dir: std::fs::canonicalize(&common).ok()?,
            worktree_git_dir: std::fs::canonicalize(&git_dir).ok()?,
        })
    }
}

/// What one run may touch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Read and execute.
    pub read: Vec<PathBuf>,
    /// Read, write, create, remove and execute.
    pub write: Vec<PathBuf>,
}

/// Everything [`Policy::for_run`] needs to know about one run.
pub struct RunPaths<'a> {
    pub workspace: &'a WorkspaceAccess,
    pub run_dir: &'a Path,
    pub home: &'a Path,
    /// Whether `home` is the worker's private home (writable) or the real one (not granted).
    pub private_home: bool,
    /// The program the launcher executes, resolved.
    pub program: &'a Path,
    /// The `mission` binary, for the run's callbacks.
    pub mission_bin: &'a Path,
    /// Relative declared paths start here.
    pub instance_dir: &'a Path,
    /// `~/` in declared paths: the server's home.
    pub server_home: Option<&'a Path>,
    /// The run's environment (`CLAUDE_CONFIG_DIR`, `CODEX_HOME`).
    pub env: &'a [(String, String)],
}

impl Policy {
    /// The policy of one run of `worker`.
    pub fn for_run(worker: &WorkerConfig, paths: &RunPaths) -> Policy {
        let mut policy = Policy::default();
        policy.read.extend(SYSTEM_READ.iter().map(PathBuf::from));
        policy.write.extend(SYSTEM_WRITE.iter().map(PathBuf::from));
        policy.write.push(paths.workspace.path.clone());
        policy.write.push(paths.run_dir.to_owned());
        if paths.private_home {
            policy.write.push(paths.home.to_owned());
        }
        if let Some(git) = &paths.workspace.git {
            // The main repository's git folder is read; of it, the agent writes only what a
            // commit on its own branch needs: objects, its worktree's folder, and the refs (and
            // their logs) under `mission/`. Not `config`, `hooks` or any other branch.
            policy.read.push(git.common_dir.clone());
            policy.write.push(git.common_dir.join("objects"));
            policy.write.push(git.worktree_git_dir.clone());
            policy.write.push(git.common_dir.join("refs/heads/mission"));
            policy
                .write
                .push(git.common_dir.join("logs/refs/heads/mission"));
        }
        policy.read.push(paths.mission_bin.to_owned());
        policy.read.extend(program_paths(paths.program));
        let env = |name: &str| {
            paths
                .env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| PathBuf::from(v))
        };
        // The agent CLIs keep their sessions and settings in their own folders.
        match worker.runtime {
            RuntimeKind::ClaudeCode => match env("CLAUDE_CONFIG_DIR") {
                Some(dir) => policy.write.push(dir),
                None => {
                    policy.write.push(paths.home.join(".claude"));
                    policy.write.push(paths.home.join(".claude.json"));
                }
            },
            RuntimeKind::Codex => {
                policy
                    .write
                    .push(env("CODEX_HOME").unwrap_or_else(|| paths.home.join(".codex")));
            }
            RuntimeKind::Shell => {}
        }
        let resolve = |declared: &String| -> PathBuf {
            match (declared.strip_prefix("~/"), paths.server_home) {
                (Some(rest), Some(home)) => home.join(rest),
                _ => paths.instance_dir.join(declared),
            }
        };
        policy.read.extend(worker.sandbox_read.iter().map(resolve));
        policy
            .write
            .extend(worker.sandbox_write.iter().map(resolve));
        policy
    }
}

/// One confined process outside a ticket's attempt — a configured test run in a ticket's
/// workspace, a reviewer's or an inbox handler's run — sandboxed as its worker's runs are: the
/// same [`Policy`], the same launcher.
pub struct Confinement<'a> {
    pub worker: &'a WorkerConfig,
    pub workspace: &'a WorkspaceAccess,
    /// Its own folder (with its private `tmp/`), written by it alone.
    pub run_dir: &'a Path,
    pub home: &'a Path,
    /// The program, resolved, and the name it is started as.
    pub program: &'a Path,
    pub arg0: &'a str,
    pub env: &'a [(String, String)],
    pub run_as: Option<(u32, u32)>,
}

impl Confinement<'_> {
    /// The launcher's spec of this process.
    pub fn spec(&self, settings: &Settings) -> Spec {
        let server_home = std::env::var_os("HOME").map(PathBuf::from);
        let policy = Policy::for_run(
            self.worker,
            &RunPaths {
                workspace: self.workspace,
                run_dir: self.run_dir,
                home: self.home,
                private_home: self.worker.home == HomeMode::Private,
                program: self.program,
                mission_bin: &settings.mission_bin,
                instance_dir: &settings.instance_dir,
                server_home: server_home.as_deref(),
                env: self.env,
            },
        );
        Spec {
            program: self.program.to_owned(),
            arg0: self.arg0.to_owned(),
            landlock: wants_landlock(self.worker, &settings.sandbox.landlock),
            policy,
            run_as: self.run_as,
            status_file: self.run_dir.join("sandbox.status"),
        }
    }

    /// The command that starts `args` confined by this spec ([`confine`]). Its environment is
    /// `env` and nothing else.
    pub async fn command(&self, settings: &Settings, args: &[String]) -> std::io::Result<Confined> {
        let mut confined = match settings.sandbox.launcher {
            Some(_) => confine(settings, self.spec(settings), args).await?,
            None => Confined::direct(self.program, args),
        };
        confined.env_clear().envs(self.env.iter().cloned());
        Ok(confined)
    }
}

/// A confined process's command, and the restriction its start applies. Configure it as a
/// [`tokio::process::Command`] (it derefs to one); start it with [`Confined::spawn`].
pub struct Confined {
    command: tokio::process::Command,
    /// Applied by [`Confined::spawn`] to a thread of its own, which then starts the command.
    restrict: Option<Spec>,
}

/// The command that starts `spec.program` with `args` confined by `spec`:
///
/// - without a launcher (engine tests, which have no `mission` binary): the program itself,
///   unconfined;
/// - to run as another user: through the launcher binary (`sandbox.json` written into the
///   process's folder, its owner's alone), which changes the user before it `exec`s the
///   program — a user change is a whole process's;
/// - otherwise: the program itself, started by [`Confined::spawn`] from a thread made for that
///   start, restricted first ([`launch::restrict_thread`]) — the same restriction as the
///   launcher's, without a second `exec` on the pickup path.
pub async fn confine(
    settings: &Settings,
    spec: Spec,
    args: &[String],
) -> std::io::Result<Confined> {
    match &settings.sandbox.launcher {
        None => Ok(Confined::direct(&spec.program, args)),
        Some(launcher) if spec.run_as.is_some() => {
            let spec_file = spec
                .status_file
                .parent()
                .unwrap_or(Path::new("."))
                .join("sandbox.json");
            let text = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other)?;
            write_private(&spec_file, &text).await?;
            let mut command = tokio::process::Command::new(launcher);
            command
                .arg(launch::COMMAND)
                .arg("--spec")
                .arg(&spec_file)
                .arg("--")
                .args(args);
            Ok(Confined {
                command,
                restrict: None,
            })
        }
        Some(_) => Ok(Confined::restricted(spec, args)),
    }
}

impl Confined {
    /// The program itself, unconfined (no launcher configured).
    pub fn direct(program: &Path, args: &[String]) -> Confined {
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        Confined {
            command,
            restrict: None,
        }
    }

    /// `spec.program` with `args`, restricted by `spec` when [`Confined::spawn`] starts it (a
    /// spec with `run_as` fails to start: see [`launch::restrict_thread`]).
    pub fn restricted(spec: Spec, args: &[String]) -> Confined {
        let mut command = tokio::process::Command::new(&spec.program);
        command.arg0(&spec.arg0).args(args);
        Confined {
            command,
            restrict: Some(spec),
        }
    }

    /// Starts the process. A restricted start happens in a new thread that restricts itself,
    /// writes what was enforced to the spec's status file (as the launcher writes it: restricted,
    /// before anything of the program runs), starts the process (which inherits the
    /// restriction) and ends — never a thread of a pool, which would go on restricted. A thread
    /// that cannot restrict itself starts nothing.
    pub async fn spawn(self) -> std::io::Result<tokio::process::Child> {
        let Confined {
            mut command,
            restrict,
        } = self;
        let Some(spec) = restrict else {
            return command.spawn();
        };
        let runtime = tokio::runtime::Handle::current();
        let (sender, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("mission-confine".to_owned())
            .spawn(move || {
                let _runtime = runtime.enter();
                let started = match launch::restrict_thread(&spec) {
                    Ok(status) => {
                        launch::write_status(&spec, &status);
                        command.spawn().map(|child| (child, status))
                    }
                    Err(error) => Err(std::io::Error::other(format!("sandbox: {error}"))),
                };
                let _ = sender.send(started);
            })?;
        let (child, status) = answer
            .await
            .map_err(|_| std::io::Error::other("sandbox: the starting thread ended"))??;
        if status.landlock == "partial" || status.landlock == "unavailable" {
            tracing::warn!(landlock = %status.landlock, "Landlock is not fully enforced on this kernel");
        }
        Ok(child)
    }
}

impl std::ops::Deref for Confined {
    type Target = tokio::process::Command;
    fn deref(&self) -> &Self::Target {
        &self.command
    }
}

impl std::ops::DerefMut for Confined {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.command
    }
}

/// The home of `worker`'s confined processes: its private home (made for it), or the server's.
pub async fn worker_home(
    settings: &Settings,
    name: &str,
    worker: &WorkerConfig,
) -> std::io::Result<PathBuf> {
    let home = home_of(settings, name, worker);
    if worker.home == HomeMode::Private {
        make_private_dir(&home).await?;
    }
    Ok(home)
}

/// Where `worker_home` is, without making it: `worker`'s private home, or the server's.
pub fn home_of(settings: &Settings, name: &str, worker: &WorkerConfig) -> PathBuf {
    match worker.home {
        HomeMode::Private => settings.sandbox.homes_dir.join(name),
        HomeMode::Real => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/")),
    }
}

/// What the sandbox needs to know of a workspace: its path and, for a git worktree, its
/// repository's folders.
pub async fn workspace_access(path: &Path) -> WorkspaceAccess {
    let root = path.to_owned();
    tokio::task::spawn_blocking(move || WorkspaceAccess::of(&root))
        .await
        .unwrap_or_else(|_| WorkspaceAccess {
            path: path.to_owned(),
            git: None,
        })
}

impl WorkspaceAccess {
    /// `workspace_access`, on the calling thread (blocking).
    pub fn of(path: &Path) -> WorkspaceAccess {
        WorkspaceAccess {
            path: path.to_owned(),
            git: GitAccess::of_worktree(path),
        }
    }
}

/// Writes a file only its owner can read.
pub async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (path, bytes) = (path.to_owned(), bytes.to_owned());
    blocking(move || write_private_now(&path, &bytes)).await
}

/// `write_private`, on the calling thread (blocking).
pub fn write_private_now(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Creates a folder (and its parents) only its owner can enter.
pub async fn make_private_dir(path: &Path) -> std::io::Result<()> {
    let path = path.to_owned();
    blocking(move || make_private_dir_now(&path)).await
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// `make_private_dir`, on the calling thread (blocking).
pub fn make_private_dir_now(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The uid and gid of `user`, whom the runs of a worker with `run_as` become. Only a server
/// running as root can change its runs' user.
pub fn run_as_user(user: &str) -> Result<(u32, u32), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("run_as = {user:?} needs a server running as root"));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(found)) => Ok((found.uid.as_raw(), found.gid.as_raw())),
        Ok(None) => Err(format!("run_as: no user {user:?}")),
        Err(e) => Err(format!("run_as: looking up {user:?}: {e}")),
    }
}

/// Gives folders (recursively) to a run's user. Blocking work, off the async threads.
pub async fn give_to(paths: Vec<PathBuf>, uid: u32, gid: u32) -> Result<(), String> {
    fn walk(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    tokio::task::spawn_blocking(move || {
        for path in &paths {
            walk(path, uid, gid).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// What running `program` needs besides the system: the file itself, or — for a program
/// installed by npm (`PREFIX/lib/node_modules/…`, as Claude Code and Codex are) — the whole
/// installation prefix (its `node` and its packages).
fn program_paths(program: &Path) -> Vec<PathBuf> {
    let Ok(real) = std::fs::canonicalize(program) else {
        return vec![program.to_owned()];
    };
    let text = real.to_string_lossy();
    match text.find("/lib/node_modules/") {
        Some(at) => vec![program.to_owned(), PathBuf::from(&text[..at])],
        None => vec![program.to_owned(), real],
    }
}

/// A confined process: its program and restriction (for the launcher, the file `sandbox.json`
/// in its folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// The program to execute, resolved (absolute).
    pub program: PathBuf,
    /// Its `argv[0]`: the name it was configured as (agents such as busybox-style tools care).
    pub arg0: String,
    /// Whether to apply Landlock with `policy` (the worker's sandbox is on and the kernel is not
    /// known to lack it).
    pub landlock: bool,
    pub policy: Policy,
    /// The user (uid, gid) to become, when the launcher runs as root.
    pub run_as: Option<(u32, u32)>,
    /// Where the launcher writes what it enforced (`sandbox.status`, JSON).
    pub status_file: PathBuf,
}

/// What the launcher enforced, as written to `sandbox.status` in the run folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// `full`, `partial`, `off` (the worker opted out), or `unavailable` (the kernel).
    pub landlock: String,
    /// Declared paths that do not exist (skipped).
    pub skipped: Vec<PathBuf>,
    /// The capability bounding set was emptied (only possible, and only needed, as root).
    pub capabilities_dropped: bool,
    pub no_new_privs: bool,
    pub uid: u32,
    pub gid: u32,
}

/// The launcher installed beside `mission_bin`: `mission-sandbox` when it is there (a small
/// binary, quick to start on the pickup path), else `mission` itself, whose hidden
/// `__run-sandboxed` does the same. Both take the same arguments.
pub fn launcher_beside(mission_bin: &Path) -> PathBuf {
    let small = mission_bin.with_file_name(LAUNCHER_BIN);
    if small.is_file() {
        small
    } else {
        mission_bin.to_path_buf()
    }
}

/// The file name of the small launcher binary.
pub const LAUNCHER_BIN: &str = "mission-sandbox";

/// Whether a worker's runs get Landlock, given what the kernel offers.
pub fn wants_landlock(worker: &WorkerConfig, landlock: &Landlock) -> bool {
    worker.sandbox == SandboxMode::On && landlock.is_available()
}

/// Finds `program` the way `exec` would: a path with a slash as it is, a bare name on `path`
/// (the run's `PATH`). Only executable regular files count. Reads the file system: blocking.
pub fn resolve_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let candidate = PathBuf::from(program);
        return executable(&candidate).then_some(candidate);
    }
    path.unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_resolved_like_exec() {
        assert_eq!(
            resolve_program("sh", Some("/nonexistent:/bin:/usr/bin")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(resolve_program("no-such-program-here", Some("/bin")), None);
        assert_eq!(resolve_program("/etc/passwd", None), None, "not executable");
        assert_eq!(resolve_program("", None), None);
    }

    #[test]
    fn npm_installs_grant_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("lib/node_modules/@x/cli");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(package.join("cli.js"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let link = dir.path().join("bin/cli");
        std::os::unix::fs::symlink(package.join("cli.js"), &link).unwrap();
        let prefix = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(program_paths(&link), vec![link.clone(), prefix]);
    }

    #[test]
    fn the_small_launcher_is_used_when_it_is_installed_beside_mission() {
        let dir = tempfile::tempdir().unwrap();
        let mission = dir.path().join("mission");
        std::fs::write(&mission, "").unwrap();
        assert_eq!(
            launcher_beside(&mission),
            mission,
            "the fallback: mission itself"
        );
        std::fs::write(dir.path().join(LAUNCHER_BIN), "").unwrap();
        assert_eq!(launcher_beside(&mission), dir.path().join(LAUNCHER_BIN));
    }
}
