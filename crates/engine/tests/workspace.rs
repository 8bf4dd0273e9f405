//! Workspaces with real git: a worktree per ticket on a branch named from the ticket id.

use mission_core::{TicketId, TicketKey};
use mission_engine::workspace::{Workspaces, branch_name, head};
use mission_testkit::{git, git_repo};
use std::path::Path;

#[tokio::test]
async fn a_worktree_per_ticket_reused_across_attempts_and_removed_through_git() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git_repo(&dir.path().join("repo"));

    let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
    let ticket = TicketId::new(&TicketKey::default(), 12);
    let ws = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    assert_eq!(ws.path, dir.path().join("workspaces/MC-12"));
    assert_eq!(
        git(&ws.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "mission/MC-12"
    );
    assert_eq!(branch_name(&ticket), "mission/MC-12");

    // Work done in attempt 1 is there for attempt 2.
    std::fs::write(ws.path.join("work.txt"), "done\n").unwrap();
    git(&ws.path, &["add", "work.txt"]);
    git(&ws.path, &["commit", "-q", "-m", "work"]);
    let commit = head(&ws.path).await.unwrap();
    let again = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    assert_eq!(again, ws);
    assert_eq!(head(&again.path).await.unwrap(), commit);

    // Removal goes through git: the branch and its commit stay in the repository.
    workspaces.remove(&ws).await.unwrap();
    assert!(!ws.path.exists());
    assert_eq!(git(&repo, &["rev-parse", "mission/MC-12"]), commit);
    assert_eq!(git(&repo, &["cat-file", "-t", &commit]), "commit");
    // A new attempt after removal gets the branch back.
    let restored = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    assert_eq!(head(&restored.path).await.unwrap(), commit);
}

#[tokio::test]
async fn a_ticket_without_a_repository_gets_a_plain_folder_and_a_bad_repository_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
    let ticket = TicketId::new(&TicketKey::default(), 3);
    let ws = workspaces.prepare(&ticket, None).await.unwrap();
    assert!(ws.path.is_dir() && ws.repo.is_none());
    assert!(head(&ws.path).await.is_none());
    std::fs::create_dir(dir.path().join("not-a-repo")).unwrap();
    let err = workspaces
        .prepare(&ticket, Some("not-a-repo"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a git repository"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worktrees_of_one_repository_are_added_and_removed_concurrently_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git_repo(&dir.path().join("repo"));
    let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
    // Git reads the worktree list while adding one; without a lock, a second `add` meanwhile
    // fails now and then ("failed to read .git/worktrees/…/commondir").
    for round in 0..5 {
        let mut adds = tokio::task::JoinSet::new();
        for n in 1..=16 {
            let workspaces = workspaces.clone();
            let ticket = TicketId::new(&TicketKey::default(), round * 100 + n);
            adds.spawn(async move { workspaces.prepare(&ticket, Some("repo")).await });
        }
        let mut made = Vec::new();
        while let Some(result) = adds.join_next().await {
            made.push(
                result
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}")),
            );
        }
        let mut removals = tokio::task::JoinSet::new();
        for ws in made {
            let workspaces = workspaces.clone();
            removals.spawn(async move { workspaces.remove(&ws).await });
        }
        while let Some(result) = removals.join_next().await {
            result
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1
    );
}

fn worktrees(repo: &Path) -> Vec<String> {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree ").map(str::to_owned))
        .collect()
}

fn init_repo(dir: &Path) -> std::path::PathBuf {
    git_repo(&dir.join("repo"))
}

#[tokio::test]
async fn a_removed_worktree_leaves_no_registration_and_its_branch_stays() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
    let ticket = TicketId::new(&TicketKey::default(), 7);
    let ws = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    // Uncommitted and untracked files go with it (as with `--force`).
    std::fs::write(ws.path.join("README"), "changed\n").unwrap();
    std::fs::write(ws.path.join("new.txt"), "new\n").unwrap();
    let admin = repo.join(".git/worktrees/MC-7");
    assert!(admin.is_dir());
    assert_eq!(worktrees(&repo).len(), 2);
    workspaces.remove(&ws).await.unwrap();
    assert!(!ws.path.exists());
    assert!(!admin.exists());
    assert_eq!(
        worktrees(&repo),
        vec![repo.canonicalize().unwrap().display().to_string()]
    );
    git(&repo, &["rev-parse", "--verify", "refs/heads/mission/MC-7"]);
    // The same ticket can have its worktree again.
    let again = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    assert_eq!(
        git(&again.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "mission/MC-7"
    );
}

/// What a folder holds, relative paths sorted (empty when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_retired_worktree_is_gone_for_git_at_once_and_its_trash_is_deleted_later() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let root = dir.path().join("workspaces");
    let workspaces = Workspaces::new(&root, dir.path());
    let ticket = TicketId::new(&TicketKey::default(), 8);
    let ws = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    std::fs::write(ws.path.join("new.txt"), "new\n").unwrap();
    let admin = repo.join(".git/worktrees/MC-8");
    let trash = workspaces.retire(&ws).await.unwrap();
    // For git and for the next attempt, the worktree is gone now; its files wait in the trash.
    assert!(!ws.path.exists());
    assert!(!admin.exists());
    assert_eq!(worktrees(&repo).len(), 1);
    assert!(!trash.is_empty());
    assert_eq!(
        listing(&root.join(".trash")).len(),
        2,
        "the folder and its admin folder"
    );
    git(&repo, &["rev-parse", "--verify", "refs/heads/mission/MC-8"]);
    let again = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
    assert!(again.path.join("README").is_file());
    trash.empty().await;
    assert_eq!(listing(&root.join(".trash")), Vec::<String>::new());

    // What a process left in the trash (it stopped before deleting) is swept.
    let left = workspaces.retire(&again).await.unwrap();
    assert_eq!(listing(&root.join(".trash")).len(), 2);
    drop(left);
    workspaces.sweep_trash().await;
    assert_eq!(listing(&root.join(".trash")), Vec::<String>::new());
    assert_eq!(worktrees(&repo).len(), 1);

    // A plain folder is set aside the same way.
    let plain = workspaces
        .prepare(&TicketId::new(&TicketKey::default(), 9), None)
        .await
        .unwrap();
    std::fs::write(plain.path.join("f"), "x").unwrap();
    let trash = workspaces.retire(&plain).await.unwrap();
    assert!(!plain.path.exists());
    trash.empty().await;
    assert_eq!(listing(&root.join(".trash")), Vec::<String>::new());
}

#[tokio::test]
async fn a_hostile_git_file_deletes_nothing_outside_the_worktree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let workspaces = Workspaces::new(dir.path().join("workspaces"), dir.path());
    let other = workspaces
        .prepare(&TicketId::new(&TicketKey::default(), 2), Some("repo"))
        .await
        .unwrap();
    // A folder outside the repository that looks like an admin folder pointing back.
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), "keep\n").unwrap();
    let admin_other = repo.join(".git/worktrees/MC-2");
    let cases = [
        ("a folder outside the repository", victim.clone()),
        ("another worktree's admin folder", admin_other.clone()),
        (
            "a path out of the worktrees folder",
            repo.join(".git/worktrees/../../../victim"),
        ),
    ];
    for (n, (case, target)) in cases.into_iter().enumerate() {
        let ticket = TicketId::new(&TicketKey::default(), 10 + n as i64);
        let ws = workspaces.prepare(&ticket, Some("repo")).await.unwrap();
        let dot_git = ws.path.join(".git");
        std::fs::write(victim.join("gitdir"), format!("{}\n", dot_git.display())).unwrap();
        std::fs::write(&dot_git, format!("gitdir: {}\n", target.display())).unwrap();
        workspaces.remove(&ws).await.unwrap();
        assert!(!ws.path.exists(), "{case}");
        assert!(victim.join("keep.txt").exists(), "{case}");
        assert!(admin_other.join("gitdir").exists(), "{case}");
        // Its own registration was dropped all the same; the other worktree is intact.
        assert!(
            !repo.join(format!(".git/worktrees/{ticket}")).exists(),
            "{case}"
        );
        assert_eq!(worktrees(&repo).len(), 2, "{case}");
        assert_eq!(
            git(&other.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
            "mission/MC-2",
            "{case}"
        );
    }
}
