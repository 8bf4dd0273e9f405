//! A worker run for something other than a ticket's attempt: reviewing a ticket (auto-review)
//! or acting on an inbox item (inbox-drain). The worker's runtime is started with a prompt file
//! the harness wrote (its text is data in a file, never argv or a shell), in a folder of its
//! own, as the leader of a new process group, with the allow-listed environment and a token
//! that names only this call — and in the worker's sandbox, like its ticket runs: its folder is
//! its workspace, nothing of the instance is within reach, and its verdict or action goes over
//! its own callback socket (`DIR/mission.sock`, served here while it runs). Its time limit
//! kills the whole group; nothing it starts outlives it. What it did is read from the store
//! afterwards, never from its output.

use crate::app::App;
use crate::callback;
use crate::process;
use crate::runner::base_environment;
use crate::sandbox;
use crate::settings::Settings;
use mission_agents::{LaunchSpec, Stdin};
use mission_core::{InboxId, Name, TicketId};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// What a call is for; its string is `MISSION_CALL` in the worker's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Review,
    Inbox,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Review => "review",
            Purpose::Inbox => "inbox",
        }
    }
}

pub struct Call<'a> {
    pub worker: &'a Name,
    pub purpose: Purpose,
    /// The folder of this call: prompt, log.
    pub dir: PathBuf,
    pub prompt: &'a str,
    /// The call's token (its hash is in the store, with the review request or delivery).
    pub token: &'a str,
    pub ticket: Option<&'a TicketId>,
    pub item: Option<InboxId>,
    pub timeout: Duration,
}

/// How a call ended.
#[derive(Clone, Debug)]
pub struct CallEnd {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub log: PathBuf,
}

/// Runs the call to its end, serving its callbacks through `app`.
pub async fn run(app: &App, call: Call<'_>) -> Result<CallEnd, String> {
    let settings = app.settings();
    let worker = settings
        .workforce
        .worker(call.worker)
        .filter(|w| w.enabled)
        .ok_or_else(|| format!("{} is not an enabled worker", call.worker))?;
    let tmp_dir = call.dir.join("tmp");
    sandbox::make_private_dir(&tmp_dir)
        .await
        .map_err(|e| format!("{}: {e}", call.dir.display()))?;
    let prompt_file = call.dir.join("prompt.md");
    sandbox::write_private(&prompt_file, call.prompt.as_bytes())
        .await
        .map_err(|e| format!("{}: {e}", prompt_file.display()))?;
    let log = call.dir.join("output.log");
    let spec = LaunchSpec {
        runtime: worker.runtime,
        command: &worker.command,
        args: &worker.args,
        model: worker.model.as_deref(),
        ticket_file: &prompt_file,
        prompt_file: &prompt_file,
        resume: None,
    };
    let command = mission_agents::command(&spec);
    let home = sandbox::worker_home(settings, call.worker.as_str(), worker)
        .await
        .map_err(|e| format!("the home of {}: {e}", call.worker))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut env = base_environment(settings);
    env.retain(|(n, _)| n != "HOME" && n != "TMPDIR");
    env.extend([
        ("HOME".to_owned(), path(&home)),
        ("TMPDIR".to_owned(), path(&tmp_dir)),
        ("MISSION_BIN".to_owned(), path(&settings.mission_bin)),
        ("MISSION_CALL".to_owned(), call.purpose.as_str().to_owned()),
        ("MISSION_TICKET_FILE".to_owned(), path(&prompt_file)),
        ("MISSION_PROMPT_FILE".to_owned(), path(&prompt_file)),
        ("MISSION_RUN_DIR".to_owned(), path(&call.dir)),
        (
            "MISSION_RUN_SOCKET".to_owned(),
            path(&call.dir.join(callback::SOCKET_FILE)),
        ),
        ("MISSION_WORKER".to_owned(), call.worker.to_string()),
    ]);
    if let Some(ticket) = call.ticket {
        env.push(("MISSION_TICKET".to_owned(), ticket.to_string()));
    }
    if let Some(item) = call.item {
        env.push(("MISSION_INBOX_ITEM".to_owned(), item.to_string()));
    }
    for (name, value) in &worker.env {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.expose().to_owned()));
    }
    let named = resolve(settings, &command.program);
    let search = env
        .iter()
        .find(|(n, _)| n == "PATH")
        .map(|(_, v)| v.clone());
    let looked_up = named.to_string_lossy().into_owned();
    let program = tokio::task::spawn_blocking(move || {
        sandbox::resolve_program(&looked_up, search.as_deref())
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| format!("cannot start {}: not found", named.display()))?;
    let run_as = worker
        .run_as
        .as_deref()
        .map(sandbox::run_as_user)
        .transpose()?;
    let listener = bind_callbacks(&call.dir)?;
    if let Some((uid, gid)) = run_as {
        sandbox::give_to(vec![call.dir.clone()], uid, gid).await?;
    }
    let workspace = sandbox::workspace_access(&call.dir).await;
    let confinement = sandbox::Confinement {
        worker,
        workspace: &workspace,
        run_dir: &call.dir,
        home: &home,
        program: &program,
        arg0: &command.program,
        env: &env,
        run_as,
    };
    let mut cmd = confinement
        .command(settings, &command.args)
        .await
        .map_err(|e| format!("the call's sandbox: {e}"))?;
    let output = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let errors = output
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.current_dir(&call.dir)
        .env("MISSION_RUN_TOKEN", call.token)
        .process_group(0)
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(errors))
        .kill_on_drop(true);
    let _callbacks = callback::serve_while(
        listener,
        app.clone(),
        callback::Scope::Call {
            token: call.token.to_owned(),
        },
    );
    match &command.stdin {
        Stdin::Null => {
            cmd.stdin(Stdio::null());
        }
        Stdin::File(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            cmd.stdin(Stdio::from(file));
        }
    }
    let mut child = cmd
        .spawn()
        .await
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let pid = i64::from(child.id().unwrap_or_default());
    let (exit_code, timed_out) = match tokio::time::timeout(call.timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(error)) => return Err(format!("waiting for {}: {error}", call.worker)),
        Err(_) => {
            process::terminate_group(pid, settings.dispatch.kill_grace).await;
            let _ = child.wait().await;
            (None, true)
        }
    };
    // Nothing of the call outlives it.
    process::kill_leftovers(pid);
    Ok(CallEnd {
        exit_code,
        timed_out,
        log,
    })
}

/// Binds the call's callback socket in its folder, for its user alone.
fn bind_callbacks(dir: &Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(callback::SOCKET_FILE);
    let _ = std::fs::remove_file(&path);
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let (_handle, address) = callback::address(dir).map_err(failed)?;
    let listener = tokio::net::UnixListener::bind(&address).map_err(failed)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

fn resolve(settings: &Settings, program: &str) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        settings.instance_dir.join(path)
    } else {
        path.to_owned()
    }
}
