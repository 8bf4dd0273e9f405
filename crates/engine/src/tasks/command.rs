//! `command` tasks: the body run as an `sh` script in the instance folder, in its own process
//! group, with the runs' allow-listed environment. A last output line
//! `{"outcome": …, "reason": …, "counts": {…}}` reports the outcome; otherwise exit 0 is `acted`
//! and any other exit `failed`. A non-zero exit is `failed` whatever the line says.

use super::TaskContext;
use crate::error::EngineError;
use crate::process;
use mission_core::task::{Outcome, TaskResult, TaskSpec};
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// Most output kept to look for the outcome line.
const OUTPUT_CAP: usize = 1024 * 1024;

/// Kills the task's process group if the run is dropped (timeout, replacement, shutdown).
struct GroupGuard(Option<i64>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub(super) async fn run(
    context: &TaskContext,
    spec: &TaskSpec,
    run: i64,
) -> Result<TaskResult, EngineError> {
    let settings = &context.settings;
    let dir = settings.runs_dir.join("tasks").join(spec.name.as_str());
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| EngineError::io(&dir, e))?;
    let script = dir.join(format!("{run}.sh"));
    tokio::fs::write(&script, &spec.body)
        .await
        .map_err(|e| EngineError::io(&script, e))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg(&script)
        .current_dir(&settings.instance_dir)
        .env_clear()
        .envs(crate::runner::base_environment(settings))
        .env("MISSION_TASK", spec.name.as_str())
        .env("MISSION_TASK_RUN", run.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| EngineError::process("cannot start sh", e))?;
    let pid = i64::from(child.id().unwrap_or_default());
    let mut guard = GroupGuard(Some(pid));
    let _ = context.store.set_task_run_pid(run, pid).await;
    let mut stdout = child.stdout.take().expect("piped");
    let mut output = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if output.len() < OUTPUT_CAP {
                    output.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| EngineError::process("waiting for the script", e))?;
    process::kill_leftovers(pid);
    guard.0 = None;
    let reported = last_outcome_line(&output);
    Ok(match (status.code(), reported) {
        (Some(0), Some(Ok(result))) => result,
        (Some(0), Some(Err(error))) => TaskResult::new(
            Outcome::Failed,
            format!("exit 0, but its outcome line is invalid: {error}"),
        ),
        (Some(0), None) => TaskResult::new(Outcome::Acted, "exit 0"),
        (Some(code), _) => TaskResult::new(Outcome::Failed, format!("exit code {code}"))
            .count("exit_code", i64::from(code)),
        (None, _) => {
            use std::os::unix::process::ExitStatusExt;
            TaskResult::new(
                Outcome::Failed,
                format!("killed by signal {}", status.signal().unwrap_or(0)),
            )
        }
    })
}

/// The outcome line: the last non-empty output line, when it is a JSON object with "outcome".
fn last_outcome_line(output: &[u8]) -> Option<Result<TaskResult, String>> {
    let text = String::from_utf8_lossy(output);
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let value: serde_json::Value = serde_json::from_str(last.trim()).ok()?;
    value.get("outcome")?;
    Some(
        serde_json::from_value::<TaskResult>(serde_json::json!({
            "outcome": value["outcome"],
            "reason": value.get("reason").cloned().unwrap_or_else(|| "reported by the script".into()),
            "counts": value.get("counts").cloned().unwrap_or_else(|| serde_json::json!({})),
        }))
        .map_err(|e| e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_lines() {
        let got = |text: &str| {
            last_outcome_line(text.as_bytes())
                .map(|r| r.map(|t| (t.outcome, t.reason, t.counts.len())))
        };
        assert_eq!(got("hello\n"), None);
        assert_eq!(
            got(
                "working\n{\"outcome\": \"degraded\", \"reason\": \"review skipped\", \"counts\": {\"skipped\": 1}}\n\n"
            ),
            Some(Ok((Outcome::Degraded, "review skipped".to_owned(), 1)))
        );
        assert_eq!(
            got("{\"outcome\": \"noop\"}"),
            Some(Ok((Outcome::Noop, "reported by the script".to_owned(), 0)))
        );
        assert!(matches!(got("{\"outcome\": \"great\"}"), Some(Err(_))));
        assert_eq!(got("{\"other\": 1}"), None);
    }
}
