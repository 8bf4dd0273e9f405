//! `mission init [DIR]`: lays out an instance — `mission.toml`, `scripts/worker.sh`,
//! `prompts/default.md` (the agents' prompt template, to edit), `tasks/`, the data folder (0700)
//! and the store. Idempotent: what exists is kept as it is.

use super::{cli_change, connect_store, migrate_store};
use crate::cli::InitArgs;
use crate::config::{self, CONFIG_FILE, StoreLocation};
use crate::exit::CliError;
use crate::output;
use mission_core::{TicketDraft, TicketId};
use mission_store::TicketFilter;
use mission_store::prelude::*;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

const EXAMPLE_CONFIG: &str = include_str!("../../assets/mission.toml");
const EXAMPLE_WORKER: &str = include_str!("../../assets/worker.sh");
const EXAMPLE_TASKS: &[(&str, &str)] = &[
    ("triage.md", include_str!("../../assets/tasks/triage.md")),
    (
        "board-sweep.md",
        include_str!("../../assets/tasks/board-sweep.md"),
    ),
    (
        "disk-check.md",
        include_str!("../../assets/tasks/disk-check.md"),
    ),
    (
        "operator-audit.md",
        include_str!("../../assets/tasks/operator-audit.md"),
    ),
    (
        "auto-review.md",
        include_str!("../../assets/tasks/auto-review.md"),
    ),
    (
        "inbox-drain.md",
        include_str!("../../assets/tasks/inbox-drain.md"),
    ),
];

#[derive(serde::Serialize)]
struct InitReport {
    dir: String,
    config: String,
    store: String,
    created: Vec<String>,
    kept: Vec<String>,
    demo_tickets: Vec<TicketId>,
}

pub async fn run(args: InitArgs) -> Result<ExitCode, CliError> {
    let dir = args.dir.unwrap_or_else(|| ".".into());
    let mut created = Vec::new();
    let mut kept = Vec::new();
    let mut note = |path: &Path, made: bool| {
        let shown = path.display().to_string();
        if made {
            created.push(shown)
        } else {
            kept.push(shown)
        }
    };

    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", dir.display())))?;
    let config_file = dir.join(CONFIG_FILE);
    note(
        &config_file,
        write_new(&config_file, EXAMPLE_CONFIG, false)?,
    );
    let scripts = dir.join("scripts");
    let worker = scripts.join("worker.sh");
    if !worker.exists() {
        std::fs::create_dir_all(&scripts)?;
    }
    note(&worker, write_new(&worker, EXAMPLE_WORKER, true)?);
    let prompts = dir.join("prompts");
    let prompt = dir.join(config::DEFAULT_PROMPT);
    if !prompt.exists() {
        make_dir(&prompts)?;
    }
    note(
        &prompt,
        write_new(&prompt, mission_engine::prompt::DEFAULT, false)?,
    );
    let tasks = dir.join("tasks");
    let tasks_made = make_dir(&tasks)?;
    note(&tasks, tasks_made);
    if tasks_made {
        // Example tasks go into a new tasks folder only: a task deleted on purpose stays deleted.
        for (file, text) in EXAMPLE_TASKS {
            write_new(&tasks.join(file), text, false)?;
        }
    }

    // From here on, the instance is whatever its (possibly pre-existing) config says.
    let instance = config::load(Some(&config_file))?;
    note(&instance.data_dir, make_dir(&instance.data_dir)?);
    let store = match &instance.store {
        StoreLocation::Sqlite(path) => {
            let existed = path.exists();
            let store = connect_store(&instance, true).await?;
            migrate_store(&instance, &store).await?;
            note(path, !existed);
            store
        }
        StoreLocation::Postgres(_) => {
            // The database exists (an administrator made it); its schema is new or kept.
            let store = connect_store(&instance, true).await?;
            let report = migrate_store(&instance, &store).await?;
            note(
                Path::new(&instance.store.display()),
                report.from_version == 0,
            );
            store
        }
    };

    let mut demo_tickets = Vec::new();
    if args.demo {
        let empty = store
            .list_tickets(&TicketFilter {
                limit: Some(1),
                ..TicketFilter::default()
            })
            .await?
            .is_empty();
        if empty {
            let repo = dir.join("repo");
            note(&repo, make_demo_repo(&repo)?);
            demo_tickets = add_demo_tickets(&instance, &store).await?;
        }
    }
    store.close().await;

    let report = InitReport {
        dir: dir.display().to_string(),
        config: config_file.display().to_string(),
        store: instance.store.display(),
        created,
        kept,
        demo_tickets,
    };
    if args.json {
        output::json_line(&report)?;
    } else {
        let mut text = String::new();
        for path in &report.created {
            text.push_str(&format!("created {path}\n"));
        }
        for path in &report.kept {
            text.push_str(&format!("kept    {path}\n"));
        }
        if !report.demo_tickets.is_empty() {
            let ids: Vec<String> = report.demo_tickets.iter().map(|t| t.to_string()).collect();
            text.push_str(&format!("added demo tickets {}\n", ids.join(", ")));
        }
        text.push_str(&format!(
            "instance ready: `mission --config {0} serve` runs it; `mission --config {0} ticket list` shows the board\n",
            report.config
        ));
        output::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `content` to `path` unless it exists; returns whether it wrote.
fn write_new(path: &Path, content: &str, executable: bool) -> Result<bool, CliError> {
    if path.exists() {
        return Ok(false);
    }
    std::fs::write(path, content)
        .map_err(|e| CliError::usage(format!("{}: cannot write: {e}", path.display())))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(true)
}

/// A small git repository for the demo tickets to work in.
fn make_demo_repo(repo: &Path) -> Result<bool, CliError> {
    if repo.join(".git").exists() {
        return Ok(false);
    }
    make_dir(repo)?;
    std::fs::write(
        repo.join("README.md"),
        "# Demo repository\n\nWorkers commit their notes here.\n",
    )?;
    let git = |args: &[&str]| -> Result<(), CliError> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "-c",
                "user.name=Mission Control",
                "-c",
                "user.email=mission@localhost",
            ])
            .args(args)
            .output()
            .map_err(|e| CliError::internal(format!("git: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(CliError::internal(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "README.md"])?;
    git(&["commit", "-q", "-m", "Initial commit"])?;
    Ok(true)
}

fn make_dir(path: &Path) -> Result<bool, CliError> {
    if path.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(path)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", path.display())))?;
    Ok(true)
}

/// A small board that shows each kind of answer `explain` gives.
async fn add_demo_tickets(
    instance: &config::Instance,
    store: &Arc<dyn Store>,
) -> Result<Vec<TicketId>, CliError> {
    let key = &instance.config.instance.key;
    let change = cli_change();
    let draft =
        |title: &str, assignee: Option<&str>, owner: Option<&str>, labels: &[&str]| TicketDraft {
            title: title.to_owned(),
            body: format!("{title}.\n\nThis is an example ticket made by `mission init --demo`."),
            assignee: assignee.map(str::to_owned),
            owner: owner.map(str::to_owned),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            evidence_policy: Some("commit".to_owned()),
            repo: Some("repo".to_owned()),
            ..TicketDraft::default()
        };
    let first = draft("Write the release notes", Some("luci"), None, &["docs"]).validate()?;
    let first = store
        .create_tickets(key, vec![first], &change)
        .await?
        .remove(0);
    let rest = vec![
        draft(
            "Plan the next campaign",
            Some("lucienne"),
            Some("lucienne"),
            &["campaign"],
        ),
        TicketDraft {
            depends_on: vec![first.id.clone()],
            ..draft(
                "Test the release notes links",
                Some("tessa"),
                None,
                &["docs", "tests"],
            )
        },
        draft("Investigate the flaky nightly build", None, None, &["ci"]),
    ];
    let rest = rest
        .into_iter()
        .map(TicketDraft::validate)
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids = vec![first.id];
    ids.extend(
        store
            .create_tickets(key, rest, &change)
            .await?
            .into_iter()
            .map(|t| t.id),
    );
    Ok(ids)
}
