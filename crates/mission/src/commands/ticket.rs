//! `mission ticket add | list | show | move | edit`.

use super::{cli_change, open, poke, ticket_id};
use crate::cli::{BodyArgs, TicketCommand};
use crate::config::Instance;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::transition::Via;
use mission_core::{EvidencePolicy, Name, State, Ticket, TicketDraft, TicketId, TicketPatch};
use mission_store::{EventQuery, Move, TicketFilter};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// The timeline shown by `ticket show`: at most this many events, oldest first.
const TIMELINE_LIMIT: u32 = 500;

pub async fn run(config: Option<&Path>, command: TicketCommand) -> Result<ExitCode, CliError> {
    // Arguments that need no store are checked before the store is opened.
    match command {
        TicketCommand::Add(args) => {
            let body = read_body(&args.body)?.unwrap_or_default();
            let (instance, store) = open(config).await?;
            let draft = TicketDraft {
                title: args.title,
                body,
                assignee: args.assignee,
                owner: args.owner,
                labels: args.labels,
                priority: args.priority,
                depends_on: ticket_ids(&instance, &args.depends_on)?,
                evidence_policy: args.evidence_policy,
                repo: args.repo,
            };
            let new = draft.validate()?;
            let key = &instance.config.instance.key;
            let ticket = store
                .create_tickets(key, vec![new], &cli_change())
                .await?
                .remove(0);
            poke(&instance);
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::List(args) => {
            let state = args.state.as_deref().map(str::parse::<State>).transpose()?;
            let assignee = args.assignee.as_deref().map(Name::parse).transpose()?;
            let (_, store) = open(config).await?;
            let filter = TicketFilter {
                state,
                assignee,
                limit: args.limit,
            };
            let tickets = store.list_tickets(&filter).await?;
            if args.json {
                output::json_line(&tickets)?;
            } else {
                let mut text = format!(
                    "{} {} {} {} TITLE\n",
                    cell("ID", 10),
                    cell("STATE", 11),
                    cell("PRI", 5),
                    cell("ASSIGNEE", 12)
                );
                for t in &tickets {
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
                output::print(&text)?;
            }
        }
        TicketCommand::Show(args) => {
            let (instance, store) = open(config).await?;
            let id = ticket_id(&instance, &args.id)?;
            let ticket = store.ticket(&id).await?;
            let runs = store.runs_of(&id).await?;
            let timeline = store
                .events(&EventQuery {
                    since: 0,
                    limit: TIMELINE_LIMIT,
                    ticket: Some(id),
                })
                .await?;
            if args.json {
                let mut value = serde_json::to_value(&ticket)?;
                value["runs"] = serde_json::to_value(&runs)?;
                value["timeline"] = serde_json::to_value(&timeline)?;
                output::json_line(&value)?;
            } else {
                let mut text = describe(&ticket);
                if !runs.is_empty() {
                    text.push_str("\nruns:\n");
                }
                for run in &runs {
                    let how = match (run.ended_at, run.outcome, run.failure_class) {
                        (None, _, _) => "running".to_owned(),
                        (Some(_), _, Some(class)) => format!("failed: {class}"),
                        (Some(_), Some(outcome), None) => outcome.as_str().to_owned(),
                        (Some(_), None, None) => "ended".to_owned(),
                    };
                    let detail = run
                        .detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "  run {} attempt {} by {} in lane {}, started {}: {how}{detail}\n",
                        run.id, run.attempt, run.worker, run.lane, run.started_at
                    ));
                }
                text.push_str("\ntimeline:\n");
                for event in &timeline {
                    text.push_str(&format!(
                        "  {} #{} {} by {} {}\n",
                        event.at, event.seq, event.kind, event.actor, event.data
                    ));
                }
                output::print(&text)?;
            }
        }
        TicketCommand::Move(args) => {
            let to: State = args.state.parse()?;
            let (instance, store) = open(config).await?;
            let id = ticket_id(&instance, &args.id)?;
            let request = Move {
                to,
                via: Via::Operator,
                reason: args.reason,
            };
            let ticket = store.move_ticket(&id, &request, &cli_change()).await?;
            poke(&instance);
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::Edit(args) => {
            let body = read_body(&args.body)?;
            let (instance, store) = open(config).await?;
            let id = ticket_id(&instance, &args.id)?;
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
                    Some(ticket_ids(&instance, &args.depends_on)?)
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
            }
            .validate()?;
            if patch.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give at least one field to edit",
                ));
            }
            let ticket = store.edit_ticket(&id, &patch, &cli_change()).await?;
            poke(&instance);
            print_ticket(&ticket, args.json)?;
        }
        TicketCommand::Answer(args) => {
            let (instance, store) = open(config).await?;
            let id = ticket_id(&instance, &args.id)?;
            let ticket = store.answer(&id, &args.text, &cli_change()).await?;
            poke(&instance);
            print_ticket(&ticket, args.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ticket_ids(instance: &Instance, texts: &[String]) -> Result<Vec<TicketId>, CliError> {
    texts.iter().map(|t| ticket_id(instance, t)).collect()
}

/// Reads `--body` or `--body-file` (`-` is standard input), byte-exact.
fn read_body(args: &BodyArgs) -> Result<Option<String>, CliError> {
    let Some(path) = &args.body_file else {
        return Ok(args.body.clone());
    };
    let bytes = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
            CliError::usage(format!("--body-file -: cannot read standard input: {e}"))
        })?;
        bytes
    } else {
        std::fs::read(path)
            .map_err(|e| CliError::usage(format!("--body-file {}: {e}", path.display())))?
    };
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

fn describe(t: &Ticket) -> String {
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
        text.push_str(&t.body);
        if !t.body.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}
