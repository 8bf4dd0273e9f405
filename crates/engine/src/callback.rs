//! Run callbacks over the run's own socket.
//!
//! A sandboxed run can read neither the configuration nor the store, so `mission run ask |
//! progress | submit | evidence` inside a run does not open them: it sends its request to the socket its
//! supervisor (the runner, in the server or in `dispatch --once`) listens on for that run —
//! `RUN_DIR/mission.sock`, named by `MISSION_RUN_SOCKET` — and the runner carries it out through
//! the same use cases (`App::run_ask` …), fenced by the same token and attempt.
//!
//! The protocol is one JSON line each way: a [`Request`], then a [`Response`].

use crate::app::EvidenceRequest;
use crate::app::{App, AppError, ErrorKind};
use mission_core::review::ReviewDecision;
use mission_core::{ActionKind, InboxId, RunId};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The socket's file name in the run folder.
pub const SOCKET_FILE: &str = "mission.sock";

/// Longest request line (a question or progress report is far shorter; the use cases check).
const MAX_REQUEST: u64 = 1024 * 1024;

/// How long a callback waits for its answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a run asks of its supervisor. The first four are a ticket's run's; `Review` is a
/// reviewer's (auto-review), `InboxAct` an inbox handler's (inbox-drain).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Action {
    Ask {
        text: String,
    },
    Progress {
        text: String,
    },
    Submit,
    Evidence {
        evidence: EvidenceRequest,
    },
    Review {
        decision: ReviewDecision,
        reason: String,
    },
    InboxAct {
        item: InboxId,
        action: ActionKind,
        text: Option<String>,
    },
}

impl Action {
    fn is_a_tickets_run(&self) -> bool {
        !matches!(self, Action::Review { .. } | Action::InboxAct { .. })
    }
}

/// Whose socket this is: a ticket's run's, or a worker call's (which holds its own token).
#[derive(Clone, Debug)]
pub enum Scope {
    Run(RunId),
    Call { token: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub token: String,
    #[serde(flatten)]
    pub action: Action,
}

/// What a carried-out action answers: its JSON (`--json`), its line for people (may be empty),
/// and whether the answer is negative (exit 1: evidence that did not verify).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub value: serde_json::Value,
    #[serde(default)]
    pub line: String,
    #[serde(default)]
    pub negative: bool,
}

/// The answer, or the error's kind and message.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    fn error(error: &AppError) -> Response {
        Response {
            ok: false,
            kind: Some(error.kind.as_str().to_owned()),
            message: Some(error.message().to_owned()),
            ..Response::default()
        }
    }

    /// The answer, or the error this response carries.
    pub fn into_result(self) -> Result<Answer, AppError> {
        if self.ok {
            return Ok(self.answer.unwrap_or_default());
        }
        let kind = match self.kind.as_deref() {
            Some("invalid") => ErrorKind::Invalid,
            Some("not_found") => ErrorKind::NotFound,
            Some("conflict") => ErrorKind::Conflict,
            Some("refused") => ErrorKind::Refused,
            Some("unavailable") => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Err(AppError::new(
            kind,
            self.message
                .unwrap_or_else(|| "the run's supervisor refused".into()),
        ))
    }
}

/// The address to bind or connect to for the socket in `dir`: the path itself, or — when it is
/// too long for a unix socket address — the same file reached through `/proc/self/fd/N` of an
/// open handle of `dir`, which must be kept open while binding or connecting.
pub fn address(dir: &Path) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    let path = dir.join(SOCKET_FILE);
    // sun_path holds 108 bytes with the terminating NUL.
    if path.as_os_str().len() < 100 {
        return Ok((None, path));
    }
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}/{SOCKET_FILE}",
        handle.as_raw_fd()
    ));
    Ok((Some(handle), short))
}

/// Sends `request` to the run's socket in `run_dir` and waits for the answer. Blocking.
pub fn call(run_dir: &Path, request: &Request) -> Result<Answer, AppError> {
    let unavailable = |e: std::io::Error| {
        AppError::new(
            ErrorKind::Unavailable,
            format!("the run's supervisor cannot be reached: {e}"),
        )
    };
    let (_handle, address) = address(run_dir).map_err(unavailable)?;
    let mut stream = std::os::unix::net::UnixStream::connect(&address).map_err(unavailable)?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(unavailable)?;
    let mut line = serde_json::to_vec(request).map_err(|e| AppError::internal(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(unavailable)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(unavailable)?;
    let response: Response = serde_json::from_str(&answer).map_err(|e| {
        AppError::new(
            ErrorKind::Unavailable,
            format!("the run's supervisor gave no valid answer: {e}"),
        )
    })?;
    response.into_result()
}

/// Serves the callbacks of `scope` on `listener` in a task of its own, until the returned guard
/// is dropped (the run or call is over).
pub fn serve_while(listener: tokio::net::UnixListener, app: App, scope: Scope) -> Serving {
    Serving(tokio::spawn(serve(listener, app, scope)))
}

/// The callback server of a run or call; dropping it stops the server.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the callbacks of `scope` on `listener` until the task is aborted. Each connection is
/// one request, carried out through `app`; a token of another run or call, or an action that is
/// not this scope's, is refused.
pub async fn serve(listener: tokio::net::UnixListener, app: App, scope: Scope) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: try again soon rather than spin.
                tracing::warn!(?scope, %error, "accepting a callback failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &app, &scope)).await;
        });
    }
}

async fn answer(stream: tokio::net::UnixStream, app: &App, scope: &Scope) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    tokio::io::BufReader::new(read)
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line)
        .await?;
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(request) => match serve_one(app, scope, request).await {
            Ok(answer) => Response {
                ok: true,
                answer: Some(answer),
                ..Response::default()
            },
            Err(error) => Response::error(&error),
        },
        Err(error) => Response::error(&AppError::invalid(format!("not a request: {error}"))),
    };
    let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

async fn serve_one(app: &App, scope: &Scope, request: Request) -> Result<Answer, AppError> {
    let refused = || AppError::refused("the token or the action is not this socket's");
    match scope {
        Scope::Run(this_run) => {
            let run = app.run_for_token(&request.token).await?;
            if run.id != *this_run || !request.action.is_a_tickets_run() {
                return Err(refused());
            }
        }
        Scope::Call { token } => {
            if request.token != *token || request.action.is_a_tickets_run() {
                return Err(refused());
            }
        }
    }
    carry_out(app, &request.token, request.action).await
}

/// Carries out `action` under `token` through the use cases: the one implementation, whether
/// the request came over a socket or from a person holding the token.
pub async fn carry_out(app: &App, token: &str, action: Action) -> Result<Answer, AppError> {
    let state = |ticket: &mission_core::Ticket| serde_json::json!({ "ticket": ticket.id, "state": ticket.state });
    let run = match action.is_a_tickets_run() {
        true => Some(app.run_for_token(token).await?),
        false => None,
    };
    let run = || run.as_ref().expect("a ticket's run's action has its run");
    Ok(match action {
        Action::Ask { text } => Answer {
            value: state(&app.run_ask(run(), &text).await?),
            ..Answer::default()
        },
        Action::Progress { text } => {
            app.run_progress(run(), &text).await?;
            Answer {
                value: serde_json::json!({ "ticket": run().ticket, "progress": text }),
                ..Answer::default()
            }
        }
        Action::Submit => Answer {
            value: state(&app.run_submit(run()).await?),
            ..Answer::default()
        },
        Action::Evidence { evidence } => {
            let record = app.run_evidence(run(), evidence).await?;
            // Recorded either way; whether it proves anything is the answer.
            Answer {
                line: format!(
                    "{} {}: {}",
                    record.evidence.summary(),
                    record.verification.status(),
                    record.verification.failure().unwrap_or("ok")
                ),
                negative: !record.verification.is_verified(),
                value: json(&record)?,
            }
        }
        Action::Review { decision, reason } => {
            let reviewed = app.run_review(token, decision, &reason).await?;
            Answer {
                line: format!(
                    "{} {}: {}{}",
                    reviewed.ticket.id,
                    reviewed.review.outcome.as_str(),
                    reviewed.ticket.state,
                    gate_summary(reviewed.gate.as_ref())
                ),
                value: json(&reviewed)?,
                negative: false,
            }
        }
        Action::InboxAct { item, action, text } => {
            let acted = app.inbox_act_in_run(token, item, action, text).await?;
            Answer {
                line: format!(
                    "inbox item {} {}{}",
                    acted.item.id,
                    acted.item.status,
                    gate_summary(acted.gate.as_ref())
                ),
                value: json(&acted)?,
                negative: false,
            }
        }
    })
}

fn json(value: &impl Serialize) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(value).map_err(|e| AppError::internal(e.to_string()))
}

/// What the gate said after an approval, in a few words.
fn gate_summary(closing: Option<&crate::gatekeeper::Closing>) -> String {
    match closing {
        None => String::new(),
        Some(closing) if closing.done => format!("; {} done", closing.ticket.id),
        Some(closing) => format!(
            "; {} stays in {} ({})",
            closing.ticket.id,
            closing.ticket.state,
            closing.missing.join("; ")
        ),
    }
}
