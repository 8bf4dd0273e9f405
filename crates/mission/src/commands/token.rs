//! `mission token create | list | revoke`: API tokens for the HTTP API, through the same use
//! cases as its admin routes.

use super::app;
use crate::cli::TokenCommand;
use crate::exit::CliError;
use crate::output::{self, cell};
use mission_web::api::types::{CreatedTokenBody, TokenBody};
use mission_web::auth::{TokenState, Tokens};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: Option<&Path>, command: TokenCommand) -> Result<ExitCode, CliError> {
    let (_, app) = app(config).await?;
    let tokens = Tokens::new(app.store().clone(), app.clock().clone());
    match command {
        TokenCommand::Create(args) => {
            let (record, secret) = tokens
                .create(&args.scope, args.expires.as_deref(), args.label)
                .await?;
            let record = TokenBody::new(record, TokenState::Active);
            if args.json {
                output::json_line(&CreatedTokenBody {
                    token: secret.expose().to_owned(),
                    record,
                })?;
            } else {
                // The token alone on stdout (for `TOKEN=$(mission token create …)`); the rest
                // on stderr.
                output::print(&format!("{}\n", secret.expose()))?;
                eprintln!(
                    "mission: token {} ({}, expires {}); it is shown only this once",
                    record.id,
                    record.scope,
                    record.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::List(args) => {
            let list: Vec<TokenBody> = tokens
                .list()
                .await?
                .into_iter()
                .map(|t| {
                    let state = tokens.state(&t);
                    TokenBody::new(t, state)
                })
                .collect();
            if args.json {
                output::json_line(&list)?;
            } else {
                let mut text = format!(
                    "{} {} {} {} {} {} LABEL\n",
                    cell("ID", 5),
                    cell("SCOPE", 6),
                    cell("STATE", 8),
                    cell("CREATED", 25),
                    cell("EXPIRES", 25),
                    cell("LAST USED", 25),
                );
                for token in &list {
                    let state = &token.state;
                    text.push_str(&format!(
                        "{} {} {} {} {} {} {}\n",
                        cell(&token.id.to_string(), 5),
                        cell(&token.scope, 6),
                        cell(state, 8),
                        cell(&token.created_at, 25),
                        cell(token.expires_at.as_deref().unwrap_or("never"), 25),
                        cell(token.last_used_at.as_deref().unwrap_or("-"), 25),
                        token.label.as_deref().unwrap_or(""),
                    ));
                }
                output::print(&text)?;
            }
        }
        TokenCommand::Revoke(args) => {
            let record = TokenBody::new(tokens.revoke(args.id).await?, TokenState::Revoked);
            if args.json {
                output::json_line(&record)?;
            } else {
                output::print(&format!("revoked token {}\n", record.id))?;
            }
        }
    }
    app.close().await;
    Ok(ExitCode::SUCCESS)
}
