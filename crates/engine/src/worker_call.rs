//! A worker run for something other than a ticket's attempt: reviewing a ticket (auto-review)
//! or acting on an inbox item (inbox-drain). The worker's runtime is started with a prompt file
//! the harness wrote (its text is data in a file, never argv or a shell), in a folder of its
//! own, as the leader of a new process group, with the allow-listed environment and a token
//! that names only this call. Its time limit kills the whole group; nothing it starts outlives
//! it. What it did is read from the store afterwards, never from its output.

use crate::process;
use crate::runner::base_environment;
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

/// Runs the call to its end.
pub async fn run(settings: &Settings, call: Call<'_>) -> Result<CallEnd, String> {
    let worker = settings
        .workforce
        .worker(call.worker)
        .filter(|w| w.enabled)
        .ok_or_else(|| format!("{} is not an enabled worker", call.worker))?;
    tokio::fs::create_dir_all(&call.dir)
        .await
        .map_err(|e| format!("{}: {e}", call.dir.display()))?;
    let prompt_file = call.dir.join("prompt.md");
    tokio::fs::write(&prompt_file, call.prompt)
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
    let program = resolve(settings, &command.program);
    let output = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let errors = output
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&command.args)
        .current_dir(&call.dir)
        .env_clear()
        .envs(base_environment(settings))
        .env("MISSION_RUN_TOKEN", call.token)
        .env("MISSION_CALL", call.purpose.as_str())
        .env("MISSION_TICKET_FILE", &prompt_file)
        .env("MISSION_RUN_DIR", &call.dir)
        .env("MISSION_WORKER", call.worker.as_str())
        .process_group(0)
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(errors))
        .kill_on_drop(true);
    if let Some(ticket) = call.ticket {
        cmd.env("MISSION_TICKET", ticket.to_string());
    }
    if let Some(item) = call.item {
        cmd.env("MISSION_INBOX_ITEM", item.to_string());
    }
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

fn resolve(settings: &Settings, program: &str) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        settings.instance_dir.join(path)
    } else {
        path.to_owned()
    }
}
