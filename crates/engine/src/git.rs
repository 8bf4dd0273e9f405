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

/// The commit a branch points at, `None` when there is no such branch. Read from the ref files
/// when they answer plainly ([`local`]), else asked of git.
pub async fn branch_head(repo: &Path, branch: &str) -> Result<Option<CommitSha>, GitError> {
    let (dir, name) = (repo.to_owned(), branch.to_owned());
    let read = tokio::task::spawn_blocking(move || {
        local::common_dir(&dir).and_then(|common| local::branch(&common, &name))
    })
    .await
    .ok()
    .flatten();
    if let Some(sha) = read {
        return Ok(Some(sha));
    }
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
/// could not answer. The common case — the branch points at exactly `sha`, a commit stored as a
/// loose object — is answered from the repository's files without a git process
/// ([`local::is_branch_tip`]); anything else (an older commit of the branch, a packed or missing
/// object, a layout read here does not know) is asked of git.
pub async fn check_commit(repo: &Path, sha: &CommitSha, branch: &str) -> CommitCheck {
    let (dir, wanted, name) = (repo.to_owned(), sha.clone(), branch.to_owned());
    let tip = tokio::task::spawn_blocking(move || local::is_branch_tip(&dir, &wanted, &name))
        .await
        .unwrap_or(false);
    if tip {
        return CommitCheck::Reachable;
    }
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

/// Reading a repository's refs and objects from its files, without git, for the answers that
/// are plain: a branch's ref and whether a loose object is a commit. Each function answers
/// `None` / `false` whenever anything is unusual — a symlink on the way, a layout other than
/// git's usual ones (reftable, say), a malformed or oversized file — and the caller asks git
/// instead: reading here never verifies what git would not.
///
/// The common git dir and everything under it can be written by runs (their commits write
/// objects and `refs/heads/mission/`), so nothing here follows a path those files name outside
/// the repository's git dir: below the common dir every component is opened with
/// `O_NOFOLLOW` from its parent's descriptor, a file must be a regular file (opened
/// non-blocking: a FIFO cannot hold the caller), and its size is capped.
pub mod local {
    use mission_core::CommitSha;
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};

    /// Most bytes read of a ref, `.git`, `commondir` or `gitdir` file.
    const SMALL: u64 = 4096;
    /// Most bytes of `packed-refs` read; a larger one is left to git.
    const PACKED_REFS_MAX: u64 = 64 * 1024 * 1024;
    /// Bytes of a loose object read to inflate its header.
    const OBJECT_HEAD: u64 = 4096;

    /// A plain name of one path component: not empty, not `.` or `..`, no slash or NUL.
    fn component(name: &str) -> bool {
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0')
    }

    fn open_dir(path: &Path) -> Option<OwnedFd> {
        nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// The regular file at `root/parts…`, every component below `root` opened without
    /// following a symlink. `Err(true)` when it does not exist, `Err(false)` for anything else.
    fn open_beneath(root: &Path, parts: &[&str]) -> Result<File, bool> {
        let (leaf, dirs) = parts.split_last().ok_or(false)?;
        if !parts.iter().all(|p| component(p)) {
            return Err(false);
        }
        let missing = |errno: nix::errno::Errno| errno == nix::errno::Errno::ENOENT;
        let mut dir = open_dir(root).ok_or(false)?;
        for part in dirs {
            dir = openat(
                &dir,
                *part,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(missing)?;
        }
        let fd = openat(
            &dir,
            *leaf,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(missing)?;
        let file = File::from(fd);
        match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(file),
            _ => Err(false),
        }
    }

    /// At most `max` bytes of `file`; `None` when it holds more or cannot be read.
    fn read_capped(file: File, max: u64) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }

    /// A small text file of `dir` (not followed if a symlink): `Err(true)` when there is none.
    fn small_text(dir: &Path, name: &str) -> Result<String, bool> {
        let file = open_beneath(dir, &[name])?;
        let bytes = read_capped(file, SMALL).ok_or(false)?;
        String::from_utf8(bytes).map_err(|_| false)
    }

    /// The text of the small regular file `dir/name`, not followed if a symlink; `None` when
    /// there is none or it is anything but a small text file.
    pub fn small_file(dir: &Path, name: &str) -> Option<String> {
        small_text(dir, name).ok()
    }

    /// The repository's common git dir (where its refs and objects are), canonical: `repo/.git`
    /// when it is a folder, the folder a `.git` file's `gitdir:` names, or `repo` itself when
    /// it is bare; a git dir with a `commondir` file (a linked worktree's) leads to its common
    /// dir only when it is that dir's `worktrees/NAME`. `None` for anything else.
    pub fn common_dir(repo: &Path) -> Option<PathBuf> {
        let repo = repo.canonicalize().ok()?;
        let dot_git = repo.join(".git");
        let git_dir = match std::fs::symlink_metadata(&dot_git) {
            Ok(meta) if meta.is_dir() => dot_git,
            Ok(meta) if meta.is_file() => {
                let text = small_text(&repo, ".git").ok()?;
                let target = text.strip_prefix("gitdir:")?.trim();
                if target.is_empty() || target.contains('\n') {
                    return None;
                }
                repo.join(target)
            }
            Ok(_) => return None,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => repo,
            Err(_) => return None,
        }
        .canonicalize()
        .ok()?;
        let common = match small_text(&git_dir, "commondir") {
            Err(true) => git_dir.clone(),
            Err(false) => return None,
            Ok(text) => {
                let target = text.trim();
                if target.is_empty() || target.contains('\n') {
                    return None;
                }
                let common = git_dir.join(target).canonicalize().ok()?;
                if git_dir.parent() != Some(common.join("worktrees").as_path()) {
                    return None;
                }
                common
            }
        };
        let is = |name: &str, dir: bool| {
            std::fs::symlink_metadata(common.join(name))
                .is_ok_and(|meta| if dir { meta.is_dir() } else { meta.is_file() })
        };
        (is("HEAD", false) && is("objects", true) && is("refs", true)).then_some(common)
    }

    /// The parts of `refs/heads/BRANCH`, when `branch` is a plain ref name.
    fn ref_parts(branch: &str) -> Option<Vec<&str>> {
        let parts: Vec<&str> = std::iter::once("refs")
            .chain(std::iter::once("heads"))
            .chain(branch.split('/'))
            .collect();
        let plain = branch.split('/').all(|part| {
            component(part)
                && !part.starts_with('.')
                && !part.ends_with(".lock")
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
        plain.then_some(parts)
    }

    /// The commit `refs/heads/BRANCH` of the common dir `common` points at: its loose ref,
    /// else its line in `packed-refs`. `None` when there is neither, or anything is unusual
    /// (a symbolic ref, a malformed line).
    pub fn branch(common: &Path, branch: &str) -> Option<CommitSha> {
        let parts = ref_parts(branch)?;
        match open_beneath(common, &parts) {
            Ok(file) => {
                let bytes = read_capped(file, SMALL)?;
                let text = std::str::from_utf8(&bytes).ok()?;
                let sha = text.strip_suffix('\n').unwrap_or(text);
                CommitSha::parse(sha).ok()
            }
            Err(true) => {
                let file = open_beneath(common, &["packed-refs"]).ok()?;
                let bytes = read_capped(file, PACKED_REFS_MAX)?;
                let wanted = format!("refs/heads/{branch}");
                let mut found = None;
                for line in bytes.split(|b| *b == b'\n') {
                    if line.first().is_none_or(|b| matches!(b, b'#' | b'^')) {
                        continue;
                    }
                    let line = std::str::from_utf8(line).ok()?;
                    let (sha, name) = line.split_once(' ')?;
                    if name == wanted {
                        if found.is_some() {
                            return None;
                        }
                        found = Some(CommitSha::parse(sha).ok()?);
                    }
                }
                found
            }
            Err(false) => None,
        }
    }

    /// Whether the object `sha` is stored loose in `common` as a commit (its inflated header
    /// reads `commit SIZE\0`). `false` when it is packed, absent, or anything else: git is asked.
    pub fn loose_commit(common: &Path, sha: &CommitSha) -> bool {
        let hex = sha.as_str();
        let Ok(file) = open_beneath(common, &["objects", &hex[..2], &hex[2..]]) else {
            return false;
        };
        let mut head = Vec::new();
        if file.take(OBJECT_HEAD).read_to_end(&mut head).is_err() {
            return false;
        }
        // The header is at most `commit ` and 20 digits and a NUL; the object may be longer
        // than what was read, so a partial inflation is expected.
        let inflated = match miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&head, 32) {
            Ok(all) => all,
            Err(partial) => partial.output,
        };
        let Some(rest) = inflated.strip_prefix(b"commit ") else {
            return false;
        };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        digits > 0 && rest.get(digits) == Some(&0)
    }

    /// Whether `branch` of the repository at `repo` points at exactly `sha`, a commit stored
    /// loose: then the branch contains it. `false` says nothing (git is asked).
    pub fn is_branch_tip(repo: &Path, sha: &CommitSha, branch: &str) -> bool {
        common_dir(repo).is_some_and(|common| {
            self::branch(&common, branch).as_ref() == Some(sha) && loose_commit(&common, sha)
        })
    }
}
