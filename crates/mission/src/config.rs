//! Loading the configuration: `mission.toml` (from `--config`, `MISSION_CONFIG`, or the current
//! folder) with `MISSION_SECTION__KEY` environment overrides. Any problem names the file (or the
//! variable), the key and the problem, in one line, and nothing starts.

use crate::exit::CliError;
use mission_core::Workforce;
use mission_core::config::Config;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "mission.toml";

/// `MISSION_*` variables that are not configuration: set for runs and task runs, or read by the
/// CLI itself. They are not overrides, and not worth a warning either.
const RESERVED_ENV: &[&str] = &[
    "MISSION_CONFIG",
    "MISSION_LOG",
    "MISSION_BIN",
    "MISSION_RUN_TOKEN",
    "MISSION_RUN",
    "MISSION_TICKET",
    "MISSION_TICKET_FILE",
    "MISSION_ATTEMPT",
    "MISSION_RUN_DIR",
    "MISSION_TASK",
    "MISSION_TASK_RUN",
    "MISSION_CALL",
    "MISSION_INBOX_ITEM",
    "MISSION_WORKER",
    "MISSION_PROMPT_FILE",
    "MISSION_RUN_SOCKET",
    mission_engine::sandbox::PRETEND_NO_LANDLOCK,
];

/// Whether a variable has the shape of an override: `MISSION_SECTION__KEY` (more levels joined
/// by double underscores), every part non-empty.
fn is_override(name: &str) -> bool {
    name.strip_prefix("MISSION_").is_some_and(|rest| {
        let parts: Vec<&str> = rest.split("__").collect();
        parts.len() >= 2 && parts.iter().all(|p| !p.is_empty())
    })
}

/// A loaded, checked instance configuration with its paths resolved.
#[derive(Debug)]
pub struct Instance {
    /// The config file.
    pub config_file: PathBuf,
    /// Its folder; relative paths in the configuration start here.
    pub dir: PathBuf,
    pub config: Config,
    pub workforce: Workforce,
    /// The checked rules of the triage task.
    pub triage: Vec<mission_core::TriageRule>,
    /// The checked `[audit]` section.
    pub audit: mission_core::audit::AuditSettings,
    /// The checked `[notify]` section.
    pub notify: mission_core::notify::NotifySettings,
    /// Where the store file (SQLite), logs and workspaces live.
    pub data_dir: PathBuf,
    /// The store: a SQLite file, or a PostgreSQL database.
    pub store: StoreLocation,
    /// The workers' prompt templates, checked.
    pub prompts: mission_engine::prompt::Prompts,
}

/// Where the store is, from `store.url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file; a relative path in the URL is under the data folder.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every server and command of the instance. The URL may
    /// carry a password: it is shown only through `display`.
    Postgres(String),
}

impl StoreLocation {
    /// The URL `mission_store::open` takes.
    pub fn url(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreLocation::Postgres(url) => url.clone(),
        }
    }

    /// How the store is named in messages: the file, or the URL without its user and password
    /// (`postgres://HOST:PORT/DB`) and without its parameters.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let rest = rest.split(['?', '#']).next().unwrap_or_default();
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let host = authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, host)| host);
                format!("{scheme}://{host}/{path}")
            }
        }
    }
}

/// The prompt template a worker uses when it names none: `prompts/default.md` (written by
/// `mission init`), relative to the instance folder.
pub const DEFAULT_PROMPT: &str = "prompts/default.md";

/// Finds and loads the configuration.
pub fn load(explicit: Option<&Path>) -> Result<Instance, CliError> {
    let config_file = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_dir()
            .map_err(|e| CliError::internal(format!("cannot read the current folder: {e}")))?
            .join(CONFIG_FILE),
    };
    if !config_file.is_file() {
        return Err(CliError::usage(format!(
            "no configuration at {} (run `mission init`, or pass --config / MISSION_CONFIG)",
            config_file.display()
        )));
    }
    let bytes = std::fs::read(&config_file)
        .map_err(|e| CliError::usage(format!("{}: cannot read: {e}", config_file.display())))?;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MISSION_"))
        .collect();
    for (name, _) in &env {
        if !is_override(name) && !RESERVED_ENV.contains(&name.as_str()) {
            tracing::warn!(
                variable = %name,
                "ignoring {name}: not a configuration override (those look like MISSION_SECTION__KEY, e.g. MISSION_STORE__URL)"
            );
        }
    }
    let mut instance = load_from(&config_file, &bytes, &env).map_err(CliError::usage)?;
    if !instance.config.dispatch.env_allow.is_empty() {
        tracing::warn!(
            "dispatch.env_allow is deprecated: it gives variables to every worker; use `env_pass` (names) or `env` (values) of each worker instead"
        );
    }
    let text = String::from_utf8_lossy(&bytes);
    instance.prompts = load_prompts(&instance, &text).map_err(CliError::usage)?;
    Ok(instance)
}

/// Reads and checks every worker's prompt template: its own `prompt` file, or the instance's
/// `prompts/default.md`, or the built-in one. A template that does not render is reported with
/// its file and line; a configured file that cannot be read, with the key that names it.
fn load_prompts(
    instance: &Instance,
    config_text: &str,
) -> Result<mission_engine::prompt::Prompts, String> {
    use mission_engine::prompt::{Prompts, Template};
    let read = |path: &Path| -> Result<Option<Template>, String> {
        let source = match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        Template::new(source, Some(path.to_owned()))
            .map(Some)
            .map_err(|e| e.to_string())
    };
    let mut prompts = Prompts::default();
    if let Some(template) = read(&instance.dir.join(DEFAULT_PROMPT))? {
        prompts.default = template;
    }
    for (name, worker) in instance.workforce.workers() {
        let Some(file) = &worker.prompt else {
            continue;
        };
        let path = instance.dir.join(file);
        let key = format!("workers.{name}.prompt");
        let template = read(&path)?.ok_or_else(|| {
            let file_name = instance.config_file.display();
            match locate(config_text, &key) {
                Some(line) => format!(
                    "{file_name}:{line}: key `{key}`: no file {}",
                    path.display()
                ),
                None => format!("{file_name}: key `{key}`: no file {}", path.display()),
            }
        })?;
        prompts.workers.insert(name.clone(), template);
    }
    Ok(prompts)
}

/// Parses and checks a configuration file's bytes with the given `MISSION_*` variables; those
/// shaped `MISSION_SECTION__KEY` override keys, the others are not configuration and are
/// ignored.
pub fn load_from(
    config_file: &Path,
    bytes: &[u8],
    env: &[(String, String)],
) -> Result<Instance, String> {
    let file = config_file.display();
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "{file}: not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;

    // First the file on its own, so that an error in it comes with its line.
    let located = |key: &str, problem: &str| match locate(text, key) {
        Some(line) => format!("{file}:{line}: key `{key}`: {problem}"),
        None if key.is_empty() => format!("{file}: {problem}"),
        None => format!("{file}: key `{key}`: {problem}"),
    };
    let config: Config = deserialize_text(text).map_err(|(key, problem, line)| match line {
        Some(line) if key.is_empty() => format!("{file}:{line}: {problem}"),
        Some(line) => format!("{file}:{line}: key `{key}`: {problem}"),
        None => located(&key, &problem),
    })?;

    // Then with the environment's overrides on top, naming the variable on error.
    let config = if env.iter().any(|(k, _)| is_override(k)) {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let mut applied = Vec::new();
        for (name, value) in env {
            if !is_override(name) {
                continue;
            }
            let key = apply_override(&mut table, name, value)?;
            applied.push((name.clone(), key));
        }
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
            let key = e.path().to_string();
            let var = applied
                .iter()
                .find(|(_, k)| key.starts_with(k.as_str()) || k.starts_with(key.as_str()))
                .map(|(n, _)| n.as_str())
                .unwrap_or("the environment");
            format!("{var}: key `{key}`: {}", e.into_inner().message())
        })?
    } else {
        config
    };

    let workforce = Workforce::new(&config).map_err(|e| located(&e.key, &e.problem))?;
    let triage = mission_core::config::triage_rules(&config.triage)
        .map_err(|e| located(&e.key, &e.problem))?;
    let audit = config
        .audit
        .check()
        .map_err(|e| located(&e.key, &e.problem))?;
    let notify = config
        .notify
        .check()
        .map_err(|e| located(&e.key, &e.problem))?;
    let dir = config_file
        .parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let data_dir = dir.join(&config.instance.data_dir);
    let store = store_location(&config, &data_dir).map_err(|p| located("store.url", &p))?;
    let config_file = match config_file.file_name() {
        Some(name) => dir.join(name),
        None => config_file.to_owned(),
    };
    Ok(Instance {
        config_file,
        dir,
        config,
        workforce,
        triage,
        audit,
        notify,
        data_dir,
        store,
        prompts: Default::default(),
    })
}

fn store_location(config: &Config, data_dir: &Path) -> Result<StoreLocation, String> {
    let url = config.store.url.as_deref().unwrap_or("sqlite:mission.db");
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err("the sqlite: URL names no file".to_owned());
        }
        return Ok(StoreLocation::Sqlite(data_dir.join(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(StoreLocation::Postgres(url.to_owned()));
    }
    // The URL itself is not repeated: it may carry a password.
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    Err(format!(
        "unsupported store URL scheme {scheme:?}; expected sqlite:PATH or postgres://USER@HOST/DB"
    ))
}

/// Deserializes the file, returning `(key, problem, line)` on error.
fn deserialize_text(text: &str) -> Result<Config, (String, String, Option<usize>)> {
    let line_of = |span: Option<std::ops::Range<usize>>| span.map(|s| line_at(text, s.start));
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|e| (String::new(), e.message().to_owned(), line_of(e.span())))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        (key, inner.message().to_owned(), line_of(inner.span()))
    })
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` (`a.b.c` or `a.b[2]`) is written in the file, if it is.
fn locate(text: &str, key: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut segments = Vec::new();
    for part in key.split('.') {
        match part.split_once('[') {
            Some((name, index)) => {
                segments.push(Segment::Key(name));
                segments.push(Segment::Index(index.trim_end_matches(']').parse().ok()?));
            }
            None => segments.push(Segment::Key(part)),
        }
    }
    let mut span: Option<std::ops::Range<usize>> = None;
    let mut table = Some(root.get_ref());
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    for segment in segments {
        match segment {
            Segment::Key(name) => {
                let current = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(toml::de::DeValue::Table(t))) => t,
                    _ => return span.map(|s| line_at(text, s.start)),
                };
                let (k, v) = current.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
                span = Some(k.span());
                table = None;
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let Some(toml::de::DeValue::Array(items)) = value else {
                    break;
                };
                let item = items.get(i)?;
                span = Some(item.span());
                value = Some(item.get_ref());
            }
        }
    }
    span.map(|s| line_at(text, s.start))
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Applies `MISSION_A__B__C=value` as `a.b.c = value`; returns the key.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<String, String> {
    let rest = &name["MISSION_".len()..];
    let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    // The value as TOML (numbers, booleans, arrays), else as a plain string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = parts.split_last().expect("at least two parts");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "{name}: `{part}` is not a table in the configuration"
                ));
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[instance]
key = "MC"

[policy]
controllers = ["lucienne"]

[workers.luci]
runtime = "shell"
command = ["true"]
"#;

    fn check(text: &str, env: &[(&str, &str)], expect: Result<(), &str>) {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = load_from(Path::new("/srv/mc/mission.toml"), text.as_bytes(), &env).map(|_| ());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert_eq!(got, want),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn configs() {
        check(GOOD, &[], Ok(()));
        check("", &[], Ok(()));
        check(
            "[workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurent = 2\n",
            &[],
            Err(
                "/srv/mc/mission.toml:4: key `workers.luci.max_concurent`: unknown field `max_concurent`, expected one of `runtime`, `model`, `max_concurrent`, `pool`, `enabled`, `command`, `args`, `sandbox`, `sandbox_read`, `sandbox_write`, `env`, `env_pass`, `home`, `run_as`, `prompt`",
            ),
        );
        check(
            "[workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurrent = \"two\"\n",
            &[],
            Err(
                "/srv/mc/mission.toml:4: key `workers.luci.max_concurrent`: invalid type: string \"two\", expected u32",
            ),
        );
        check(
            "[workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurrent = 0\n",
            &[],
            Err("/srv/mc/mission.toml:4: key `workers.luci.max_concurrent`: must be at least 1"),
        );
        check(
            "[instance]\nkey = \"mc\"\n",
            &[],
            Err(
                "/srv/mc/mission.toml:2: key `instance.key`: invalid ticket key \"mc\": expected 1-10 capital letters or digits, starting with a letter",
            ),
        );
        check(
            "[instance\nkey = 1\n",
            &[],
            Err("/srv/mc/mission.toml:1: unclosed table, expected `]`"),
        );
        check(
            "[policy]\ncontrollers = [\"luci\"]\n[workers.luci]\nruntime = \"shell\"\ncommand = [\"x\"]\n",
            &[],
            Err(
                "/srv/mc/mission.toml:2: key `policy.controllers[0]`: \"luci\" is also a worker; a name is either a worker or a controller",
            ),
        );
        check(GOOD, &[("MISSION_WORKERS__LUCI__ENABLED", "false")], Ok(()));
        check(
            GOOD,
            &[("MISSION_RUN_TOKEN", "secret"), ("MISSION_CONFIG", "/x")],
            Ok(()),
        );
        check(
            GOOD,
            &[("MISSION_WORKERS__LUCI__MAX_CONCURRENT", "lots")],
            Err(
                "MISSION_WORKERS__LUCI__MAX_CONCURRENT: key `workers.luci.max_concurrent`: invalid type: string \"lots\", expected u32",
            ),
        );
        // Other MISSION_* names are not configuration: a task's own variables, or a user's.
        for name in [
            "MISSION_TASK",
            "MISSION_TASK_RUN",
            "MISSION_FOO",
            "MISSION_STORE_URL",
            "MISSION___X",
            "MISSION_A__",
        ] {
            check(GOOD, &[(name, "anything")], Ok(()));
        }
        check(
            GOOD,
            &[("MISSION_STORE__URL", "postgres://db/mission")],
            Ok(()),
        );
        check(
            GOOD,
            &[("MISSION_STORE__URL", "mysql://root:hunter2@db")],
            Err(
                "/srv/mc/mission.toml: key `store.url`: unsupported store URL scheme \"mysql\"; expected sqlite:PATH or postgres://USER@HOST/DB",
            ),
        );
    }

    #[test]
    fn env_overrides_apply() {
        let env = vec![(
            "MISSION_WORKERS__LUCI__ENABLED".to_string(),
            "false".to_string(),
        )];
        let instance = load_from(Path::new("/srv/mc/mission.toml"), GOOD.as_bytes(), &env).unwrap();
        assert!(!instance.config.workers["luci"].enabled);
        assert_eq!(
            instance.store,
            StoreLocation::Sqlite(PathBuf::from("/srv/mc/data/mission.db"))
        );
    }

    #[test]
    fn a_postgres_store_is_named_without_its_password() {
        let env = vec![(
            "MISSION_STORE__URL".to_string(),
            "postgres://mission:hunter2@db.internal:5433/mission?sslmode=require".to_string(),
        )];
        let instance = load_from(Path::new("/srv/mc/mission.toml"), GOOD.as_bytes(), &env).unwrap();
        assert_eq!(
            instance.store.url(),
            "postgres://mission:hunter2@db.internal:5433/mission?sslmode=require"
        );
        assert_eq!(
            instance.store.display(),
            "postgres://db.internal:5433/mission"
        );
    }

    #[test]
    fn binary_garbage_is_named() {
        let got = load_from(Path::new("m.toml"), &[0xff, 0xfe, 0x00], &[]).unwrap_err();
        assert_eq!(got, "m.toml: not UTF-8 text (invalid byte at offset 0)");
    }
}
