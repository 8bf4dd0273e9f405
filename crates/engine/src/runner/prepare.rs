//! Before a run is watched: its workspace, its run folder (ticket and answer files, the log), the
//! command of its runtime, and then its process, started and recorded.

use super::log::Log;
use super::{Runner, ticket_text};
use crate::process;
use crate::workspace::{self, Workspace};
use mission_agents::{CommandSpec, LaunchSpec, Resume, Stdin};
use mission_core::config::RuntimeKind;
use mission_core::{FailureClass, Lane, Run};
use mission_store::{RunEnd, RunStart};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Child;

/// A run ready to start: everything it needs that does not depend on its process.
pub(super) struct Prepared {
    pub(super) workspace: Workspace,
    /// The run's own folder: `runs/KEY-N/ATTEMPT`.
    pub(super) run_dir: PathBuf,
    pub(super) ticket_file: PathBuf,
    pub(super) log_path: PathBuf,
    pub(super) log: Log,
    pub(super) runtime: RuntimeKind,
    /// The program to start, resolved against the instance folder.
    pub(super) program: PathBuf,
    pub(super) command: CommandSpec,
}

/// The end of a run that failed before its process could be watched.
pub(super) fn failed(class: FailureClass, detail: String) -> RunEnd {
    RunEnd {
        failure: Some(class),
        detail: Some(detail),
        ..RunEnd::default()
    }
}

/// The end of a run whose folder or files could not be written.
fn io_failed(path: &Path, error: std::io::Error) -> RunEnd {
    failed(
        FailureClass::AgentError,
        format!("{}: {error}", path.display()),
    )
}

impl Runner {
    /// Prepares `run`: the ticket and the worker, the workspace, the run folder with the ticket
    /// file (and, resuming, the answer file), the log, and the command. `Err` is the end of a run
    /// that cannot be prepared.
    pub(super) async fn prepare(&self, run: &Run) -> Result<Prepared, RunEnd> {
        let ticket =
            self.store.ticket(&run.ticket).await.map_err(|e| {
                failed(FailureClass::AgentError, format!("reading the ticket: {e}"))
            })?;
        let worker = self
            .settings
            .workforce
            .worker(&run.worker)
            .cloned()
            .ok_or_else(|| {
                failed(
                    FailureClass::RuntimeMissing,
                    format!("worker {} is no longer configured", run.worker),
                )
            })?;
        let workspace = self
            .workspaces
            .prepare(&run.ticket, ticket.repo.as_deref())
            .await
            .map_err(|e| failed(FailureClass::AgentError, format!("workspace: {e}")))?;
        tracing::debug!(ticket.id = %run.ticket, run.id = %run.id, "workspace ready");
        let run_dir = self
            .settings
            .runs_dir
            .join(run.ticket.to_string())
            .join(run.attempt.to_string());
        tokio::fs::create_dir_all(&run_dir)
            .await
            .map_err(|e| io_failed(&run_dir, e))?;
        let ticket_file = run_dir.join("ticket.md");
        tokio::fs::write(&ticket_file, ticket_text(&ticket))
            .await
            .map_err(|e| io_failed(&ticket_file, e))?;

        let answer_file = run_dir.join("answer.md");
        let resume_context = if run.lane == Lane::NeedsInput {
            let context = self.store.resume_context(&run.ticket).await.map_err(|e| {
                failed(
                    FailureClass::AgentError,
                    format!("reading the answer to resume with: {e}"),
                )
            })?;
            if let Some(context) = &context {
                let text = format!(
                    "Question: {}\n\nAnswer: {}\n",
                    context.question, context.answer
                );
                tokio::fs::write(&answer_file, &text)
                    .await
                    .map_err(|e| io_failed(&answer_file, e))?;
                // An agent whose session cannot be resumed starts afresh: its ticket text then
                // carries the question and the answer.
                if context.session_id.is_none() && worker.runtime != RuntimeKind::Shell {
                    let mut with_answer = ticket_text(&ticket);
                    with_answer.extend_from_slice(b"\n\n---\n");
                    with_answer.extend_from_slice(text.as_bytes());
                    tokio::fs::write(&ticket_file, with_answer)
                        .await
                        .map_err(|e| io_failed(&ticket_file, e))?;
                }
            }
            context
        } else {
            None
        };
        let session = resume_context.as_ref().and_then(|c| c.session_id.clone());
        let spec = LaunchSpec {
            runtime: worker.runtime,
            command: &worker.command,
            args: &worker.args,
            model: worker.model.as_deref(),
            ticket_file: &ticket_file,
            resume: match (&resume_context, &session) {
                (Some(_), Some(session_id)) => Some(Resume {
                    session_id,
                    answer_file: &answer_file,
                }),
                (Some(_), None) if worker.runtime == RuntimeKind::Shell => Some(Resume {
                    session_id: "",
                    answer_file: &answer_file,
                }),
                _ => None,
            },
        };
        let command = mission_agents::command(&spec);
        let program = self.resolve_program(&command.program);

        let log_path = run_dir.join("output.log");
        let log = Log::create(&log_path, self.settings.dispatch.log_cap_bytes)
            .await
            .map_err(|e| io_failed(&log_path, e))?;
        Ok(Prepared {
            workspace,
            run_dir,
            ticket_file,
            log_path,
            log,
            runtime: worker.runtime,
            program,
            command,
        })
    }

    /// Starts the prepared run's process, in its workspace, as the leader of a new process group
    /// with the run's environment, and records the start. `Err` is the end of a run whose
    /// process could not be started (or was stopped because its start could not be recorded).
    pub(super) async fn start(
        &self,
        run: &Run,
        token: &str,
        prepared: &Prepared,
    ) -> Result<(Child, i64), RunEnd> {
        let Prepared {
            workspace,
            run_dir,
            ticket_file,
            log_path,
            program,
            command,
            ..
        } = prepared;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&command.args)
            .current_dir(&workspace.path)
            .env_clear()
            .envs(self.environment(run, token, ticket_file, run_dir))
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        match &command.stdin {
            Stdin::Null => {
                cmd.stdin(Stdio::null());
            }
            Stdin::File(path) => {
                let file = tokio::fs::File::open(path).await.map_err(|e| {
                    failed(FailureClass::AgentError, format!("{}: {e}", path.display()))
                })?;
                cmd.stdin(file.into_std().await);
            }
        }
        let head_before = match &workspace.repo {
            Some(_) => workspace::head(&workspace.path).await,
            None => None,
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(failed(
                    FailureClass::RuntimeMissing,
                    format!("cannot start {}: {e}", program.display()),
                ));
            }
            Err(e) => {
                return Err(failed(
                    FailureClass::AgentError,
                    format!("cannot start {}: {e}", program.display()),
                ));
            }
        };
        let pid = i64::from(child.id().unwrap_or_default());
        tracing::debug!(ticket.id = %run.ticket, run.id = %run.id, pid, "spawned");
        let start = RunStart {
            pid: Some(pid),
            workspace: Some(workspace.path.to_string_lossy().into_owned()),
            head_before,
            log_path: Some(log_path.to_string_lossy().into_owned()),
        };
        if let Err(error) = self.store.run_started(run.id, run.attempt, &start).await {
            tracing::error!(ticket.id = %run.ticket, run.id = %run.id, %error, "recording the start failed; stopping the run");
            process::terminate_group(pid, self.settings.dispatch.kill_grace).await;
            let _ = child.wait().await;
            return Err(failed(
                FailureClass::Orphaned,
                format!("recording the start failed: {error}"),
            ));
        }
        Ok((child, pid))
    }
}
