//! What a process that supervises runs (`serve`, `dispatch --once`) does to itself first, so
//! that the runs it starts cannot reach what they do not own.

use crate::config::Instance;
use crate::exit::CliError;
use mission_engine::Settings;
use mission_engine::sandbox::Landlock;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The lock file in the data folder, held by the instance's one server.
pub const LOCK_FILE: &str = "serve.lock";

/// Takes the instance's server lock (`DATA/serve.lock`, an exclusive `flock` held until the
/// process exits), or refuses: a second server would steal the first one's wake socket and
/// recover its live runs as orphans.
pub fn lock_instance(data_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, CliError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(data_dir)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", data_dir.display())))?;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CliError::internal(format!("{}: {e}", path.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = writeln!(lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(CliError::usage(format!(
                "another `mission serve` (pid {}) is running for this instance: {} is locked",
                pid.trim(),
                path.display()
            )))
        }
    }
}

/// The data folder is the server's alone (0700; 0711 — enter, not list — when a worker's runs
/// run as another user and must reach their own folders in it); the store is 0600.
pub fn secure_data_dir(instance: &Instance) -> Result<(), CliError> {
    let shared = instance
        .workforce
        .workers()
        .any(|(_, worker)| worker.run_as.is_some());
    let mode = if shared { 0o711 } else { 0o700 };
    let chmod = |path: &Path, mode: u32| match std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(mode),
    ) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::internal(format!("{}: {e}", path.display()))),
    };
    chmod(&instance.data_dir, mode)?;
    for dir in ["runs", "workspaces", "homes"] {
        chmod(&instance.data_dir.join(dir), mode)?;
    }
    // A PostgreSQL store keeps its files in its own server's folder.
    if let crate::config::StoreLocation::Sqlite(store) = &instance.store {
        let store = store.as_os_str().to_owned();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = store.clone();
            path.push(suffix);
            chmod(Path::new(&path), 0o600)?;
        }
    }
    Ok(())
}

/// Marks this process non-dumpable (a run of the same user cannot read its memory or its
/// `/proc/PID/environ`, where the workers' secrets are) and a child subreaper (a run's process
/// that leaves its group — `setsid`, a double fork — becomes this process's child, to be killed
/// with its run and reaped).
pub fn harden() -> Result<(), CliError> {
    use nix::sys::prctl;
    prctl::set_dumpable(false).map_err(|e| CliError::internal(format!("PR_SET_DUMPABLE: {e}")))?;
    prctl::set_child_subreaper(true)
        .map_err(|e| CliError::internal(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    Ok(())
}

/// Says once how runs will be sandboxed; a missing Landlock is a warning: runs start anyway,
/// unsandboxed (their capabilities are still dropped).
pub fn report_sandbox(settings: &Settings) {
    match &settings.sandbox.landlock {
        Landlock::Available { abi } => {
            tracing::info!(landlock.abi = abi, "runs are sandboxed with Landlock")
        }
        Landlock::Unavailable { reason } => tracing::warn!(
            %reason,
            "the sandbox is OFF: this kernel has no Landlock, so runs can read and write whatever their user can"
        ),
        Landlock::Unknown => {}
    }
    let off: Vec<String> = settings
        .workforce
        .workers()
        .filter(|(_, worker)| worker.sandbox == mission_core::config::SandboxMode::Off)
        .map(|(name, _)| name.to_string())
        .collect();
    if !off.is_empty() {
        tracing::warn!(workers = %off.join(", "), "the sandbox is off for these workers (sandbox = \"off\")");
    }
}
