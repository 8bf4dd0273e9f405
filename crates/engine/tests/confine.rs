//! A confined start without the launcher: the thread that starts the process restricts itself
//! first, the process inherits the restriction, and no thread of the server stays restricted.

use mission_engine::sandbox::{Confined, Policy, Spec, Status};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// `NoNewPrivs` of every thread of this process, by thread id.
fn threads_no_new_privs() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue; // ended meanwhile
        };
        let flag = text
            .lines()
            .find_map(|l| l.strip_prefix("NoNewPrivs:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        found.push((entry.file_name().to_string_lossy().into_owned(), flag));
    }
    found
}

fn spec(dir: &Path, landlock: bool) -> Spec {
    let system = ["/usr", "/bin", "/lib", "/lib64", "/etc", "/proc", "/dev"];
    Spec {
        program: PathBuf::from("/bin/sh"),
        arg0: "sh".to_owned(),
        landlock,
        policy: Policy {
            read: system.iter().map(PathBuf::from).collect(),
            write: vec![dir.join("own")],
        },
        run_as: None,
        status_file: dir.join("own/sandbox.status"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confined_start_restricts_the_process_and_no_thread_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("own")).unwrap();
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let landlock = mission_engine::sandbox::probe().is_available();
    for _ in 0..3 {
        let script = format!(
            "grep NoNewPrivs /proc/self/status; \
             echo mine > {own}/f && echo wrote-own; \
             (echo theirs > {other}/f) 2>/dev/null && echo wrote-other; true",
            own = dir.path().join("own").display(),
            other = dir.path().join("other").display(),
        );
        let mut confined = Confined::restricted(spec(dir.path(), true), &["-c".to_owned(), script]);
        confined.stdout(Stdio::piped()).env_clear();
        let child = confined.spawn().await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NoNewPrivs:\t1"), "{text}");
        assert!(text.contains("wrote-own"), "{text}");
        if landlock {
            assert!(!text.contains("wrote-other"), "{text}");
            assert!(!dir.path().join("other/f").exists());
        }
        let status: Status =
            serde_json::from_slice(&std::fs::read(dir.path().join("own/sandbox.status")).unwrap())
                .unwrap();
        assert!(status.no_new_privs);
        if landlock {
            assert_eq!(status.landlock, "full");
        }
    }
    // The server's threads (the runtime's workers and its blocking pool) are as they were:
    // they can write anywhere the process can, and none holds `no_new_privs`.
    let unrestricted = tokio::task::spawn_blocking({
        let other = dir.path().join("other/server");
        move || std::fs::write(other, "server")
    })
    .await
    .unwrap();
    assert!(unrestricted.is_ok());
    std::fs::write(dir.path().join("other/server-too"), "server").unwrap();
    for (thread, flag) in threads_no_new_privs() {
        assert_eq!(
            flag, "0",
            "thread {thread} of the server holds no_new_privs"
        );
    }
}

#[tokio::test]
async fn a_spec_that_changes_the_user_is_not_started_by_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("own")).unwrap();
    let mut spec = spec(dir.path(), false);
    spec.run_as = Some((65534, 65534));
    let confined = Confined::restricted(spec, &["-c".to_owned(), "true".to_owned()]);
    let error = confined.spawn().await.unwrap_err();
    assert!(error.to_string().contains("launcher"), "{error}");
}
