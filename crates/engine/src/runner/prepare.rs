//! Before a run is watched: its workspace, its run folder (ticket, answer and prompt files, the
//! private temp folder, the log), its home, the command of its runtime and the sandbox it runs
//! in; then its process, started through the launcher and recorded.

use super::log::Log;
use super::{Runner, ticket_text};
use crate::process;
use crate::prompt::PromptContext;
use crate::sandbox::{self, Confinement};
use crate::workspace::{self, Workspace};
use mission_agents::{CommandSpec, LaunchSpec, Resume, Stdin};
use mission_core::config::{HomeMode, RuntimeKind, WorkerConfig};
use mission_core::{FailureClass, Lane, Run};
use mission_store::{RunEnd, RunStart};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Child;

/// A run ready to start: everything it needs that does not depend on its process.
pub(super) struct Prepared {
    pub(super) workspace: Workspace,
    pub(super) log_path: PathBuf,
    pub(super) log: Log,
    pub(super) runtime: RuntimeKind,
    /// The program to start, resolved.
    pub(super) program: PathBuf,
    pub(super) command: CommandSpec,
    /// The run's environment, without its token.
    pub(super) env: Vec<(String, String)>,
    /// The run's sandbox (`None`: no launcher configured, the run starts unconfined).
    pub(super) confine: Option<sandbox::Spec>,
    /// The protected branch of the workspace's repository and its commit before the run.
    pub(super) protected: Option<(String, String)>,
    /// The run's callback socket (`RUN_DIR/mission.sock`), bound, to be served while it runs.
    pub(super) callbacks: Option<tokio::net::UnixListener>,
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

/// What a run's start writes and looks up on disk before its process exists, done on one
/// blocking thread: the run folder and its private temp folder, the ticket, answer and prompt
/// files (only their owner can read them: they hold ticket text and answers), the worker's
/// private home, the program's lookup, the log file, the workspace's git folders and the
/// callback socket.
struct RunFiles {
    run_dir: PathBuf,
    tmp_dir: PathBuf,
    ticket: (PathBuf, Vec<u8>),
    answer: Option<(PathBuf, Vec<u8>)>,
    prompt: (PathBuf, Vec<u8>),
    /// A private home to make, and the runtime it is seeded for.
    home: Option<(PathBuf, RuntimeKind)>,
    /// The program as named, and the run's `PATH` to look a bare name up on.
    program: PathBuf,
    path: Option<String>,
    log_path: PathBuf,
    workspace: PathBuf,
}

/// What `RunFiles::write` made and found.
struct Written {
    program: PathBuf,
    log: std::fs::File,
    access: sandbox::WorkspaceAccess,
    callbacks: std::os::unix::net::UnixListener,
}

impl RunFiles {
    /// Blocking. The first failure is the run's end, naming the path.
    fn write(self) -> Result<Written, Box<RunEnd>> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        sandbox::make_private_dir_now(&self.tmp_dir).map_err(|e| io_failed(&self.tmp_dir, e))?;
        for (path, bytes) in std::iter::once(&self.ticket).chain(&self.answer) {
            sandbox::write_private_now(path, bytes).map_err(|e| io_failed(path, e))?;
        }
        if let Some((home, runtime)) = &self.home {
            sandbox::make_private_dir_now(home).map_err(|e| io_failed(home, e))?;
            seed_home(home, *runtime);
        }
        let (prompt_file, prompt) = &self.prompt;
        sandbox::write_private_now(prompt_file, prompt).map_err(|e| io_failed(prompt_file, e))?;
        let looked_up = self.program.to_string_lossy();
        let program =
            sandbox::resolve_program(&looked_up, self.path.as_deref()).ok_or_else(|| {
                failed(
                    FailureClass::RuntimeMissing,
                    format!(
                        "cannot start {}: not found, or not an executable file",
                        self.program.display()
                    ),
                )
            })?;
        let log = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.log_path)
            .map_err(|e| io_failed(&self.log_path, e))?;
        let access = sandbox::WorkspaceAccess::of(&self.workspace);
        // The run's callback socket, for its user alone.
        let socket = self.run_dir.join(crate::callback::SOCKET_FILE);
        let _ = std::fs::remove_file(&socket);
        let (_handle, address) =
            crate::callback::address(&self.run_dir).map_err(|e| io_failed(&self.run_dir, e))?;
        let callbacks = std::os::unix::net::UnixListener::bind(&address)
            .and_then(|listener| {
                std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .map_err(|e| io_failed(&socket, e))?;
        Ok(Written {
            program,
            log,
            access,
            callbacks,
        })
    }
}

impl Runner {
    /// Prepares `run`: the ticket and the worker, the workspace, the run folder with the ticket
    /// file (and, resuming, the answer file), the prompt, the log, the command and the sandbox.
    /// `Err` is the end of a run that cannot be prepared.
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
        let run_as = match &worker.run_as {
            Some(user) => Some(
                sandbox::run_as_user(user)
                    .map_err(|detail| failed(FailureClass::RuntimeMissing, detail))?,
            ),
            None => None,
        };
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
        let tmp_dir = run_dir.join("tmp");
        let ticket_file = run_dir.join("ticket.md");
        let mut ticket_bytes = ticket_text(&ticket);
        let answer_file = run_dir.join("answer.md");
        let mut answer_bytes = None;
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
                // An agent whose session cannot be resumed starts afresh: its ticket text then
                // carries the question and the answer.
                let resumable = context
                    .session_id
                    .as_deref()
                    .is_some_and(mission_agents::valid_session_id);
                if !resumable && worker.runtime != RuntimeKind::Shell {
                    ticket_bytes.extend_from_slice(b"\n\n---\n");
                    ticket_bytes.extend_from_slice(text.as_bytes());
                }
                answer_bytes = Some(text.into_bytes());
            }
            context
        } else {
            None
        };

        let home = sandbox::home_of(&self.settings, run.worker.as_str(), &worker);
        let prompt_file = run_dir.join("prompt.md");
        let branch = workspace
            .repo
            .as_ref()
            .map(|_| workspace::branch_name(&run.ticket));
        let context = PromptContext {
            ticket: run.ticket.to_string(),
            attempt: u32::try_from(run.attempt.get()).unwrap_or(u32::MAX),
            worker: run.worker.to_string(),
            ticket_file: ticket_file.display().to_string(),
            resume: resume_context.is_some(),
            answer_file: resume_context
                .as_ref()
                .map(|_| answer_file.display().to_string()),
            workspace: workspace.path.display().to_string(),
            branch,
            mission: self.settings.mission_bin.display().to_string(),
            run_dir: run_dir.display().to_string(),
        };
        let prompt = self
            .settings
            .prompts
            .for_worker(&run.worker)
            .render(&context)
            .map_err(|e| failed(FailureClass::RuntimeMissing, format!("prompt: {e}")))?;

        let session = resume_context.as_ref().and_then(|c| c.session_id.clone());
        let spec = LaunchSpec {
            runtime: worker.runtime,
            command: &worker.command,
            args: &worker.args,
            model: worker.model.as_deref(),
            ticket_file: &ticket_file,
            prompt_file: &prompt_file,
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
        let env = self.environment(run, &worker, &home, &tmp_dir, &ticket_file, &run_dir);
        let log_path = run_dir.join("output.log");

        // The run folder's files, the home, the program's lookup, the log and the callback
        // socket: one trip to the blocking pool, not one per file.
        let files = RunFiles {
            run_dir: run_dir.clone(),
            tmp_dir: tmp_dir.clone(),
            ticket: (ticket_file.clone(), ticket_bytes),
            answer: answer_bytes.map(|bytes| (answer_file.clone(), bytes)),
            prompt: (prompt_file.clone(), prompt.into_bytes()),
            home: (worker.home == HomeMode::Private).then(|| (home.clone(), worker.runtime)),
            program: self.resolve_program(&command.program),
            path: env
                .iter()
                .find(|(name, _)| name == "PATH")
                .map(|(_, value)| value.clone()),
            log_path: log_path.clone(),
            workspace: workspace.path.clone(),
        };
        let written = tokio::task::spawn_blocking(move || files.write())
            .await
            .map_err(|e| failed(FailureClass::AgentError, format!("preparing the run: {e}")))?
            .map_err(|end| *end)?;
        let log = Log::from_std(written.log, self.settings.dispatch.log_cap_bytes);
        let program = written.program;
        let confine = match &self.settings.sandbox.launcher {
            Some(_) => Some(self.spec(
                &worker,
                &written.access,
                &run_dir,
                &home,
                &program,
                &command,
                &env,
                run_as,
            )),
            None => None,
        };
        let callbacks = tokio::net::UnixListener::from_std(written.callbacks)
            .map_err(|e| io_failed(&run_dir.join(crate::callback::SOCKET_FILE), e))?;
        if let Some((uid, gid)) = run_as {
            // The run's user must reach its folders: the folders above them may be entered (not
            // listed) by others.
            let ticket_runs = run_dir.parent().map(Path::to_owned);
            let data_dir = self.settings.runs_dir.parent().map(Path::to_owned);
            let passages = [
                data_dir,
                Some(self.settings.runs_dir.clone()),
                ticket_runs,
                Some(self.settings.workspaces_dir.clone()),
                Some(self.settings.sandbox.homes_dir.clone()),
            ];
            for dir in passages.into_iter().flatten() {
                use std::os::unix::fs::PermissionsExt;
                let _ =
                    tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).await;
            }
            let mut owned = vec![run_dir.clone(), workspace.path.clone()];
            if worker.home == HomeMode::Private {
                owned.push(home.clone());
            }
            give_to(owned, uid, gid).await?;
        }
        let protected = match &workspace.repo {
            Some(repo) => workspace::protected_branch(repo).await,
            None => None,
        };
        Ok(Prepared {
            workspace,
            log_path,
            log,
            runtime: worker.runtime,
            program,
            command,
            env,
            confine,
            protected,
            callbacks: Some(callbacks),
        })
    }

    /// The run's sandbox: the program and what it may touch.
    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        worker: &WorkerConfig,
        access: &sandbox::WorkspaceAccess,
        run_dir: &Path,
        home: &Path,
        program: &Path,
        command: &CommandSpec,
        env: &[(String, String)],
        run_as: Option<(u32, u32)>,
    ) -> sandbox::Spec {
        Confinement {
            worker,
            workspace: access,
            run_dir,
            home,
            program,
            arg0: &command.program,
            env,
            run_as,
        }
        .spec(&self.settings)
    }

    /// Starts the prepared run's process — through the launcher, which sandboxes it — in its
    /// workspace, as the leader of a new process group with the run's environment, serves its
    /// callbacks, and records the start. `Err` is the end of a run whose process could not be
    /// started (or was stopped because its start could not be recorded).
    pub(super) async fn start(
        &self,
        run: &Run,
        token: &str,
        prepared: &Prepared,
    ) -> Result<(Child, i64), RunEnd> {
        let Prepared {
            workspace,
            log_path,
            program,
            command,
            env,
            confine,
            ..
        } = prepared;
        let mut cmd = match confine {
            Some(spec) => sandbox::confine(&self.settings, spec.clone(), &command.args)
                .await
                .map_err(|e| failed(FailureClass::AgentError, format!("sandbox: {e}")))?,
            None => sandbox::Confined::direct(program, &command.args),
        };
        cmd.current_dir(&workspace.path)
            .env_clear()
            .envs(env.iter().cloned())
            .env("MISSION_RUN_TOKEN", token)
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
        let mut child = match cmd.spawn().await {
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
        // The agent runs, and its pid is not stored yet: recovery must find it by its run.
        super::crash_point("run-spawned");
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

/// Seeds a worker's private home with what its CLI needs and cannot make itself: for Codex, the
/// server's `config.toml` (its model providers; never `auth.json`), once. Best effort; blocking.
fn seed_home(home: &Path, runtime: RuntimeKind) {
    if runtime != RuntimeKind::Codex {
        return;
    }
    let source = match (std::env::var_os("CODEX_HOME"), std::env::var_os("HOME")) {
        (Some(codex_home), _) => PathBuf::from(codex_home).join("config.toml"),
        (None, Some(real_home)) => PathBuf::from(real_home).join(".codex/config.toml"),
        (None, None) => return,
    };
    seed_codex_config(home, &source);
}

/// Copies Codex's `source` configuration into `home`, unless it has one already.
fn seed_codex_config(home: &Path, source: &Path) {
    let target = home.join(".codex/config.toml");
    if std::fs::exists(&target).unwrap_or(true) {
        return;
    }
    if let Ok(text) = std::fs::read(source)
        && sandbox::make_private_dir_now(&home.join(".codex")).is_ok()
    {
        let _ = sandbox::write_private_now(&target, &text);
    }
}

/// Gives the run's folders (recursively) to its user.
async fn give_to(paths: Vec<PathBuf>, uid: u32, gid: u32) -> Result<(), RunEnd> {
    sandbox::give_to(paths, uid, gid).await.map_err(|detail| {
        failed(
            FailureClass::AgentError,
            format!("giving the run's folders to its user: {detail}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_home_gets_codexs_configuration_once_and_for_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("server-config.toml");
        std::fs::write(&source, "model = \"o3\"\n").unwrap();
        let home = dir.path().join("home");
        sandbox::make_private_dir_now(&home).unwrap();
        seed_codex_config(&home, &source);
        let target = home.join(".codex/config.toml");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "model = \"o3\"\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&target), mode(&home.join(".codex"))), (0o600, 0o700));
        // The worker's own edits are kept.
        std::fs::write(&target, "model = \"mine\"\n").unwrap();
        seed_codex_config(&home, &source);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "model = \"mine\"\n"
        );
        // No server configuration: nothing is made.
        let bare = dir.path().join("bare");
        seed_codex_config(&bare, &dir.path().join("missing.toml"));
        assert!(!bare.join(".codex").exists());
    }
}
