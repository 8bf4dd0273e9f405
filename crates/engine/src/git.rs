//! Every git command the harness runs to prove and close work: a commit's reachability, a
//! branch's head, a diff's size and text, the merge on done.
//!
//! Hardened the same way for every call: hooks off (`core.hooksPath=/dev/null`), no fsmonitor,
//! no system or global configuration, an allow-listed environment (no prompts), and a time
//! limit after which git is killed. Arguments are passed as argv; branch names come from ticket
//! ids, never from ticket text. Nothing here force-pushes or rewrites history: a merge either
//! fast-forwards, commits a merge, or is aborted.

use mission_core::evidence::CommitCheck;
use mission_core::{CommitSha, TicketId};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// How long one git command may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Variables passed on to git from this process's environment.
const ENV_ALLOW: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"];

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {args}: {message}")]
    Failed {
        args: String,
        code: Option<i32>,
        message: String,
    },
    #[error("git {args} took longer than {}s and was stopped", .timeout.as_secs())]
    TimedOut { args: String, timeout: Duration },
    #[error("git could not be started: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The output of a git command that exited 0 or 1 (both answers for some commands).
struct Output {
    code: Option<i32>,
    stdout: String,
}

async fn run(dir: &Path, args: &[&str], ok_codes: &[i32]) -> Result<Output, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .args(args)
        .env_clear()
        .envs(
            ENV_ALLOW
                .iter()
                .filter_map(|name| std::env::var(name).ok().map(|value| (*name, value))),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let shown = || args.join(" ");
    let output = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(output) => output.map_err(GitError::Spawn)?,
        Err(_) => {
            return Err(GitError::TimedOut {
                args: shown(),
                timeout: GIT_TIMEOUT,
            });
        }
    };
    let code = output.status.code();
    if code.is_some_and(|c| c == 0 || ok_codes.contains(&c)) {
        return Ok(Output {
            code,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        });
    }
    Err(GitError::Failed {
        args: shown(),
        code,
        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

async fn text(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(run(dir, args, &[]).await?.stdout.trim().to_owned())
}

/// The branch of a ticket's worktree.
pub fn branch_of(ticket: &TicketId) -> String {
    format!("mission/{ticket}")
}

/// The commit a branch points at, `None` when there is no such branch.
pub async fn branch_head(repo: &Path, branch: &str) -> Result<Option<CommitSha>, GitError> {
    let reference = format!("refs/heads/{branch}");
    let out = run(
        repo,
        &["rev-parse", "--verify", "--quiet", &reference],
        &[1],
    )
    .await?;
    if out.code != Some(0) {
        return Ok(None);
    }
    Ok(CommitSha::parse(out.stdout.trim()).ok())
}

/// The commit checked out in a workspace.
pub async fn head(dir: &Path) -> Result<CommitSha, GitError> {
    let sha = text(dir, &["rev-parse", "HEAD"]).await?;
    CommitSha::parse(&sha).map_err(|e| GitError::Failed {
        args: "rev-parse HEAD".to_owned(),
        code: None,
        message: e.to_string(),
    })
}

/// Whether `sha` exists in the repository and `branch` contains it. Never a pass when git
/// could not answer.
pub async fn check_commit(repo: &Path, sha: &CommitSha, branch: &str) -> CommitCheck {
    // One git process on the common path: `merge-base --is-ancestor` answers 0 (reachable) or
    // 1 (not); only an error (128: no such commit, or no such branch) asks again which.
    let reference = format!("refs/heads/{branch}");
    match run(
        repo,
        &["merge-base", "--is-ancestor", sha.as_str(), &reference],
        &[1, 128],
    )
    .await
    {
        Ok(out) if out.code == Some(0) => return CommitCheck::Reachable,
        Ok(out) if out.code == Some(1) => return CommitCheck::NotReachable,
        Ok(_) => {}
        Err(error) => return CommitCheck::Unavailable(error.to_string()),
    }
    let object = format!("{}^{{commit}}", sha.as_str());
    match run(repo, &["cat-file", "-e", &object], &[1, 128]).await {
        Ok(out) if out.code == Some(0) => {
            CommitCheck::Unavailable(format!("the branch {branch} does not exist"))
        }
        Ok(_) => CommitCheck::Missing,
        Err(error) => CommitCheck::Unavailable(error.to_string()),
    }
}

/// The base branch of a repository: `configured`, else the branch checked out in it.
pub async fn base_branch(repo: &Path, configured: Option<&str>) -> Result<String, GitError> {
    match configured {
        Some(base) => Ok(base.to_owned()),
        None => text(repo, &["symbolic-ref", "--short", "HEAD"]).await,
    }
}

/// The size of a ticket's work: lines added plus removed from the merge base of `base` and
/// `branch` to `branch` (`git diff base...branch`). A binary file counts one line.
pub async fn changed_lines(repo: &Path, base: &str, branch: &str) -> Result<u64, GitError> {
    let range = format!("{base}...{branch}");
    let out = text(repo, &["diff", "--numstat", "--no-renames", &range, "--"]).await?;
    let mut total = 0u64;
    for line in out.lines() {
        let mut fields = line.split('\t');
        let added = fields.next().unwrap_or("-");
        let removed = fields.next().unwrap_or("-");
        match (added.parse::<u64>(), removed.parse::<u64>()) {
            (Ok(a), Ok(r)) => total += a + r,
            _ => total += 1,
        }
    }
    Ok(total)
}

/// The diff of a ticket's work, as text (`git diff base...branch`).
pub async fn diff(repo: &Path, base: &str, branch: &str) -> Result<String, GitError> {
    let range = format!("{base}...{branch}");
    Ok(run(
        repo,
        &["diff", "--no-color", "--no-ext-diff", &range, "--"],
        &[],
    )
    .await?
    .stdout)
}

/// How a merge on done went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// The base branch now contains the ticket's branch (fast-forwarded or merged).
    Merged { base: String, head: CommitSha },
    /// Nothing to do: the base already contains the branch.
    UpToDate { base: String },
    /// The merge could not be made without rewriting or resolving anything; nothing changed.
    Conflict { base: String, reason: String },
}

/// Merges `branch` into the base branch: fast-forward only (`ff`), or a merge commit
/// (`merge`). Where the base branch is checked out (the repository's own worktree, say), the
/// merge happens there and needs it clean; otherwise the branch ref is moved with a
/// compare-and-swap, never forced. A conflict changes nothing.
pub async fn merge(
    repo: &Path,
    base: &str,
    branch: &str,
    fast_forward_only: bool,
    message: &str,
) -> Result<Merged, GitError> {
    let base_ref = format!("refs/heads/{base}");
    let Some(base_sha) = branch_head(repo, base).await? else {
        return Ok(Merged::Conflict {
            base: base.to_owned(),
            reason: format!("the base branch {base} does not exist"),
        });
    };
    let Some(branch_sha) = branch_head(repo, branch).await? else {
        return Ok(Merged::Conflict {
            base: base.to_owned(),
            reason: format!("the branch {branch} does not exist"),
        });
    };
    let contained = run(
        repo,
        &[
            "merge-base",
            "--is-ancestor",
            branch_sha.as_str(),
            base_sha.as_str(),
        ],
        &[1],
    )
    .await?;
    if contained.code == Some(0) {
        return Ok(Merged::UpToDate {
            base: base.to_owned(),
        });
    }
    let fast_forward = run(
        repo,
        &[
            "merge-base",
            "--is-ancestor",
            base_sha.as_str(),
            branch_sha.as_str(),
        ],
        &[1],
    )
    .await?
    .code
        == Some(0);
    if fast_forward_only && !fast_forward {
        return Ok(Merged::Conflict {
            base: base.to_owned(),
            reason: format!("{base} has moved on: {branch} cannot be fast-forwarded onto it"),
        });
    }
    let identity = [
        "-c",
        "user.name=Mission Control",
        "-c",
        "user.email=mission@localhost",
    ];
    if let Some(checkout) = checked_out(repo, &base_ref).await? {
        // Merge in the worktree that has the base checked out, so that it stays consistent.
        let status = text(
            &checkout,
            &["status", "--porcelain", "--untracked-files=no"],
        )
        .await?;
        if !status.is_empty() {
            return Ok(Merged::Conflict {
                base: base.to_owned(),
                reason: format!(
                    "{base} is checked out in {} with uncommitted changes",
                    checkout.display()
                ),
            });
        }
        let mut args: Vec<&str> = identity.to_vec();
        args.push("merge");
        if fast_forward_only {
            args.push("--ff-only");
        } else {
            args.extend(["--no-ff", "-m", message]);
        }
        args.push(branch_sha.as_str());
        if let Err(error) = run(&checkout, &args, &[]).await {
            let _ = run(&checkout, &["merge", "--abort"], &[128]).await;
            return Ok(Merged::Conflict {
                base: base.to_owned(),
                reason: format!("the merge failed and was aborted: {error}"),
            });
        }
        return Ok(Merged::Merged {
            base: base.to_owned(),
            head: head(&checkout).await?,
        });
    }
    // No worktree has the base checked out: compute the result without one.
    let new_head = if fast_forward_only {
        branch_sha.clone()
    } else {
        let tree = match run(
            repo,
            &[
                "merge-tree",
                "--write-tree",
                base_sha.as_str(),
                branch_sha.as_str(),
            ],
            &[1],
        )
        .await?
        {
            Output {
                code: Some(0),
                stdout,
            } => stdout.lines().next().unwrap_or_default().trim().to_owned(),
            _ => {
                return Ok(Merged::Conflict {
                    base: base.to_owned(),
                    reason: format!("{branch} conflicts with {base}"),
                });
            }
        };
        let mut args: Vec<&str> = identity.to_vec();
        args.extend([
            "commit-tree",
            &tree,
            "-p",
            base_sha.as_str(),
            "-p",
            branch_sha.as_str(),
            "-m",
            message,
        ]);
        let sha = text(repo, &args).await?;
        CommitSha::parse(&sha).map_err(|e| GitError::Failed {
            args: "commit-tree".to_owned(),
            code: None,
            message: e.to_string(),
        })?
    };
    // Compare-and-swap: refused if the base moved meanwhile.
    if let Err(error) = run(
        repo,
        &[
            "update-ref",
            &base_ref,
            new_head.as_str(),
            base_sha.as_str(),
        ],
        &[],
    )
    .await
    {
        return Ok(Merged::Conflict {
            base: base.to_owned(),
            reason: format!("{base} moved during the merge: {error}"),
        });
    }
    Ok(Merged::Merged {
        base: base.to_owned(),
        head: new_head,
    })
}

/// The worktree that has `reference` checked out, if any.
async fn checked_out(repo: &Path, reference: &str) -> Result<Option<std::path::PathBuf>, GitError> {
    let list = text(repo, &["worktree", "list", "--porcelain"]).await?;
    let mut current: Option<&str> = None;
    for line in list.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            current = Some(path);
        } else if line.strip_prefix("branch ") == Some(reference) {
            return Ok(current.map(std::path::PathBuf::from));
        }
    }
    Ok(None)
}
