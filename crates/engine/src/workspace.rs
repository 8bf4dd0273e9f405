//! Workspaces: a git worktree per ticket, named from the ticket id (never from its text), on a
//! branch named from the ticket id. A ticket without a repository gets a plain folder. Folders
//! are made and removed through `tokio::fs` and git runs through `tokio::process`: nothing here
//! blocks an async thread. Every git command of the server runs hardened (see [`git`]): a
//! repository is written by runs, so its hooks and configured programs are not the server's to
//! run. The repository's protected branch is checked after each run ([`restore_protected`]).

use mission_core::TicketId;
use std::path::{Path, PathBuf};
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("repository {0} is not a git repository")]
    NotARepo(PathBuf),
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub path: PathBuf,
    /// The repository it is a worktree of, if any.
    pub repo: Option<PathBuf>,
}

/// A held lock of one repository's worktree list (see [`Workspaces::lock_worktrees`]).
struct WorktreeLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

#[derive(Clone, Debug)]
pub struct Workspaces {
    root: PathBuf,
    /// Relative repository paths start here.
    base: PathBuf,
}

/// The branch of a ticket's worktree.
pub fn branch_name(ticket: &TicketId) -> String {
    format!("mission/{ticket}")
}

impl Workspaces {
    pub fn new(root: impl Into<PathBuf>, base: impl Into<PathBuf>) -> Self {
        Workspaces {
            root: root.into(),
            base: base.into(),
        }
    }

    pub fn path_of(&self, ticket: &TicketId) -> PathBuf {
        self.root.join(ticket.to_string())
    }

    fn repo_path(&self, repo: &str) -> PathBuf {
        let path = Path::new(repo);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }

    /// Creates the ticket's workspace, or returns the existing one (a retry continues where the
    /// previous attempt left off).
    pub async fn prepare(
        &self,
        ticket: &TicketId,
        repo: Option<&str>,
    ) -> Result<Workspace, WorkspaceError> {
        let path = self.path_of(ticket);
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|source| WorkspaceError::Io {
                path: self.root.clone(),
                source,
            })?;
        let Some(repo) = repo else {
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(|source| WorkspaceError::Io {
                    path: path.clone(),
                    source,
                })?;
            return Ok(Workspace { path, repo: None });
        };
        let repo = self.repo_path(repo);
        if git(&repo, &["rev-parse", "--git-dir"]).await.is_err() {
            return Err(WorkspaceError::NotARepo(repo));
        }
        if tokio::fs::try_exists(path.join(".git"))
            .await
            .unwrap_or(false)
        {
            return Ok(Workspace {
                path,
                repo: Some(repo),
            });
        }
        let branch = branch_name(ticket);
        let target = path.to_string_lossy().into_owned();
        let exists = git(
            &repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
        )
        .await
        .is_ok();
        // Git does not guard a repository's worktree list against itself: an `add` reading the
        // list while another `add` writes it fails ("failed to read .git/worktrees/…/commondir").
        let _lock = self.lock_worktrees(&repo).await?;
        // Drop the registration of a worktree whose folder was deleted by hand.
        let _ = git(&repo, &["worktree", "prune"]).await;
        if exists {
            git(&repo, &["worktree", "add", &target, &branch]).await?;
        } else {
            git(&repo, &["worktree", "add", "-b", &branch, &target]).await?;
        }
        Ok(Workspace {
            path,
            repo: Some(repo),
        })
    }

    /// Takes the lock of `repo`'s worktree list: an exclusive `flock` on a file of this
    /// workspaces folder named from the repository's path, so that every process of the instance
    /// (the server, `dispatch --once`, `ticket done`) adds and removes worktrees one at a time.
    /// Released when dropped.
    async fn lock_worktrees(&self, repo: &Path) -> Result<WorktreeLock, WorkspaceError> {
        let (root, dir) = (self.root.clone(), repo.to_owned());
        tokio::task::spawn_blocking(move || lock_worktrees_blocking(&root, &dir))
            .await
            .map_err(|join| WorkspaceError::Io {
                path: repo.to_owned(),
                source: std::io::Error::other(join.to_string()),
            })?
    }

    /// Removes a ticket's worktree (the branch and every object stay in the repository), or its
    /// plain folder: [`Workspaces::retire`], then its trash emptied before returning.
    pub async fn remove(&self, workspace: &Workspace) -> Result<(), WorkspaceError> {
        self.retire(workspace).await?.empty().await;
        Ok(())
    }

    /// Takes a ticket's worktree (the branch and every object stay in the repository) or its
    /// plain folder out of use; what is left to delete comes back as [`Trash`]. A worktree
    /// registered the usual way ([`registration`]) is retired without git: its folder, then its
    /// admin folder `COMMON/worktrees/NAME` — what `git worktree remove --force` deletes — are
    /// renamed into this workspaces folder's `.trash` (an admin folder on another file system is
    /// deleted at once), so that for git the worktree is gone when this returns and the files'
    /// deletion is off the caller's path. Anything else is left to git: `git worktree remove
    /// --force`, and when git refuses (a `.git` file that does not point back, say), the folder
    /// deleted here and `git worktree prune` dropping its registration. A locked worktree stays.
    pub async fn retire(&self, workspace: &Workspace) -> Result<Trash, WorkspaceError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| WorkspaceError::Io { path, source }
        };
        match &workspace.repo {
            Some(repo) => {
                let target = workspace.path.to_string_lossy().into_owned();
                // The lock, the registration and the usual retirement: one trip to the blocking
                // pool.
                let (root, dir, path) = (self.root.clone(), repo.clone(), workspace.path.clone());
                let step = tokio::task::spawn_blocking(move || {
                    let lock = lock_worktrees_blocking(&root, &dir)?;
                    Ok::<_, WorkspaceError>(match registration(&dir, &path) {
                        Registration::Admin(admin) => {
                            let mut trash = Trash::default();
                            // A rename moves a symlink, never what it points at; so does
                            // `remove_dir_all` delete one.
                            if let Some(aside) = set_aside(&root, &path) {
                                trash.0.push(aside);
                            } else {
                                std::fs::remove_dir_all(&path).map_err(io(&path))?;
                            }
                            if let Some(aside) = set_aside(&root, &admin) {
                                trash.0.push(aside);
                                Removal::Done(trash)
                            } else {
                                match std::fs::remove_dir_all(&admin) {
                                    Ok(()) => Removal::Done(trash),
                                    Err(_) => Removal::Prune(lock, trash),
                                }
                            }
                        }
                        Registration::Locked => Removal::Git(lock, true),
                        Registration::Unknown => Removal::Git(lock, false),
                    })
                })
                .await
                .map_err(|join| WorkspaceError::Io {
                    path: workspace.path.clone(),
                    source: std::io::Error::other(join.to_string()),
                })??;
                match step {
                    Removal::Done(trash) => Ok(trash),
                    Removal::Prune(_lock, trash) => {
                        git(repo, &["worktree", "prune"]).await?;
                        Ok(trash)
                    }
                    Removal::Git(_lock, true) => {
                        git(repo, &["worktree", "remove", "--force", &target]).await?;
                        Ok(Trash::default())
                    }
                    Removal::Git(_lock, false) => {
                        let Err(error) =
                            git(repo, &["worktree", "remove", "--force", &target]).await
                        else {
                            return Ok(Trash::default());
                        };
                        match tokio::fs::remove_dir_all(&workspace.path).await {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                return Err(error);
                            }
                            Err(source) => return Err(io(&workspace.path)(source)),
                        }
                        git(repo, &["worktree", "prune"]).await?;
                        Ok(Trash::default())
                    }
                }
            }
            None => {
                let (root, path) = (self.root.clone(), workspace.path.clone());
                let aside = tokio::task::spawn_blocking(move || set_aside(&root, &path))
                    .await
                    .ok()
                    .flatten();
                match aside {
                    Some(aside) => Ok(Trash(vec![aside])),
                    None => tokio::fs::remove_dir_all(&workspace.path)
                        .await
                        .map(|()| Trash::default())
                        .map_err(io(&workspace.path)),
                }
            }
        }
    }

    /// Deletes what a retirement left in the trash and nobody emptied (a process that stopped
    /// between the rename and the deletion). The server calls it at start.
    pub async fn sweep_trash(&self) {
        let trash = self.root.join(TRASH);
        let found = tokio::task::spawn_blocking(move || {
            std::fs::read_dir(&trash)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        Trash(found).empty().await;
    }
}

/// The folder of a workspaces folder where retired workspaces wait for their deletion.
const TRASH: &str = ".trash";

/// Folders taken out of use by [`Workspaces::retire`], to delete. Nothing reads them: emptying
/// later (or never, until the server's next start sweeps them) changes no outcome.
#[derive(Debug, Default)]
pub struct Trash(Vec<PathBuf>);

impl Trash {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deletes the folders, in the blocking pool. A folder already gone (a sweep deleted it) is
    /// fine; any other failure is logged and left for the next sweep.
    pub async fn empty(self) {
        if self.0.is_empty() {
            return;
        }
        let deleted = tokio::task::spawn_blocking(move || {
            for path in self.0 {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "deleting a retired workspace failed");
                    }
                }
            }
        })
        .await;
        if let Err(error) = deleted {
            tracing::warn!(%error, "deleting retired workspaces failed");
        }
    }
}

/// Deletions of trash started by [`Trash::empty_later`] in this process and not yet awaited.
static EMPTYING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

impl Trash {
    /// Empties the trash in a task of its own: the caller does not wait for the deletion (a
    /// server's request or the gate's answer). A short-lived process awaits
    /// [`trash_emptied`] before it exits.
    pub fn empty_later(self) {
        if self.0.is_empty() {
            return;
        }
        let handle = tokio::spawn(self.empty());
        let mut pending = EMPTYING.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|h| !h.is_finished());
        pending.push(handle);
    }
}

/// Waits for every deletion [`Trash::empty_later`] started in this process.
pub async fn trash_emptied() {
    let pending = std::mem::take(&mut *EMPTYING.lock().unwrap_or_else(|e| e.into_inner()));
    for handle in pending {
        let _ = handle.await;
    }
}

/// Renames `path` into the trash of the workspaces folder `root` under a name of its own;
/// `None` when it cannot be (another file system, say: the caller deletes it in place).
fn set_aside(root: &Path, path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let trash = root.join(TRASH);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&trash)
        .ok()?;
    let name = path.file_name()?.to_string_lossy();
    let aside = trash.join(format!(
        "{name}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::rename(path, &aside).ok()?;
    Some(aside)
}

/// Takes the lock of `repo`'s worktree list (see [`Workspaces::lock_worktrees`]), blocking.
fn lock_worktrees_blocking(root: &Path, repo: &Path) -> Result<WorktreeLock, WorkspaceError> {
    use nix::fcntl::{Flock, FlockArg};
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = root.join(".locks");
    let canonical = repo.canonicalize().unwrap_or_else(|_| repo.to_owned());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{name}.lock"));
    let io = |source| WorkspaceError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(WorktreeLock)
        .map_err(|(_, errno)| io(std::io::Error::from(errno)))
}

/// What is left of a worktree's removal after the blocking part, under the held lock.
enum Removal {
    Done(Trash),
    /// The folder is gone, its admin folder could not be removed: git drops it.
    Prune(#[allow(dead_code)] WorktreeLock, Trash),
    /// Git removes it (`true`: a locked worktree, whose refusal stands).
    Git(#[allow(dead_code)] WorktreeLock, bool),
}

/// How a worktree is registered in its repository, as far as its files say.
enum Registration {
    /// Registered the usual way: its admin folder, `COMMON/worktrees/NAME`.
    Admin(PathBuf),
    /// Registered, and locked (`git worktree lock`): git decides.
    Locked,
    /// Anything else: git decides.
    Unknown,
}

/// The admin folder of the worktree at `workspace` of `repo`, when it can be trusted to be that
/// worktree's: the worktree's `.git` file (which a run can write) names a folder that is a direct
/// child of `COMMON/worktrees/` (COMMON the repository's common git dir, canonical), a folder
/// itself and not a symlink, whose `gitdir` file points back at this worktree's `.git`.
fn registration(repo: &Path, workspace: &Path) -> Registration {
    use crate::git::local;
    let found = || -> Option<(PathBuf, bool)> {
        let common = local::common_dir(repo)?;
        let workspace = workspace.canonicalize().ok()?;
        let text = local::small_file(&workspace, ".git")?;
        let named = workspace.join(text.strip_prefix("gitdir:")?.trim());
        let name = named.file_name()?.to_str()?;
        let worktrees = common.join("worktrees");
        if name.starts_with('.') || named.parent()?.canonicalize().ok()? != worktrees {
            return None;
        }
        let admin = worktrees.join(name);
        if !std::fs::symlink_metadata(&admin).ok()?.is_dir() {
            return None;
        }
        let back = local::small_file(&admin, "gitdir")?;
        let back = admin.join(back.trim()).canonicalize().ok()?;
        if back != workspace.join(".git") {
            return None;
        }
        let locked = std::fs::symlink_metadata(admin.join("locked")).is_ok();
        Some((admin, locked))
    };
    match found() {
        Some((_, true)) => Registration::Locked,
        Some((admin, false)) => Registration::Admin(admin),
        None => Registration::Unknown,
    }
}

/// The commit checked out in `dir`, if it is a git checkout with a commit.
pub async fn head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "HEAD"]).await.ok()
}

/// The repository's protected branch — the one its main worktree has checked out (its default
/// branch) — and its commit now. `None` when HEAD is detached or the branch has no commit.
pub async fn protected_branch(repo: &Path) -> Option<(String, String)> {
    let branch = git(repo, &["symbolic-ref", "-q", "HEAD"]).await.ok()?;
    if branch.starts_with("refs/heads/mission/") {
        return None;
    }
    let commit = git(repo, &["rev-parse", "--verify", "-q", &branch])
        .await
        .ok()?;
    Some((branch, commit))
}

/// After a run: if `branch` no longer points at `before`, puts it back (only if nobody moved it
/// again meanwhile) and says what happened. With the sandbox on, a run cannot write the
/// repository's refs outside `refs/heads/mission/`; this check is what holds without it.
pub async fn restore_protected(repo: &Path, branch: &str, before: &str) -> Option<String> {
    let now = git(repo, &["rev-parse", "--verify", "-q", branch])
        .await
        .unwrap_or_default();
    if now == before {
        return None;
    }
    let restored = if now.is_empty() {
        git(repo, &["update-ref", branch, before, ""]).await
    } else {
        git(repo, &["update-ref", branch, before, &now]).await
    };
    Some(match restored {
        Ok(_) => format!(
            "the run moved the protected branch {branch} (to {}); it was restored to {before}",
            if now.is_empty() { "nothing" } else { &now }
        ),
        Err(error) => format!(
            "the run moved the protected branch {branch} (to {now}); restoring it failed: {error}"
        ),
    })
}

/// Most time a git command of the server may take.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Environment variables git runs with, from the server's environment, when set. Nothing else
/// (no `GIT_*` variable from outside, no secret).
const GIT_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// Runs git in `dir` the way the server always does: an allow-listed environment, hooks and the
/// file-system monitor off (a run can write files a repository's configuration points at; the
/// server must never execute them), in its own process group, killed with its group after a
/// timeout.
async fn git(dir: &Path, args: &[&str]) -> Result<String, WorkspaceError> {
    let env = GIT_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| (*name, value)));
    let mut command = Command::new("git");
    command
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_clear()
        .envs(env)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| WorkspaceError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let pid = child.id().map(i64::from);
    let output = match tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.map_err(|source| WorkspaceError::Io {
            path: dir.to_owned(),
            source,
        })?,
        Err(_) => {
            if let Some(pid) = pid {
                crate::process::kill_leftovers(pid);
            }
            return Err(WorkspaceError::Git {
                args: args.join(" "),
                message: format!("timed out after {}s", GIT_TIMEOUT.as_secs()),
            });
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(WorkspaceError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Registration, Workspaces, registration};
    use mission_core::{TicketId, TicketKey};

    use mission_testkit::git;

    /// The usual registration is found (and removed without git); a locked worktree and a
    /// `.git` file naming anything but its own admin folder are left to git.
    #[tokio::test]
    async fn the_usual_registration_is_found_and_anything_else_is_left_to_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
        let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
        let ws = workspaces
            .prepare(&TicketId::new(&TicketKey::default(), 1), Some("repo"))
            .await
            .unwrap();
        let admin = repo.join(".git/worktrees/MC-1").canonicalize().unwrap();
        assert!(matches!(registration(&repo, &ws.path), Registration::Admin(a) if a == admin));
        std::fs::write(admin.join("locked"), "kept\n").unwrap();
        assert!(matches!(
            registration(&repo, &ws.path),
            Registration::Locked
        ));
        std::fs::remove_file(admin.join("locked")).unwrap();
        // The admin folder's `gitdir` naming another worktree.
        std::fs::write(admin.join("gitdir"), "/elsewhere/.git\n").unwrap();
        assert!(matches!(
            registration(&repo, &ws.path),
            Registration::Unknown
        ));
        std::fs::write(
            admin.join("gitdir"),
            format!("{}\n", ws.path.join(".git").display()),
        )
        .unwrap();
        assert!(matches!(
            registration(&repo, &ws.path),
            Registration::Admin(_)
        ));
        // The admin folder a symlink to a folder outside.
        let outside = dir.path().join("outside");
        std::fs::rename(&admin, &outside).unwrap();
        std::os::unix::fs::symlink(&outside, &admin).unwrap();
        assert!(matches!(
            registration(&repo, &ws.path),
            Registration::Unknown
        ));
    }
}
