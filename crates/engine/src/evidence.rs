//! The harness observing evidence: it runs a configured test command in the ticket's
//! workspace, requests a configured route, hashes a file of the workspace, asks git about a
//! commit. What an observation proves is decided by `mission_core::evidence`; this module only
//! looks. Nothing here takes a command, URL or path from a run: a run names a configured test or
//! route, or a path that must stay inside its workspace.

use crate::git;
use crate::process;
use crate::runner::base_environment;
use crate::sandbox;
use crate::settings::Settings;
use mission_core::evidence::{
    ArtifactEvidence, CommitEvidence, FileCheck, MediaType, OutputTail, RouteEvidence, Sha256Hex,
    TestEvidence, WorkspacePath, verify_artifact, verify_commit, verify_route, verify_test,
};
use mission_core::proof::{RouteCheck, TestCommand};
use mission_core::{CommitSha, Evidence, Ticket, Timestamp, Verification};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Most bytes of a route's body read to look for the expected text.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Runs a configured test command in `workspace` and records what happened, at the commit
/// `at_commit` the workspace has checked out. The command runs as the ticket's code would: in
/// the sandbox of the ticket's worker (the same launcher and policy as its runs: it may write
/// the workspace and its own folder, nothing of the instance), its own process group, an
/// allow-listed environment, no shell. The time limit kills the whole group. A ticket with no
/// worker to confine the test as gets no test run (fail closed).
pub async fn run_test(
    settings: &Settings,
    ticket: &Ticket,
    test: &TestCommand,
    workspace: &Path,
    at_commit: Option<CommitSha>,
) -> TestEvidence {
    let started = Instant::now();
    let (exit_code, output) = match confined_test(settings, ticket, test, workspace).await {
        Err(why) => (None, format!("{why}\n").into_bytes()),
        Ok(cmd) => match cmd.spawn().await {
            Err(error) => (
                None,
                format!("cannot start {}: {error}\n", test.command[0]).into_bytes(),
            ),
            Ok(mut child) => {
                let pid = i64::from(child.id().unwrap_or_default());
                // The ticket's code decides how much it prints: only each stream's tail is kept.
                let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
                let finished = async move {
                    let (out, err, status) =
                        tokio::join!(tail_of(stdout), tail_of(stderr), child.wait());
                    status.map(|status| (status, out, err))
                };
                match tokio::time::timeout(test.timeout, finished).await {
                    Ok(Ok((status, mut bytes, err))) => {
                        process::kill_leftovers(pid);
                        bytes.extend_from_slice(&err);
                        (status.code(), bytes)
                    }
                    Ok(Err(error)) => (
                        None,
                        format!("waiting for the test: {error}\n").into_bytes(),
                    ),
                    Err(_) => {
                        process::terminate_group(pid, settings.dispatch.kill_grace).await;
                        (
                            None,
                            format!(
                                "timed out after {}\n",
                                humantime::format_duration(test.timeout)
                            )
                            .into_bytes(),
                        )
                    }
                }
            }
        },
    };
    TestEvidence {
        name: test.name.clone(),
        at_commit,
        exit_code,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output_tail: OutputTail::of(&output),
        output_sha256: sha256(&output),
    }
}

/// Most bytes kept of each stream of a test's output: its tail. The rest is read and dropped,
/// so a test printing without end costs no memory.
const OUTPUT_KEPT: usize = 1024 * 1024;

/// The last [`OUTPUT_KEPT`] bytes `stream` yields until its end (or a read error).
async fn tail_of(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * OUTPUT_KEPT {
                    kept.drain(..kept.len() - OUTPUT_KEPT);
                }
            }
        }
    }
    if kept.len() > OUTPUT_KEPT {
        kept.drain(..kept.len() - OUTPUT_KEPT);
    }
    kept
}

/// The test's command, confined as the ticket's worker's runs: its own folder
/// (`RUNS/KEY-N/tests/NAME-MILLIS`, with a private `tmp/`), the worker's home, the launcher.
async fn confined_test(
    settings: &Settings,
    ticket: &Ticket,
    test: &TestCommand,
    workspace: &Path,
) -> Result<sandbox::Confined, String> {
    let name = ticket.assignee.as_ref().ok_or_else(|| {
        format!(
            "{} has no assignee whose sandbox the test could run in",
            ticket.id
        )
    })?;
    let worker = settings
        .workforce
        .worker(name)
        .ok_or_else(|| format!("{name} is not a configured worker to run the test as"))?;
    let run_as = worker
        .run_as
        .as_deref()
        .map(sandbox::run_as_user)
        .transpose()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let run_dir = settings
        .runs_dir
        .join(ticket.id.to_string())
        .join("tests")
        .join(format!("{}-{stamp}", test.name));
    let tmp_dir = run_dir.join("tmp");
    sandbox::make_private_dir(&tmp_dir)
        .await
        .map_err(|e| format!("{}: {e}", tmp_dir.display()))?;
    let home = sandbox::worker_home(settings, name.as_str(), worker)
        .await
        .map_err(|e| format!("the home of {name}: {e}"))?;
    let mut env = base_environment(settings);
    let path = |p: &Path| p.to_string_lossy().into_owned();
    env.retain(|(n, _)| n != "HOME" && n != "TMPDIR");
    env.extend([
        ("HOME".to_owned(), path(&home)),
        ("TMPDIR".to_owned(), path(&tmp_dir)),
        ("MISSION_TICKET".to_owned(), ticket.id.to_string()),
    ]);
    let program = resolve_program(settings, &test.command[0]);
    let search = env
        .iter()
        .find(|(n, _)| n == "PATH")
        .map(|(_, v)| v.clone());
    let looked_up = program.to_string_lossy().into_owned();
    let program = tokio::task::spawn_blocking(move || {
        sandbox::resolve_program(&looked_up, search.as_deref())
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        format!(
            "cannot start {}: not found, or not an executable file",
            program.display()
        )
    })?;
    if let Some((uid, gid)) = run_as {
        sandbox::give_to(vec![run_dir.clone()], uid, gid).await?;
    }
    let access = sandbox::workspace_access(workspace).await;
    let confinement = sandbox::Confinement {
        worker,
        workspace: &access,
        run_dir: &run_dir,
        home: &home,
        program: &program,
        arg0: &test.command[0],
        env: &env,
        run_as,
    };
    let mut cmd = confinement
        .command(settings, &test.command[1..])
        .await
        .map_err(|e| format!("the test's sandbox: {e}"))?;
    cmd.current_dir(workspace)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// A relative program path with a slash is relative to the instance folder.
fn resolve_program(settings: &Settings, program: &str) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        settings.instance_dir.join(path)
    } else {
        path.to_owned()
    }
}

fn sha256(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex::parse(&format!("{:x}", Sha256::digest(bytes))).expect("a digest is 64 hex digits")
}

/// Requests a configured route with GET (no proxy, no redirects followed) and records the
/// status, whether the body held the expected text, and the latency.
pub async fn request_route(route: &RouteCheck) -> RouteEvidence {
    let target = route.target();
    let url = target.url();
    let timeout = route.timeout;
    let expected = route.body_contains.clone();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || get(&url, timeout, expected.as_deref()))
        .await
        .unwrap_or_else(|e| Err(format!("the request task failed: {e}")));
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, body_matched, error) = match answer {
        Ok((status, matched)) => (Some(status), matched, None),
        Err(error) => (None, None, Some(truncate(&error, 1024))),
    };
    RouteEvidence {
        name: route.name.clone(),
        target,
        expected_status: route.status,
        body_contains: route.body_contains.clone(),
        status,
        body_matched,
        latency_ms,
        error,
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// One GET, blocking: the status, and whether the body contains `expected` (when given).
fn get(
    url: &str,
    timeout: Duration,
    expected: Option<&str>,
) -> Result<(u16, Option<bool>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let matched = match expected {
        None => None,
        Some(text) => {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .read_to_vec()
                .map_err(|e| e.to_string())?;
            Some(String::from_utf8_lossy(&body).contains(text))
        }
    };
    Ok((status, matched))
}

/// Where a workspace path points, refusing anything that leaves the workspace (a symlink out
/// of it, say).
fn inside(workspace: &Path, path: &WorkspacePath) -> Result<PathBuf, String> {
    let root = workspace
        .canonicalize()
        .map_err(|e| format!("the workspace {}: {e}", workspace.display()))?;
    let full = root.join(path.as_str());
    match full.canonicalize() {
        Ok(real) if real.starts_with(&root) => Ok(real),
        Ok(_) => Err(format!("{path} leads outside the workspace")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(full),
        Err(e) => Err(e.to_string()),
    }
}

/// What is at `path` in the workspace now: size and hash, or why not.
pub async fn check_file(workspace: &Path, path: &WorkspacePath) -> FileCheck {
    let full = match inside(workspace, path) {
        Ok(full) => full,
        Err(error) => return FileCheck::Unreadable(error),
    };
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = match std::fs::File::open(&full) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileCheck::Missing,
            Err(e) => return FileCheck::Unreadable(e.to_string()),
        };
        match file.metadata() {
            Ok(meta) if !meta.is_file() => {
                return FileCheck::Unreadable("not a regular file".to_owned());
            }
            Err(e) => return FileCheck::Unreadable(e.to_string()),
            Ok(_) => {}
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                    size += n as u64;
                }
                Err(e) => return FileCheck::Unreadable(e.to_string()),
            }
        }
        FileCheck::Present {
            size_bytes: size,
            sha256: Sha256Hex::parse(&format!("{:x}", hasher.finalize()))
                .expect("a digest is 64 hex digits"),
        }
    })
    .await
    .unwrap_or_else(|e| FileCheck::Unreadable(e.to_string()))
}

/// The media type of a file by its extension; `application/octet-stream` when unknown.
pub fn media_type_of(path: &WorkspacePath) -> MediaType {
    let extension = Path::new(path.as_str())
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let text = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "md" => "text/markdown",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    };
    MediaType::parse(text).expect("a valid media type")
}

/// An artifact as found now, or why it cannot be recorded.
pub async fn observe_artifact(
    workspace: &Path,
    path: &WorkspacePath,
    media_type: Option<MediaType>,
) -> Result<ArtifactEvidence, String> {
    match check_file(workspace, path).await {
        FileCheck::Present { size_bytes, sha256 } => Ok(ArtifactEvidence {
            path: path.clone(),
            size_bytes,
            sha256,
            media_type: media_type.unwrap_or_else(|| media_type_of(path)),
        }),
        FileCheck::Missing => Err(format!("{path} is not in the workspace")),
        FileCheck::Unreadable(error) => Err(format!("{path} cannot be read: {error}")),
    }
}

/// Verifies an observation at `now`: a commit by asking git in `repo` about `branch`, a test
/// against the branch's head, a route by its answer, an artifact by the file as it is now.
pub async fn verify(
    evidence: &Evidence,
    repo: Option<&Path>,
    branch: &str,
    head: Option<&CommitSha>,
    workspace: &Path,
    now: Timestamp,
) -> Verification {
    match evidence {
        Evidence::Commit(commit) => {
            let check = match repo {
                Some(repo) => git::check_commit(repo, &commit.sha, branch).await,
                None => mission_core::CommitCheck::Unavailable(
                    "the ticket has no repository".to_owned(),
                ),
            };
            verify_commit(commit, branch, &check, now)
        }
        Evidence::Test(test) => verify_test(test, head, now),
        Evidence::Route(route) => verify_route(route, now),
        Evidence::Artifact(artifact) => {
            let check = check_file(workspace, &artifact.path).await;
            verify_artifact(artifact, &check, now)
        }
    }
}

/// A commit as evidence.
pub fn commit(sha: CommitSha) -> Evidence {
    Evidence::Commit(CommitEvidence { sha })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_stream_without_end_keeps_only_its_tail() {
        let mut big = vec![b'a'; 5 * super::OUTPUT_KEPT];
        big.extend_from_slice(b"the end");
        let kept = super::tail_of(Some(&big[..])).await;
        assert_eq!(kept.len(), super::OUTPUT_KEPT);
        assert!(kept.ends_with(b"the end"));
        assert_eq!(super::tail_of(Some(&b"short"[..])).await, b"short");
    }
}
