//! A commit's reachability and a branch's head read from the repository's files without git
//! (`git::local`), against real repositories: the plain case answers in-process and agrees
//! with git; anything unusual (a moved branch, packed objects, a blob, a symlink, a FIFO, a
//! malformed ref, an unknown layout) answers nothing in-process and is left to git.

use mission_core::CommitSha;
use mission_core::evidence::CommitCheck;
use mission_engine::git::{self, local};
use mission_testkit::git;
use std::path::{Path, PathBuf};

fn sha(text: &str) -> CommitSha {
    CommitSha::parse(text).unwrap()
}

const BRANCH: &str = "mission/MC-1";

/// A repository with `main` and the branch `mission/MC-1` two commits ahead; its two commits.
fn repo(dir: &Path) -> (PathBuf, String, String) {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
    git(&repo, &["checkout", "-q", "-b", BRANCH]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "-q", "main"]);
    (repo, first, second)
}

fn ref_file(repo: &Path) -> PathBuf {
    repo.join(".git/refs/heads").join(BRANCH)
}

#[tokio::test]
async fn the_branch_tip_is_read_in_process_and_everything_else_is_left_to_git() {
    // (case, what to do to the repository, evidence: first or second commit, in-process
    // answer, git's answer)
    type Setup = fn(&Path, &str, &str) -> Option<String>;
    let cases: Vec<(&str, Setup, bool, bool, CommitCheck)> = vec![
        (
            "the tip, loose",
            |_, _, _| None,
            false,
            true,
            CommitCheck::Reachable,
        ),
        (
            "an older commit of the branch",
            |_, _, _| None,
            true,
            false,
            CommitCheck::Reachable,
        ),
        (
            "the branch reset: the commit vanished from it",
            |repo, first, _| {
                git(repo, &["update-ref", "refs/heads/mission/MC-1", first]);
                None
            },
            false,
            false,
            CommitCheck::NotReachable,
        ),
        (
            "the ref packed",
            |repo, _, _| {
                git(repo, &["pack-refs", "--all"]);
                assert!(!ref_file(repo).exists());
                None
            },
            false,
            true,
            CommitCheck::Reachable,
        ),
        (
            "the objects packed",
            |repo, _, _| {
                git(repo, &["repack", "-q", "-a", "-d"]);
                git(repo, &["prune-packed"]);
                None
            },
            false,
            false,
            CommitCheck::Reachable,
        ),
        (
            "the ref written by hand to a blob, the blob as evidence",
            |repo, _, _| {
                std::fs::write(repo.join("blob.txt"), "not a commit\n").unwrap();
                let blob = git(repo, &["hash-object", "-w", "blob.txt"]);
                std::fs::write(ref_file(repo), format!("{blob}\n")).unwrap();
                Some(blob)
            },
            false,
            false,
            CommitCheck::Missing,
        ),
        (
            "the ref a symlink to a file outside holding the sha",
            |repo, _, second| {
                let outside = repo.parent().unwrap().join("outside-ref");
                std::fs::write(&outside, format!("{second}\n")).unwrap();
                std::fs::remove_file(ref_file(repo)).unwrap();
                std::os::unix::fs::symlink(&outside, ref_file(repo)).unwrap();
                None
            },
            false,
            false,
            CommitCheck::Reachable,
        ),
        (
            "the branch's folder a symlink to a folder outside",
            |repo, _, second| {
                let outside = repo.parent().unwrap().join("outside-refs");
                std::fs::create_dir(&outside).unwrap();
                std::fs::write(outside.join("MC-1"), format!("{second}\n")).unwrap();
                let folder = repo.join(".git/refs/heads/mission");
                std::fs::remove_dir_all(&folder).unwrap();
                std::os::unix::fs::symlink(&outside, &folder).unwrap();
                None
            },
            false,
            false,
            CommitCheck::Reachable,
        ),
        (
            "a symbolic ref",
            |repo, _, _| {
                std::fs::write(ref_file(repo), "ref: refs/heads/main\n").unwrap();
                None
            },
            false,
            false,
            CommitCheck::NotReachable,
        ),
    ];
    for (case, setup, older, in_process, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (repo, first, second) = repo(dir.path());
        let evidence = setup(&repo, &first, &second)
            .unwrap_or_else(|| if older { first.clone() } else { second.clone() });
        let evidence = sha(&evidence);
        assert_eq!(
            local::is_branch_tip(&repo, &evidence, BRANCH),
            in_process,
            "{case}"
        );
        let check = git::check_commit(&repo, &evidence, BRANCH).await;
        // Git follows a symlinked ref where the reading here does not: only the answer's
        // source differs, never a pass that git would refuse.
        assert_eq!(check, expected, "{case}");
    }
}

#[tokio::test]
async fn what_is_not_a_plain_ref_is_not_read_and_a_fifo_does_not_hold_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, second) = repo(dir.path());
    let common = local::common_dir(&repo).unwrap();
    assert_eq!(common, repo.join(".git").canonicalize().unwrap());
    assert_eq!(local::branch(&common, BRANCH), Some(sha(&second)));
    assert_eq!(
        git::branch_head(&repo, BRANCH).await.unwrap(),
        Some(sha(&second))
    );
    for (case, content) in [
        ("garbage", "garbage\n"),
        ("a short sha", "abc123\n"),
        (
            "two lines",
            "0123456789012345678901234567890123456789\nmore\n",
        ),
        ("empty", ""),
    ] {
        std::fs::write(ref_file(&repo), content).unwrap();
        assert_eq!(local::branch(&common, BRANCH), None, "{case}");
        assert!(
            !local::is_branch_tip(&repo, &sha(&second), BRANCH),
            "{case}"
        );
        assert_ne!(
            git::check_commit(&repo, &sha(&second), BRANCH).await,
            CommitCheck::Reachable,
            "{case}"
        );
    }
    // A FIFO in place of the ref: opened without blocking, refused as not a regular file.
    std::fs::remove_file(ref_file(&repo)).unwrap();
    nix::unistd::mkfifo(&ref_file(&repo), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(local::branch(&common, BRANCH), None);
    // Names that are not plain ref names are not looked up.
    for name in [
        "../../HEAD",
        "mission/../main",
        "mission//MC-1",
        "mission/MC-1.lock",
        "",
    ] {
        assert_eq!(local::branch(&common, name), None, "{name}");
    }
}

#[test]
fn the_common_dir_of_each_layout_and_none_of_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, second) = repo(dir.path());
    let common = repo.join(".git").canonicalize().unwrap();
    // A linked worktree as the repository: its `.git` file, its admin folder's `commondir`.
    let linked = dir.path().join("linked");
    git(
        &repo,
        &["worktree", "add", "-q", linked.to_str().unwrap(), BRANCH],
    );
    assert_eq!(local::common_dir(&linked), Some(common.clone()));
    assert!(local::is_branch_tip(&linked, &sha(&second), BRANCH));
    // A bare clone.
    let bare = dir.path().join("bare.git");
    git(
        dir.path(),
        &["clone", "-q", "--bare", repo.to_str().unwrap(), "bare.git"],
    );
    assert_eq!(local::common_dir(&bare), Some(bare.canonicalize().unwrap()));
    assert!(local::is_branch_tip(&bare, &sha(&second), BRANCH));
    // A folder that is no repository, and a subfolder of one (git would look upwards).
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    assert_eq!(local::common_dir(&plain), None);
    std::fs::create_dir(repo.join("sub")).unwrap();
    assert_eq!(local::common_dir(&repo.join("sub")), None);
    // A `.git` file naming a git dir whose `commondir` leads somewhere it is not a worktree of.
    let fake = dir.path().join("fake-admin");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("commondir"), format!("{}\n", common.display())).unwrap();
    let pointing = dir.path().join("pointing");
    std::fs::create_dir(&pointing).unwrap();
    std::fs::write(
        pointing.join(".git"),
        format!("gitdir: {}\n", fake.display()),
    )
    .unwrap();
    assert_eq!(local::common_dir(&pointing), None);
    // A `.git` symlink is left to git.
    let linked_git = dir.path().join("symlinked");
    std::fs::create_dir(&linked_git).unwrap();
    std::os::unix::fs::symlink(&common, linked_git.join(".git")).unwrap();
    assert_eq!(local::common_dir(&linked_git), None);
}
