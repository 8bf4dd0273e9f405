//! The restriction itself, and the launcher: `mission __run-sandboxed --spec FILE -- PROGRAM
//! ARGS…` (or the `mission-sandbox` binary), which the runner starts as the leader of the run's
//! process group only for a run that changes its user. In that one process, single-threaded and
//! before anything of the agent runs, it restricts itself — everything it restricts is inherited
//! across `exec` by the agent and whatever the agent starts — and then becomes the agent. Other
//! runs are started by a thread that applies the same restriction to itself
//! ([`restrict_thread`]).
//!
//! The order matters: the Landlock ruleset is built while every path can still be opened; the
//! capability bounding set is emptied while the process still holds `CAP_SETPCAP`; the user is
//! changed after that (dropping the bounding set needs root, and a changed user cannot change
//! back); `PR_SET_NO_NEW_PRIVS` and the ruleset come last.

use super::{ABI, Spec, Status};
use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// The hidden command of the `mission` binary that is the launcher.
pub const COMMAND: &str = "__run-sandboxed";

/// Exit code of a launcher that could not set up the sandbox (nothing of the agent ran).
pub const SETUP_FAILED: u8 = 126;
/// Exit code of a launcher that could not execute the program.
pub const EXEC_FAILED: u8 = 127;

/// Applies `spec_file`'s sandbox and executes the program with `args`. Returns only on failure,
/// with the exit code and a one-line message.
pub fn run(spec_file: &Path, args: &[OsString]) -> (u8, String) {
    let spec: Spec = match std::fs::read(spec_file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(error) => return (SETUP_FAILED, format!("{}: {error}", spec_file.display())),
    };

    // (A later change makes the launcher wait here until its parent has recorded its pid: a go
    // byte read from an inherited pipe. Nothing of the agent may run before this point.)

    let status = match restrict(&spec) {
        Ok(status) => status,
        Err(error) => return (SETUP_FAILED, format!("sandbox: {error}")),
    };
    if spec.landlock && status.landlock != "full" {
        eprintln!(
            "mission: sandbox: Landlock is only {} on this kernel; see {}",
            status.landlock,
            spec.status_file.display()
        );
    }
    write_status(&spec, &status);
    let error = std::process::Command::new(&spec.program)
        .arg0(&spec.arg0)
        .args(args)
        .exec();
    (
        EXEC_FAILED,
        format!("cannot execute {}: {error}", spec.program.display()),
    )
}

/// Writes what was enforced to the spec's status file (JSON, its owner's alone). The run folder
/// is the run's own: written after the restriction, as the run's user, never through a symlink.
/// Best effort: the file only reports.
pub fn write_status(spec: &Spec, status: &Status) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(text) = serde_json::to_vec_pretty(status) else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&spec.status_file);
    if let Ok(mut file) = file {
        let _ = file.write_all(&text);
    }
}

/// Restricts the calling thread as the launcher restricts its process, for a thread made to
/// start one confined program and end (`super::Confined::spawn`): in Linux the Landlock
/// domain, `no_new_privs` and the capability sets are each thread's own, and a process this
/// thread starts inherits them — across its `exec`, as the launcher's program does. Changing the
/// user is not a thread's own (glibc changes every thread's): a spec with `run_as` is refused;
/// such processes start through the launcher.
pub fn restrict_thread(spec: &Spec) -> Result<Status, String> {
    if spec.run_as.is_some() {
        return Err("a run as another user starts through the launcher".to_owned());
    }
    restrict(spec)
}

/// Applies everything of `spec` to this thread (the launcher's only one), in order; returns
/// what was enforced.
fn restrict(spec: &Spec) -> Result<Status, String> {
    let mut status = Status::default();
    let ruleset = if spec.landlock {
        Some(ruleset(spec, &mut status.skipped).map_err(|e| format!("Landlock: {e}"))?)
    } else {
        status.landlock = "off".to_owned();
        None
    };
    if nix::unistd::geteuid().is_root() {
        use caps::CapSet;
        caps::clear(None, CapSet::Bounding).map_err(|e| format!("capability bounding set: {e}"))?;
        caps::clear(None, CapSet::Inheritable)
            .map_err(|e| format!("inheritable capabilities: {e}"))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient capabilities: {e}"))?;
        status.capabilities_dropped = true;
    }
    if let Some((uid, gid)) = spec.run_as {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        setgroups(&[Gid::from_raw(gid)]).map_err(|e| format!("setgroups: {e}"))?;
        setgid(Gid::from_raw(gid)).map_err(|e| format!("setgid {gid}: {e}"))?;
        setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid {uid}: {e}"))?;
    }
    match ruleset {
        Some(ruleset) => {
            let restricted = ruleset
                .restrict_self()
                .map_err(|e| format!("Landlock: {e}"))?;
            status.no_new_privs = restricted.no_new_privs;
            status.landlock = match restricted.ruleset {
                RulesetStatus::FullyEnforced => "full",
                RulesetStatus::PartiallyEnforced => "partial",
                RulesetStatus::NotEnforced => "unavailable",
            }
            .to_owned();
        }
        None => {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
            status.no_new_privs = true;
        }
    }
    status.uid = nix::unistd::getuid().as_raw();
    status.gid = nix::unistd::getgid().as_raw();
    Ok(status)
}

/// The ruleset of `spec.policy`: every file-system right handled, the policy's paths granted;
/// signals and abstract unix sockets scoped to the sandbox. Paths that do not exist are noted
/// in `skipped`.
fn ruleset(
    spec: &Spec,
    skipped: &mut Vec<std::path::PathBuf>,
) -> Result<RulesetCreated, landlock::RulesetError> {
    let all = AccessFs::from_all(ABI);
    let read = AccessFs::from_read(ABI);
    let mut ruleset = Ruleset::default()
        .handle_access(all)?
        .scope(Scope::from_all(ABI))?
        .create()?;
    for (paths, access) in [(&spec.policy.read, read), (&spec.policy.write, all)] {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else {
                skipped.push(path.clone());
                continue;
            };
            let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
            ruleset = ruleset.add_rule(PathBeneath::new(fd, for_file_type(access, is_dir)))?;
        }
    }
    Ok(ruleset)
}

/// The rights that apply to a file of this kind: a file cannot be given rights on its entries.
fn for_file_type(access: BitFlags<AccessFs>, is_dir: bool) -> BitFlags<AccessFs> {
    if is_dir {
        access
    } else {
        access & AccessFs::from_file(ABI)
    }
}
