//! `mission ticket add | list | show | move | edit`.

use super::app;
use crate::cli::{BodyArgs, TicketCommand};
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::ticket::MAX_BODY_BYTES;
use mission_core::{
    Actor, EvidencePolicy, Name, State, Ticket, TicketDraft, TicketId, TicketPatch,
};
use mission_engine::App;
use mission_engine::app::TicketView;
use mission_store::{TicketFilter, TicketSummary};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: TicketCommand) -> Result<ExitCode, CliError> {
    let actor = Actor::cli();
    // Arguments that need no store are checked before the store is opened.
    match command {
        TicketCommand::Add(args) => {
            let body = read_body(&args.body)?.unwrap_or_default();
            let (_, app) = app(config).await?;
            let draft = TicketDraft {
                title: args.title,
                body,
                assignee: args.assignee,
                owner: args.owner,
                labels: args.labels,
                priority: args.priority,
                depends_on: ticket_ids(&app, &args.depends_on)?,
                evidence_policy: args.evidence_policy,
                repo: args.repo,
            };
            let ticket = app.add_ticket(draft, &actor).await?;
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::List(args) => {
            let state = args.state.as_deref().map(str::parse::<State>).transpose()?;
            let assignee = args.assignee.as_deref().map(Name::parse).transpose()?;
            let (_, app) = app(config).await?;
            let filter = TicketFilter {
                state,
                assignee,
                limit: args.limit,
                offset: None,
            };
            let tickets = app.list_tickets(&filter).await?;
            if args.json {
                output::json_line(&tickets)?;
            } else {
                output::print(&board(&tickets))?;
            }
        }
        TicketCommand::Show(args) => {
            let (_, app) = app(config).await?;
            let view = app.show_ticket(&app.ticket_id(&args.id)?).await?;
            if args.json {
                output::json_line(&view)?;
            } else {
                output::print(&describe(&view))?;
            }
        }
        TicketCommand::Move(args) => {
            let to: State = args.state.parse()?;
            let (_, app) = app(config).await?;
            let id = app.ticket_id(&args.id)?;
            let ticket = app.move_ticket(&id, to, args.reason, &actor).await?;
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::Edit(args) => {
            let body = read_body(&args.body)?;
            let (_, app) = app(config).await?;
            let id = app.ticket_id(&args.id)?;
            let name =
                |text: Option<String>, clear: bool| -> Result<Option<Option<Name>>, CliError> {
                    if clear {
                        return Ok(Some(None));
                    }
                    Ok(text.as_deref().map(Name::parse).transpose()?.map(Some))
                };
            let patch = TicketPatch {
                title: args.title,
                body,
                assignee: name(args.assignee, args.no_assignee)?,
                owner: name(args.owner, args.no_owner)?,
                labels: if args.no_labels {
                    Some(Vec::new())
                } else {
                    (!args.labels.is_empty()).then_some(args.labels)
                },
                priority: args.priority,
                depends_on: if args.no_depends {
                    Some(Vec::new())
                } else if args.depends_on.is_empty() {
                    None
                } else {
                    Some(ticket_ids(&app, &args.depends_on)?)
                },
                evidence_policy: args
                    .evidence_policy
                    .as_deref()
                    .map(EvidencePolicy::parse)
                    .transpose()?,
                repo: if args.no_repo {
                    Some(None)
                } else {
                    args.repo.map(Some)
                },
            };
            let ticket = app.edit_ticket(&id, patch, &actor).await?;
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::Done(args) => {
            let (_, app) = app(config).await?;
            let id = app.ticket_id(&args.id)?;
            let closing = app.close_ticket(&id, &actor).await?;
            if args.json {
                output::json_line(&closing)?;
            } else {
                output::print(&gate_line(&closing))?;
            }
        }
        TicketCommand::Review(args) => {
            let decision = args.decision.parse().map_err(CliError::usage)?;
            let reviewer = Name::parse(args.as_name.as_deref().unwrap_or("operator"))?;
            let (_, app) = app(config).await?;
            let id = app.ticket_id(&args.id)?;
            let reviewed = app
                .review_ticket(&id, decision, &args.reason, reviewer, &actor)
                .await?;
            if args.json {
                output::json_line(&reviewed)?;
            } else {
                let mut text = format!(
                    "{} {}: {}\n",
                    reviewed.ticket.id,
                    reviewed.review.outcome.as_str(),
                    reviewed.ticket.state
                );
                if let Some(gate) = &reviewed.gate {
                    text.push_str(&gate_line(gate));
                }
                output::print(&text)?;
            }
        }
        TicketCommand::Answer(args) => {
            let (_, app) = app(config).await?;
            let id = app.ticket_id(&args.id)?;
            let ticket = app.answer(&id, &args.text, &actor).await?;
            print_ticket(&ticket, args.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the gate said, for a terminal.
pub fn gate_line(closing: &mission_engine::gatekeeper::Closing) -> String {
    let mut text = if closing.done {
        format!("{} done\n", closing.ticket.id)
    } else {
        let mut text = format!("{} stays in {}:\n", closing.ticket.id, closing.ticket.state);
        for gap in &closing.missing {
            text.push_str(&format!("  {}\n", for_terminal(gap)));
        }
        text
    };
    if let Some(merged) = &closing.merged {
        text.push_str(&format!("  {merged}\n"));
    }
    for note in &closing.notes {
        text.push_str(&format!("  note: {}\n", for_terminal(note)));
    }
    text
}

fn ticket_ids(app: &App, texts: &[String]) -> Result<Vec<TicketId>, CliError> {
    Ok(texts
        .iter()
        .map(|t| app.ticket_id(t))
        .collect::<Result<_, _>>()?)
}

/// Reads `--body` or `--body-file` (`-` is standard input), byte-exact. At most one byte more
/// than the limit is read, so that `/dev/zero` is refused instead of exhausting memory.
fn read_body(args: &BodyArgs) -> Result<Option<String>, CliError> {
    let Some(path) = &args.body_file else {
        return Ok(args.body.clone());
    };
    let limit = MAX_BODY_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        if path.as_os_str() == "-" {
            CliError::usage(format!("--body-file -: cannot read standard input: {e}"))
        } else {
            CliError::usage(format!("--body-file {}: {e}", path.display()))
        }
    })?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(CliError::usage(format!(
            "--body-file {}: the body is larger than the limit of {MAX_BODY_BYTES} bytes",
            path.display()
        )));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        CliError::usage(format!(
            "--body-file {}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

fn print_ticket(ticket: &Ticket, json: bool) -> Result<(), CliError> {
    if json {
        output::json_line(ticket)
    } else {
        output::print(&format!(
            "{} {} {}\n",
            ticket.id, ticket.state, ticket.title
        ))
    }
}

/// The board as a table.
fn board(tickets: &[TicketSummary]) -> String {
    let mut text = format!(
        "{} {} {} {} TITLE\n",
        cell("ID", 10),
        cell("STATE", 11),
        cell("PRI", 5),
        cell("ASSIGNEE", 12)
    );
    for t in tickets {
        let assignee = t.assignee.as_ref().map_or("-", |a| a.as_str());
        text.push_str(&format!(
            "{} {} {} {} {}\n",
            cell(&t.id.to_string(), 10),
            cell(t.state.as_str(), 11),
            cell(&t.priority.to_string(), 5),
            cell(assignee, 12),
            t.title
        ));
    }
    text.push_str(&format!("{} tickets\n", tickets.len()));
    text
}

/// A ticket with its runs and timeline, for a terminal: the body's control characters (escape
/// sequences that could move the cursor, rewrite the screen or set the title) are removed,
/// newlines and tabs kept. `--json` stays byte-exact.
fn describe(view: &TicketView) -> String {
    let t = &view.ticket;
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let deps: Vec<String> = t.depends_on.iter().map(|d| d.to_string()).collect();
    let mut text = format!(
        "{} {}\nstate:           {}\nassignee:        {}\nowner:           {}\npriority:        {}\nlabels:          {}\ndepends on:      {}\nevidence policy: {}\nrepo:            {}\ncreated:         {}\nupdated:         {}\n",
        t.id,
        t.title,
        t.state,
        or_dash(t.assignee.as_ref().map(|a| a.as_str())),
        or_dash(t.owner.as_ref().map(|a| a.as_str())),
        t.priority,
        if t.labels.is_empty() {
            "-".to_owned()
        } else {
            t.labels.join(", ")
        },
        if deps.is_empty() {
            "-".to_owned()
        } else {
            deps.join(", ")
        },
        t.evidence_policy,
        or_dash(t.repo.as_deref()),
        t.created_at,
        t.updated_at,
    );
    if !t.body.is_empty() {
        text.push('\n');
        text.push_str(&for_terminal(&t.body));
        if !t.body.ends_with('\n') {
            text.push('\n');
        }
    }
    if !view.runs.is_empty() {
        text.push_str("\nruns:\n");
    }
    for run in &view.runs {
        let how = match (run.ended_at, run.outcome, run.failure_class) {
            (None, _, _) => "running".to_owned(),
            (Some(_), _, Some(class)) => format!("failed: {class}"),
            (Some(_), Some(outcome), None) => outcome.as_str().to_owned(),
            (Some(_), None, None) => "ended".to_owned(),
        };
        let detail = run
            .detail
            .as_deref()
            .map(|d| format!(" ({})", for_terminal(d)))
            .unwrap_or_default();
        text.push_str(&format!(
            "  run {} attempt {} by {} in lane {}, started {}: {how}{detail}\n",
            run.id, run.attempt, run.worker, run.lane, run.started_at
        ));
    }
    if !view.evidence.is_empty() {
        text.push_str("\nevidence:\n");
    }
    for record in &view.evidence {
        let verdict = match record.verification.failure() {
            None => "verified".to_owned(),
            Some(reason) => format!("failed: {}", for_terminal(reason)),
        };
        text.push_str(&format!(
            "  #{} {} by {} at {}: {verdict} (checked {})\n",
            record.id,
            for_terminal(&record.evidence.summary()),
            record.recorded_by,
            record.recorded_at,
            record.verification.at()
        ));
    }
    text.push_str("\ntimeline:\n");
    for event in &view.timeline {
        text.push_str(&format!(
            "  {} #{} {} by {} {}\n",
            event.at,
            event.seq,
            event.kind,
            event.actor,
            for_terminal(&event.data.to_string())
        ));
    }
    text
}

/// Removes control characters except newline and tab.
fn for_terminal(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn terminal_text_keeps_newlines_and_tabs_only() {
        let cases = [
            ("plain\ttext\n", "plain\ttext\n"),
            ("\x1b[2J\x1b]0;pwned\x07title", "[2J]0;pwnedtitle"),
            ("a\rb\x00c\u{9b}d", "abcd"),
            ("é ünïcode", "é ünïcode"),
        ];
        for (input, expect) in cases {
            assert_eq!(for_terminal(input), expect, "{input:?}");
        }
    }
}
