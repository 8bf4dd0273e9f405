//! The agent protocol: the prompt an agent receives, rendered from its worker's template
//! (minijinja). It tells the agent where its ticket is, where it works (the worktree and its
//! branch), and how to talk back — with the ABSOLUTE path of `mission`, because agents' shells may
//! reset `PATH`. The prompt names files and paths chosen by the instance; the ticket's text is
//! not a template variable, so it never reaches argv through the prompt.
//!
//! A template is checked when the configuration is loaded, by rendering it with sample values
//! (undefined variables are errors), so a broken one is a configuration error with its file and
//! line, never a surprise at run time.

use mission_core::Name;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The template shipped with the binary, and written by `mission init` to `prompts/default.md`.
pub const DEFAULT: &str = include_str!("default.md");

/// The variables a template can use.
#[derive(Clone, Debug, Serialize)]
pub struct PromptContext {
    /// `KEY-N`.
    pub ticket: String,
    pub attempt: u32,
    pub worker: String,
    /// The file with the ticket's title and text.
    pub ticket_file: String,
    /// Resuming after a question: the file with the question and its answer.
    pub resume: bool,
    pub answer_file: Option<String>,
    /// Where the agent works; for a git worktree, its branch (`mission/KEY-N`).
    pub workspace: String,
    pub branch: Option<String>,
    /// The absolute path of the `mission` binary (also `$MISSION_BIN`).
    pub mission: String,
    /// The run's own folder.
    pub run_dir: String,
}

impl PromptContext {
    /// Values of the right shape, to check a template with.
    fn sample(resume: bool, branch: bool) -> PromptContext {
        PromptContext {
            ticket: "MC-1".into(),
            attempt: 2,
            worker: "worker".into(),
            ticket_file: "/data/runs/MC-1/2/ticket.md".into(),
            resume,
            answer_file: resume.then(|| "/data/runs/MC-1/2/answer.md".into()),
            workspace: "/data/workspaces/MC-1".into(),
            branch: branch.then(|| "mission/MC-1".into()),
            mission: "/usr/local/bin/mission".into(),
            run_dir: "/data/runs/MC-1/2".into(),
        }
    }
}

/// A checked template: its text and the file it came from (none for the built-in one).
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    file: Option<PathBuf>,
}

/// A template that does not render: `FILE:LINE: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct TemplateError {
    pub location: String,
    pub problem: String,
}

impl Template {
    /// The built-in template.
    pub fn builtin() -> Template {
        Template {
            source: DEFAULT.to_owned(),
            file: None,
        }
    }

    /// Checks `source` (read from `file`) by rendering it with sample values, fresh and resuming,
    /// in a worktree and in a plain folder.
    pub fn new(source: String, file: Option<PathBuf>) -> Result<Template, TemplateError> {
        let template = Template { source, file };
        for (resume, branch) in [(false, true), (true, false)] {
            template.render(&PromptContext::sample(resume, branch))?;
        }
        Ok(template)
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The prompt for one run.
    pub fn render(&self, context: &PromptContext) -> Result<String, TemplateError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.render_str(&self.source, context).map_err(|error| {
            let file = self
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "the built-in prompt".to_owned());
            let location = match error.line() {
                Some(line) => format!("{file}:{line}"),
                None => file,
            };
            let mut problem = error.kind().to_string();
            if let Some(detail) = error.detail() {
                problem = format!("{problem}: {detail}");
            }
            TemplateError { location, problem }
        })
    }
}

/// The template of each worker; workers without one use the default.
#[derive(Clone, Debug)]
pub struct Prompts {
    pub default: Template,
    pub workers: BTreeMap<Name, Template>,
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts {
            default: Template::builtin(),
            workers: BTreeMap::new(),
        }
    }
}

impl Prompts {
    pub fn for_worker(&self, worker: &Name) -> &Template {
        self.workers.get(worker).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, expect: Result<&str, &str>) {
        let got = Template::new(source.to_owned(), Some(PathBuf::from("p.md")))
            .and_then(|t| t.render(&PromptContext::sample(false, true)));
        match (got, expect) {
            (Ok(text), Ok(want)) => assert_eq!(text, want),
            (Err(error), Err(want)) => assert_eq!(error.to_string(), want),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn templates_render_and_fail_with_their_line() {
        check(
            "Ticket {{ ticket }} on {{ branch }}\n",
            Ok("Ticket MC-1 on mission/MC-1\n"),
        );
        check(
            "{% if resume %}{{ answer_file }}{% endif %}{{ mission }} run submit",
            Ok("/usr/local/bin/mission run submit"),
        );
        check(
            "line one\n{{ ticket_text }}\n",
            Err("p.md:2: undefined value"),
        );
        check(
            "ok\nok\n{% if ticket %}\n",
            Err("p.md:3: syntax error: unexpected end of input, expected end of block"),
        );
        check(
            "{{ ticket | nosuchfilter }}",
            Err("p.md:1: unknown filter: filter nosuchfilter is unknown"),
        );
    }

    #[test]
    fn the_default_names_the_files_the_branch_and_the_absolute_mission() {
        let text = Template::builtin()
            .render(&PromptContext::sample(true, true))
            .unwrap();
        for needle in [
            "/data/runs/MC-1/2/ticket.md",
            "/data/runs/MC-1/2/answer.md",
            "`mission/MC-1`",
            "/usr/local/bin/mission run ask",
            "/usr/local/bin/mission run progress",
            "/usr/local/bin/mission run submit",
            "$MISSION_BIN",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
