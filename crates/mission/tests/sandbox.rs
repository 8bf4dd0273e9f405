//! The trust model, attacked through the real binary: a run is untrusted. Each test is one
//! attack a hostile agent would try — refused or contained — next to the run's own work
//! (a commit in its worktree, its callbacks) still succeeding.

mod common;

use common::{FAST, Instance, alive, wait_for};
use mission_testkit::git;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Shell functions for attack scripts: `try NAME COMMAND…` records `NAME=ok` or `NAME=denied`
/// in the run folder's `results`; `$I` is the instance folder.
const TRY: &str = r#"
R="$MISSION_RUN_DIR/results"
I=$(dirname "$MISSION_CONFIG")
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok" >> "$R"; else echo "$name=denied" >> "$R"; fi; }
"#;

/// The attacks on the instance a run must not own, then the run's own work.
const ATTACKS: &str = r#"
try store_read cat "$I/data/mission.db"
try store_write sh -c "echo x >> '$I/data/mission.db'"
if command -v sqlite3 >/dev/null; then
  try trigger_drop sqlite3 "$I/data/mission.db" "DROP TRIGGER events_no_delete; DELETE FROM events;"
else
  echo "trigger_drop=denied" >> "$R"
fi
try tasks_write sh -c "echo evil > '$I/tasks/evil.md'"
try config_write sh -c "echo '# evil' >> '$I/mission.toml'"
try config_read cat "$I/mission.toml"
try server_environ cat /proc/$PPID/environ
try other_runs ls "$I/data/runs"
try tmp_write sh -c 'echo x > "$TMPDIR/scratch"'
try run_dir_write sh -c 'echo x > "$MISSION_RUN_DIR/scratch"'
try own_commit sh -c 'echo work > work.txt && git add work.txt && git commit -qm work'
"$MISSION_BIN" run submit
"#;

fn results(instance: &Instance, id: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(instance.run_dir(id, 1).join("results"))
        .unwrap_or_else(|e| panic!("{id}: no results: {e}"));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A repository `repo` in the instance folder with one commit on `main`.
fn make_repo(instance: &Instance) -> std::path::PathBuf {
    mission_testkit::git_repo(&instance.path().join("repo"))
}

fn run_once(instance: &Instance) -> Value {
    let report = instance.dispatch(&["--lane", "normal"]);
    report["runs"][0].clone()
}

fn status(instance: &Instance, id: &str) -> Value {
    let text = std::fs::read_to_string(instance.run_dir(id, 1).join("sandbox.status")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Everything of the instance is out of reach; the run's own work succeeds.
#[test]
fn a_sandboxed_run_cannot_touch_the_instance_but_does_its_own_work() {
    let instance = Instance::with_script_worker(FAST, &format!("{TRY}{ATTACKS}"));
    make_repo(&instance);
    let events_before = instance.events().len();
    let id = instance.add(&[
        "--title",
        "attack",
        "--assignee",
        "script",
        "--repo",
        "repo",
    ]);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let got = results(&instance, &id);
    for attack in [
        "store_read",
        "store_write",
        "trigger_drop",
        "tasks_write",
        "config_write",
        "config_read",
        "server_environ",
        "other_runs",
    ] {
        assert_eq!(got[attack], "denied", "{attack}: {got:?}");
    }
    for own in ["tmp_write", "run_dir_write", "own_commit"] {
        assert_eq!(got[own], "ok", "{own}: {got:?}");
    }
    assert_eq!(
        instance.state(&id),
        "review",
        "the callback reached the server"
    );
    assert!(!instance.path().join("tasks/evil.md").exists());
    assert!(
        !std::fs::read_to_string(instance.config())
            .unwrap()
            .contains("evil")
    );
    // The timeline is whole: created, claimed, submitted (and nothing deleted before).
    assert!(instance.events().len() > events_before);
    let run = &instance.show(&id)["runs"][0];
    assert_ne!(run["head_before"], run["head_after"], "the commit: {run}");
    let enforced = status(&instance, &id);
    assert_eq!(enforced["landlock"], "full", "{enforced}");
    assert_eq!(enforced["capabilities_dropped"], true, "{enforced}");
    assert_eq!(enforced["no_new_privs"], true, "{enforced}");
}

/// With the kernel's Landlock missing (pretended), the run still starts and does its work,
/// unsandboxed (and says so); capabilities are still dropped, so the server's environment stays
/// out of reach. `mission serve` warns once.
#[test]
fn without_landlock_runs_start_unsandboxed_and_serve_warns_once() {
    let instance = Instance::with_script_worker(FAST, &format!("{TRY}{ATTACKS}"));
    make_repo(&instance);
    let id = instance.add(&[
        "--title",
        "no landlock",
        "--assignee",
        "script",
        "--repo",
        "repo",
    ]);
    let out = instance
        .command(&["dispatch", "--once", "--json"])
        .env("MISSION_TEST_NO_LANDLOCK", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = results(&instance, &id);
    assert_eq!(got["tasks_write"], "ok", "no sandbox: {got:?}");
    assert_eq!(got["server_environ"], "denied", "{got:?}");
    assert_eq!(got["own_commit"], "ok", "{got:?}");
    assert_eq!(instance.state(&id), "review");
    let enforced = status(&instance, &id);
    assert_eq!(enforced["landlock"], "off", "{enforced}");
    assert_eq!(enforced["capabilities_dropped"], true, "{enforced}");

    let server = instance.serve_with(&[("MISSION_TEST_NO_LANDLOCK", "1")]);
    let out = server.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("the sandbox is OFF").count(), 1, "{log}");
}

/// `sandbox = "off"` opts one worker out, explicitly; the others stay sandboxed.
#[test]
fn a_worker_can_opt_out_of_the_sandbox() {
    let script = format!("{TRY}try tasks_write sh -c \"echo x > '$I/tasks/x.md'\"\n");
    let instance = Instance::with_script_worker_keys(FAST, "sandbox = \"off\"", &script);
    let id = instance.add(&["--title", "off", "--assignee", "script"]);
    run_once(&instance);
    assert_eq!(results(&instance, &id)["tasks_write"], "ok");
    assert_eq!(status(&instance, &id)["landlock"], "off");
    let out = instance.run(&["task", "list"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the planted task file is broken"
    );
}

/// Each worker gets its own secrets (`env`, `env_pass`) and its own HOME; another worker's
/// run sees neither the variables nor, reading the first run's /proc environ, its secret.
#[test]
fn one_workers_secret_never_reaches_another_workers_run() {
    let secret_holder = r#"
[workers.holder]
runtime = "shell"
command = ["./holder.sh"]
env = { API_KEY = "secret-of-holder" }
env_pass = ["PASSED_TO_HOLDER"]
"#;
    let spy = format!(
        "{TRY}for i in 1 2 3 4 5 6 7 8 9 10; do grep -qs 'holder[.]sh' /proc/[0-9]*/cmdline && break; sleep 0.2; done\n\
         try sees_holder sh -c 'grep -qs \"holder[.]sh\" /proc/[0-9]*/cmdline'\n\
         try sees_env sh -c 'env | grep -q secret-of-holder'\n\
         try sees_passed sh -c 'env | grep -q passed-value'\n\
         try reads_proc sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr \"\\0\" \"\\n\" | grep -q secret-of-holder'\n"
    );
    let instance = Instance::with_script_worker(&format!("{FAST}{secret_holder}"), &spy);
    let holder = instance.path().join("holder.sh");
    std::fs::write(
        &holder,
        "#!/bin/sh\nenv > \"$MISSION_RUN_DIR/env\"\nsleep 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&holder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let held = instance.add(&["--title", "holds", "--assignee", "holder"]);
    let spied = instance.add(&["--title", "spies", "--assignee", "script"]);
    let out = instance
        .command(&["dispatch", "--once", "--lane", "normal", "--json"])
        .env("PASSED_TO_HOLDER", "passed-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let env = std::fs::read_to_string(instance.run_dir(&held, 1).join("env")).unwrap();
    assert!(env.contains("API_KEY=secret-of-holder"), "{env}");
    assert!(env.contains("PASSED_TO_HOLDER=passed-value"), "{env}");
    let home = instance.path().join("data/homes/holder");
    assert!(
        env.contains(&format!("HOME={}", home.display())),
        "a private home: {env}"
    );
    let got = results(&instance, &spied);
    assert_eq!(
        got["sees_holder"], "ok",
        "the holder ran beside the spy: {got:?}"
    );
    assert_eq!(got["sees_env"], "denied", "{got:?}");
    assert_eq!(got["sees_passed"], "denied", "{got:?}");
    assert_eq!(got["reads_proc"], "denied", "{got:?}");
}

/// A run plants `core.hooksPath` (and a hook in the main repository): refused by the sandbox;
/// and where the sandbox is off, the server's git never runs the hook.
#[test]
fn a_planted_git_hook_never_runs_in_the_server() {
    let plant = format!(
        "{TRY}mkdir -p \"$TMPDIR/hooks\"\n\
         printf '#!/bin/sh\\ntouch \"%s/HOOK-RAN\"\\n' \"$I\" > \"$TMPDIR/hooks/post-checkout\"\n\
         chmod +x \"$TMPDIR/hooks/post-checkout\"\n\
         cp -r \"$TMPDIR/hooks\" \"$I/data/planted-hooks\" 2>/dev/null\n\
         try hooks_path git config core.hooksPath \"$I/data/planted-hooks\"\n\
         try hook_file cp \"$TMPDIR/hooks/post-checkout\" \"$I/repo/.git/hooks/post-checkout\"\n"
    );
    for sandbox in ["on", "off"] {
        let instance =
            Instance::with_script_worker_keys(FAST, &format!("sandbox = \"{sandbox}\""), &plant);
        let repo = make_repo(&instance);
        let config_before = std::fs::read_to_string(repo.join(".git/config")).unwrap();
        let id = instance.add(&["--title", "plant", "--assignee", "script", "--repo", "repo"]);
        run_once(&instance);
        let got = results(&instance, &id);
        if sandbox == "on" {
            assert_eq!(got["hooks_path"], "denied", "{got:?}");
            assert_eq!(got["hook_file"], "denied", "{got:?}");
            assert_eq!(
                std::fs::read_to_string(repo.join(".git/config")).unwrap(),
                config_before
            );
        } else {
            assert_eq!(got["hooks_path"], "ok", "the plant took: {got:?}");
        }
        // The next ticket's worktree is checked out by the server's git.
        let next = instance.add(&["--title", "next", "--assignee", "luci", "--repo", "repo"]);
        run_once(&instance);
        assert!(
            instance.path().join("data/workspaces").join(&next).is_dir(),
            "{next}'s worktree"
        );
        assert!(
            !instance.path().join("HOOK-RAN").exists(),
            "sandbox {sandbox}: the planted hook ran in the server"
        );
    }
}

/// The default branch of the repository: a sandboxed run cannot move it; without the sandbox,
/// the check after the run restores it and fails the run.
#[test]
fn a_run_cannot_move_the_default_branch() {
    let attack = format!(
        "{TRY}try own_commit sh -c 'echo w > w.txt && git add w.txt && git commit -qm w'\n\
         try move_main git update-ref refs/heads/main HEAD\n"
    );
    for sandbox in ["on", "off"] {
        let instance =
            Instance::with_script_worker_keys(FAST, &format!("sandbox = \"{sandbox}\""), &attack);
        let repo = make_repo(&instance);
        let main_before = git(&repo, &["rev-parse", "main"]);
        let id = instance.add(&["--title", "move", "--assignee", "script", "--repo", "repo"]);
        let report = run_once(&instance);
        let got = results(&instance, &id);
        assert_eq!(got["own_commit"], "ok", "{got:?}");
        assert_eq!(git(&repo, &["rev-parse", "main"]), main_before, "{sandbox}");
        assert_ne!(
            git(&repo, &["rev-parse", &format!("mission/{id}")]),
            main_before,
            "the run's branch has its commit"
        );
        if sandbox == "on" {
            assert_eq!(got["move_main"], "denied", "{got:?}");
            assert_eq!(report["failure_class"], Value::Null, "{report}");
        } else {
            assert_eq!(got["move_main"], "ok", "{got:?}");
            assert_eq!(report["failure_class"], "agent_error", "{report}");
            assert!(
                report["detail"]
                    .as_str()
                    .unwrap()
                    .contains("protected branch refs/heads/main"),
                "{report}"
            );
        }
    }
}

/// A session id from the agent's stream reaches argv on resume: a hostile one never does.
#[test]
fn an_injected_session_id_never_reaches_argv() {
    let instance = Instance::with_fake_workers(FAST);
    // A second init line with a hostile id after a valid one: the first wins.
    let id = instance.add_with_body(
        "injects",
        "claude",
        b"fake-agent: session --dangerously-skip-permissions\nfake-agent: ask Which one?\nfake-agent: record\n",
    );
    run_once(&instance);
    assert_eq!(instance.state(&id), "needs_input");
    let session = instance.show(&id)["runs"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(mission_agents_valid(&session), "{session}");
    let log = std::fs::read_to_string(instance.run_dir(&id, 1).join("output.log")).unwrap();
    assert!(
        log.contains("[mission: warning: ignored an invalid session id"),
        "{log}"
    );
    instance.ok(&["ticket", "answer", &id, "that one"]);
    instance.dispatch(&["--lane", "needs-input"]);
    let argv = std::fs::read_to_string(instance.run_dir(&id, 2).join("received.argv")).unwrap();
    assert!(argv.contains(&format!("--resume\n{session}\n")), "{argv}");
    assert!(!argv.contains("--dangerously-skip-permissions"), "{argv}");

    // A hostile id as the very first one: no session at all; the answer starts afresh.
    let id = instance.add_with_body(
        "hostile first",
        "claude",
        b"fake-agent-session: --dangerously-skip-permissions\nfake-agent: record\nfake-agent: ask Which?\n",
    );
    run_once(&instance);
    assert_eq!(instance.show(&id)["runs"][0]["session_id"], Value::Null);
    instance.ok(&["ticket", "answer", &id, "this"]);
    instance.dispatch(&["--lane", "needs-input"]);
    let argv = std::fs::read_to_string(instance.run_dir(&id, 2).join("received.argv")).unwrap();
    assert!(!argv.contains("--resume"), "{argv}");
    assert!(!argv.contains("--dangerously-skip-permissions"), "{argv}");
}

fn mission_agents_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().next().unwrap().is_ascii_alphanumeric()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `setsid` and double-forked escapees are killed with their run and reaped by the server (a
/// child subreaper): gone from /proc, not left as zombies.
#[test]
fn nothing_a_run_starts_outlives_it() {
    let script = r#"
setsid sleep 300 >/dev/null 2>&1 < /dev/null &
echo $! > "$MISSION_RUN_DIR/escapee.pid"
sh -c 'setsid sleep 301 >/dev/null 2>&1 < /dev/null & echo $! > "$MISSION_RUN_DIR/double.pid"'
sh -c 'sleep 0.2 & exit 0' &
sleep 0.5
"$MISSION_BIN" run submit
"#;
    let instance = Instance::with_script_worker(FAST, script);
    let server = instance.serve();
    let id = instance.add(&["--title", "escape", "--assignee", "script"]);
    instance.wait_for_state(&id, "review", Duration::from_secs(20));
    let pid = |file: &str| -> i64 {
        let path = instance.run_dir(&id, 1).join(file);
        let mut text = String::new();
        wait_for(Duration::from_secs(10), || {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            !text.trim().is_empty()
        });
        text.trim().parse().unwrap()
    };
    for file in ["escapee.pid", "double.pid"] {
        let escapee = pid(file);
        wait_for(Duration::from_secs(20), || {
            !Path::new(&format!("/proc/{escapee}")).exists()
        });
        assert!(!alive(escapee));
    }
    // Reaped, not zombies of the server: none of its children is a zombie.
    let me = server.pid().to_string();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return true;
            };
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            !(fields[0] == "Z" && fields[1] == me)
        })
    });
    server.stop();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The store, logs, ticket and answer files, the sockets and the data folder are the server
/// user's alone — also a store that was world-readable before.
#[test]
fn files_are_private_and_a_second_server_is_refused() {
    let instance = Instance::with_fake_workers(FAST);
    let data = instance.path().join("data");
    std::fs::set_permissions(
        data.join("mission.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = instance.serve();
    let id = instance.add_with_body("asks", "claude", b"fake-agent: ask Which one?\n");
    instance.wait_for_state(&id, "needs_input", Duration::from_secs(20));
    instance.ok(&["ticket", "answer", &id, "that one"]);
    instance.wait_for_state(&id, "review", Duration::from_secs(20));
    assert_eq!(mode(&data), 0o700);
    for file in [
        data.join("mission.db"),
        data.join("mission.db-wal"),
        data.join("wake.sock"),
        data.join("serve.lock"),
        instance.run_dir(&id, 1).join("output.log"),
        instance.run_dir(&id, 1).join("ticket.md"),
        instance.run_dir(&id, 1).join("prompt.md"),
        instance.run_dir(&id, 2).join("answer.md"),
    ] {
        assert_eq!(
            mode(&file) & 0o077,
            0,
            "{} is {:o}",
            file.display(),
            mode(&file)
        );
    }
    for dir in [
        data.join("runs"),
        instance.run_dir(&id, 1),
        data.join("workspaces"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    // A second server on the same instance: refused, the first keeps its socket.
    let out = instance.run(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "another `mission serve` (pid {}) is running",
            server.pid()
        )),
        "{stderr}"
    );
    let next = instance.add_with_body("after", "luci", b"fake-agent: succeed\n");
    instance.wait_for_state(&next, "review", Duration::from_secs(20));
    server.stop();
}

/// The prompt tells the agent its ticket file, its branch and the absolute `mission`; an agent
/// whose shell resets PATH (as Codex's login shell does) still calls back through it.
#[test]
fn agents_whose_shell_resets_path_call_back_through_the_absolute_path() {
    let instance = Instance::with_fake_workers(FAST);
    make_repo(&instance);
    for worker in ["claude", "codex", "luci"] {
        let id = instance.add_with_body(
            &format!("{worker} resets PATH"),
            worker,
            b"fake-agent: record\nfake-agent: reset-path\nfake-agent: progress halfway\nfake-agent: submit\n",
        );
        instance.ok(&["ticket", "edit", &id, "--repo", "repo"]);
        let report = run_once(&instance);
        assert_eq!(report["failure_class"], Value::Null, "{worker}: {report}");
        assert_eq!(instance.state(&id), "review", "{worker}");
        let env = std::fs::read_to_string(instance.run_dir(&id, 1).join("received.env")).unwrap();
        assert!(
            env.contains(&format!("MISSION_BIN={}", common::MISSION)),
            "{worker}: {env}"
        );
        if worker != "luci" {
            let prompt =
                std::fs::read_to_string(instance.run_dir(&id, 1).join("received.prompt")).unwrap();
            let ticket_file = instance.run_dir(&id, 1).join("ticket.md");
            for needle in [
                format!("{} run submit", common::MISSION),
                format!("{} run ask", common::MISSION),
                ticket_file.display().to_string(),
                format!("`mission/{id}`"),
            ] {
                assert!(prompt.contains(&needle), "{worker}: {needle} in {prompt}");
            }
            let argv =
                std::fs::read_to_string(instance.run_dir(&id, 1).join("received.argv")).unwrap();
            assert!(!argv.contains("resets PATH"), "no ticket text in argv");
        }
        let events = instance.events();
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "run.progress" && e["ticket"] == id.as_str())
        );
    }
}

/// `mission init` writes the default template for users to edit; a broken one is a
/// configuration error with its file and line, and so is a worker's missing template.
#[test]
fn prompt_templates_are_checked_with_file_and_line() {
    let instance = Instance::reference();
    let template = instance.path().join("prompts/default.md");
    let text = std::fs::read_to_string(&template).unwrap();
    assert!(text.contains("{{ mission }} run ask"), "{text}");
    std::fs::write(&template, "Ticket {{ ticket }}\nFile {{ ticket_body }}\n").unwrap();
    let out = instance.run(&["ticket", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: undefined value", template.display())),
        "{stderr}"
    );
    std::fs::write(&template, "{% if ticket %}\nno end\n").unwrap();
    let stderr = String::from_utf8_lossy(&instance.run(&["ticket", "list"]).stderr).into_owned();
    assert!(stderr.contains("prompts/default.md:"), "{stderr}");
    assert!(stderr.contains("syntax error"), "{stderr}");
    std::fs::write(&template, &text).unwrap();
    instance.ok(&["ticket", "list"]);

    let config = std::fs::read_to_string(instance.config()).unwrap();
    std::fs::write(
        instance.config(),
        config.replacen(
            "[workers.luci]\n",
            "[workers.luci]\nprompt = \"prompts/missing.md\"\n",
            1,
        ),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&instance.run(&["ticket", "list"]).stderr).into_owned();
    assert!(
        stderr.contains("key `workers.luci.prompt`: no file"),
        "{stderr}"
    );
}

/// The unprivileged user these tests run the server as, when they run as root.
const TEST_USER: &str = "mission-sandbox-test";

/// `(uid, gid)` of [`TEST_USER`], created when missing; `None` when not running as root (the
/// tests then run as the unprivileged user they are).
fn unprivileged_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, TEST_USER]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                TEST_USER,
            ])
            .output()
            .expect("useradd, to create an unprivileged user for this test");
        assert!(
            out.status.success() || id("-u").is_some(),
            "FIXME: cannot create the user {TEST_USER}: {out:?}"
        );
    }
    Some((id("-u")?, id("-g")?))
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_all(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// As an ordinary user, the server's environment is hidden by the server being non-dumpable —
/// even with the sandbox off — and the sandbox holds as it does for root.
#[test]
fn as_an_unprivileged_user_the_server_environment_stays_hidden() {
    let user = if running_as_root() {
        unprivileged_user()
    } else {
        None
    };
    let script = format!(
        "{TRY}try server_environ sh -c 'tr \"\\0\" \"\\n\" < /proc/$PPID/environ | grep -q unprivileged-secret'\n{ATTACKS}"
    );
    for sandbox in ["on", "off"] {
        let instance =
            Instance::with_script_worker_keys(FAST, &format!("sandbox = \"{sandbox}\""), &script);
        make_repo(&instance);
        let id = instance.add(&["--title", "spy", "--assignee", "script", "--repo", "repo"]);
        let mut command = match user {
            Some((uid, gid)) => {
                chown_all(instance.path(), uid, gid);
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(common::MISSION);
                command
            }
            None => Command::new(common::MISSION),
        };
        let out = command
            .args(["dispatch", "--once", "--lane", "normal", "--json"])
            .current_dir(instance.path())
            .env_remove("MISSION_CONFIG")
            .env("PATH", mission_testkit::path_with(&instance.bin))
            .env("HOME", instance.path())
            .env("SERVER_SECRET", "unprivileged-secret")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{sandbox}: {out:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["runs"][0]["failure_class"],
            Value::Null,
            "{sandbox}: {report}"
        );
        let got = results(&instance, &id);
        assert_eq!(got["server_environ"], "denied", "{sandbox}: {got:?}");
        assert_eq!(got["own_commit"], "ok", "{sandbox}: {got:?}");
        if sandbox == "on" {
            for attack in ["store_write", "tasks_write", "config_read"] {
                assert_eq!(got[attack], "denied", "{attack}: {got:?}");
            }
        }
        let enforced = status(&instance, &id);
        if let Some((uid, _)) = user {
            assert_eq!(enforced["uid"], uid, "{enforced}");
        }
        assert_eq!(instance.state(&id), "review", "{sandbox}");
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A server running as root runs a worker's runs as its `run_as` user; a server that is not root
/// refuses such a worker's runs rather than running them as itself.
#[test]
fn a_worker_runs_as_its_run_as_user() {
    let script = format!(
        "{TRY}id -u > \"$MISSION_RUN_DIR/uid\"\n\
         try server_environ cat /proc/$PPID/environ\n\
         try store_read cat \"$I/data/mission.db\"\n\
         try own_work sh -c 'echo work > work.txt'\n\
         \"$MISSION_BIN\" run submit\n"
    );
    let instance =
        Instance::with_script_worker_keys(FAST, &format!("run_as = \"{TEST_USER}\""), &script);
    let id = instance.add(&["--title", "as another user", "--assignee", "script"]);
    if !running_as_root() {
        let report = run_once(&instance);
        assert_eq!(report["failure_class"], "runtime_missing", "{report}");
        assert!(
            report["detail"]
                .as_str()
                .unwrap()
                .contains("needs a server running as root"),
            "{report}"
        );
        return;
    }
    let (uid, _) = unprivileged_user().unwrap();
    // The operator lets the runs' user enter the instance folder (not list it).
    std::fs::set_permissions(instance.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    assert_eq!(instance.state(&id), "review");
    let run_dir = instance.run_dir(&id, 1);
    let ran_as = std::fs::read_to_string(run_dir.join("uid")).unwrap();
    assert_eq!(ran_as.trim(), uid.to_string());
    let got = results(&instance, &id);
    assert_eq!(got["server_environ"], "denied", "{got:?}");
    assert_eq!(got["store_read"], "denied", "{got:?}");
    assert_eq!(got["own_work"], "ok", "{got:?}");
    assert_eq!(status(&instance, &id)["uid"], uid);
    assert_eq!(mode(&instance.path().join("data")), 0o711);
    assert_eq!(mode(&instance.path().join("data/mission.db")) & 0o077, 0);
}

/// The launcher is the binary's own hidden command: not in the help people read.
#[test]
fn the_launcher_is_hidden_from_help() {
    let out = Command::new(common::MISSION)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve"), "{help}");
    assert!(!help.contains("run-sandboxed"), "{help}");
}

/// The small launcher started other than as the runner starts it: one line naming its usage,
/// the setup-failure exit code, and nothing executed.
#[test]
fn the_small_launcher_refuses_anything_but_a_spec() {
    let launcher = env!("CARGO_BIN_EXE_mission-sandbox");
    for args in [
        &[][..],
        &["--spec"][..],
        &["sh", "-c", "true"][..],
        &["--spec", "/nonexistent", "sh"][..],
    ] {
        let out = Command::new(launcher).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(126), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("usage"), "{args:?}: {stderr}");
    }
    let out = Command::new(launcher)
        .args(["--spec", "/nonexistent/sandbox.json", "--"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/sandbox.json"), "{stderr}");
}

/// The configured test command runs the ticket's own code (here a script the agent committed):
/// the harness runs it in the same sandbox as the worker's runs, so the code cannot reach the
/// instance through it either, while the test itself does its work.
#[test]
fn a_test_the_harness_runs_is_sandboxed_like_the_run() {
    let script = format!(
        "cat > tests.sh <<'EOT'\n{TEST_ATTACKS}EOT\ngit add tests.sh && git commit -qm tests\n\"$MISSION_BIN\" run evidence test unit\n\"$MISSION_BIN\" run submit\n"
    );
    let instance = Instance::with_script_worker(
        &format!("{FAST}\n[[evidence.tests]]\nname = \"unit\"\ncommand = [\"sh\", \"tests.sh\"]\n"),
        &script,
    );
    make_repo(&instance);
    let id = instance.add(&["--title", "tests", "--assignee", "script", "--repo", "repo"]);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let shown = instance.show(&id);
    let test = shown["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["evidence"]["kind"] == "test")
        .unwrap_or_else(|| panic!("no test evidence: {shown}"))
        .clone();
    let output = test["evidence"]["output_tail"].as_str().unwrap();
    for attack in ["store_read", "config_read", "tasks_write", "server_environ"] {
        assert!(
            output.contains(&format!("{attack}=denied")),
            "{attack}: {output}"
        );
    }
    assert!(output.contains("workspace_write=ok"), "{output}");
    assert_eq!(test["evidence"]["exit_code"], 0, "{test}");
    assert!(!instance.path().join("tasks/evil.md").exists());
}

/// The attack script a run commits as its tests: prints `NAME=ok|denied` lines.
const TEST_ATTACKS: &str = r#"I=$(dirname "$MISSION_CONFIG")
t() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=denied"; fi; }
t store_read cat "$I/data/mission.db"
t config_read cat "$I/mission.toml"
t tasks_write sh -c "echo evil > '$I/tasks/evil.md'"
t server_environ cat /proc/$PPID/environ
t workspace_write sh -c 'echo ran > test-output.txt'
exit 0
"#;

/// A worker run outside a ticket's attempt — here an inbox handler started by inbox-drain — is
/// confined like a run: the instance is out of its reach, and it acts over its own socket.
#[test]
fn an_inbox_handler_is_sandboxed_and_acts_over_its_socket() {
    let instance = Instance::with_fake_workers(&format!(
        "{FAST}\n[inbox]\nquestions_to = \"worker:council\"\n\n[workers.council]\nruntime = \"shell\"\ncommand = [\"./council.sh\"]\n"
    ));
    let script = format!(
        "#!/bin/sh\n{TRY}try store_read cat \"$I/data/mission.db\"\ntry config_read cat \"$I/mission.toml\"\ntry tasks_write sh -c \"echo evil > '$I/tasks/evil.md'\"\nexec \"$MISSION_BIN\" inbox act \"$MISSION_INBOX_ITEM\" answered --text \"use postgres\"\n"
    );
    let path = instance.path().join("council.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        instance.path().join("tasks/drain.md"),
        "+++\nkind = \"inbox-drain\"\nevery = \"1h\"\n+++\n",
    )
    .unwrap();
    let id = instance.add(&[
        "--title",
        "asks",
        "--assignee",
        "luci",
        "--body",
        "fake-agent: ask Which database?\n",
    ]);
    instance.dispatch(&["--lane", "normal"]);
    assert_eq!(instance.state(&id), "needs_input");
    let report = instance.json(&["task", "run", "drain"]);
    assert_eq!(report["outcome"], "acted", "{report}");
    let text =
        std::fs::read_to_string(instance.path().join("data/runs/inbox/1/1/results")).unwrap();
    for attack in ["store_read", "config_read", "tasks_write"] {
        assert!(
            text.contains(&format!("{attack}=denied")),
            "{attack}: {text}"
        );
    }
    assert!(!instance.path().join("tasks/evil.md").exists());
    assert_eq!(
        instance.state(&id),
        "todo",
        "the answer requeued the ticket"
    );
}
