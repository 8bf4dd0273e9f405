//! The Python tools some tests drive (the `standardwebhooks` verifier, `schemathesis`), from the
//! virtual environment `scripts/ensure-pytools.sh` installs: `target/pytools` in the workspace,
//! or `MISSION_PYTOOLS`. A test that needs them and finds none fails in CI (`CI=true`) and is
//! skipped with a notice elsewhere — see [`python_or_skip`].

use std::path::PathBuf;

/// The environment's python, or why there is none.
pub fn python() -> Result<PathBuf, String> {
    let venv = match std::env::var_os("MISSION_PYTOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pytools"),
    };
    let python = venv.join("bin/python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "no Python tools at {} (run scripts/ensure-pytools.sh, or set MISSION_PYTOOLS)",
            venv.display()
        ))
    }
}

/// The environment's python; `None` (after a notice naming `test`) when it is missing outside
/// CI. In CI a missing environment is a failure.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    match python() {
        Ok(path) => Some(path),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test} cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("NOTICE: {test} is skipped: {why}");
            None
        }
    }
}
