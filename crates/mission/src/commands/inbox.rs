//! `mission inbox list | show | act`.

use super::app;
use crate::cli::InboxCommand;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_core::inbox::{InboxStatus, StoredInboxItem};
use mission_core::{ActionKind, Actor, InboxId, Name};
use mission_store::InboxFilter;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: InboxCommand) -> Result<ExitCode, CliError> {
    match command {
        InboxCommand::List(args) => {
            let status = args
                .status
                .as_deref()
                .map(str::parse::<InboxStatus>)
                .transpose()
                .map_err(|e| CliError::usage(e.to_string()))?;
            let (_, app) = app(config).await?;
            let filter = InboxFilter {
                status,
                open: status.is_none() && !args.all,
                limit: args.limit,
                ..InboxFilter::default()
            };
            let items = app.inbox_list(&filter).await?;
            if args.json {
                output::json_line(&items)?;
            } else {
                output::print(&table(&items))?;
            }
        }
        InboxCommand::Show(args) => {
            let id = item_id(&args.id)?;
            let (_, app) = app(config).await?;
            let item = app.inbox_show(id).await?;
            if args.json {
                output::json_line(&item)?;
            } else {
                output::print(&describe(&item))?;
            }
        }
        InboxCommand::Act(args) => {
            let id = item_id(&args.id)?;
            let action: ActionKind = args
                .action
                .parse()
                .map_err(|e: mission_core::inbox::InboxError| CliError::usage(e.to_string()))?;
            // Inside a run: the worker the item was delivered to, under its token (over the
            // run's socket when there is one).
            if let Ok(token) = std::env::var("MISSION_RUN_TOKEN") {
                let act = mission_engine::callback::Action::InboxAct {
                    item: id,
                    action,
                    text: args.text,
                };
                let answer = super::run::call(config, token, act).await?;
                super::run::print(&answer, args.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            let (_, app) = app(config).await?;
            let by = Name::parse(args.as_name.as_deref().unwrap_or("operator"))?;
            let acted = app
                .inbox_act(id, action, args.text, by, &Actor::cli())
                .await?;
            if args.json {
                output::json_line(&acted)?;
            } else {
                let mut text = format!("inbox item {} {}\n", acted.item.id, acted.item.status);
                if let Some(gate) = &acted.gate {
                    text.push_str(&super::ticket::gate_line(gate));
                }
                output::print(&text)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn item_id(text: &str) -> Result<InboxId, CliError> {
    text.parse()
        .map_err(|_| CliError::usage(format!("invalid inbox item id {text:?}: expected a number")))
}

fn table(items: &[StoredInboxItem]) -> String {
    let mut text = format!(
        "{} {} {} {} {} TEXT\n",
        cell("ID", 6),
        cell("STATUS", 10),
        cell("KIND", 15),
        cell("TICKET", 10),
        cell("TO", 18)
    );
    for item in items {
        let ticket = item
            .ticket
            .as_ref()
            .map_or("-".to_owned(), |t| t.to_string());
        let first_line = item.text.lines().next().unwrap_or_default();
        text.push_str(&format!(
            "{} {} {} {} {} {}\n",
            cell(&item.id.to_string(), 6),
            cell(item.status.as_str(), 10),
            cell(item.kind.as_str(), 15),
            cell(&ticket, 10),
            cell(&item.addressee.to_string(), 18),
            for_terminal(first_line)
        ));
    }
    text.push_str(&format!("{} items\n", items.len()));
    text
}

fn describe(item: &StoredInboxItem) -> String {
    let mut text = format!(
        "inbox item {}\nkind:       {}\nstatus:     {}\nticket:     {}\nto:         {}\ncreated:    {}\ndeliveries: {}\n",
        item.id,
        item.kind,
        item.status,
        item.ticket
            .as_ref()
            .map_or("-".to_owned(), |t| t.to_string()),
        item.addressee,
        item.created_at,
        item.deliveries,
    );
    if let Some(lease) = item.lease_expires_at {
        text.push_str(&format!("lease until {lease}\n"));
    }
    if let Some((reason, at)) = &item.failure {
        text.push_str(&format!("failed at {at}: {}\n", for_terminal(reason)));
    }
    if let Some(action) = &item.action {
        text.push_str(&format!(
            "acted at {}: {} by {}{}\n",
            action.at,
            action.kind,
            action.actor,
            action
                .text
                .as_deref()
                .map(|t| format!(": {}", for_terminal(t)))
                .unwrap_or_default()
        ));
    }
    text.push('\n');
    text.push_str(&for_terminal(&item.text));
    text.push('\n');
    text
}

fn for_terminal(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}
