//! Telegram, over the Bot API (`api_base`, `https://api.telegram.org` unless configured): the
//! `telegram` channel sends each notification with `sendMessage` (HTML, escaped; review requests
//! and approvals with Approve / Reject buttons), and `poll` reads what people answer with
//! `getUpdates` long polling — no public URL needed. The offset is stored
//! (`OutboxStore::advance_notify_cursor`) after each update is handled, so a restart neither
//! loses nor repeats one (an update handled just before a crash is offered again and refused by
//! the inbox as already acted).
//!
//! Only the configured chat and the allow-listed user ids are obeyed; everything else is ignored
//! and counted (`telegram.ignored`). A reply to a question's message answers it with
//! `App::inbox_act` (as `mission inbox act` and the dashboard's form do), a button press
//! approves or rejects the same way; the Telegram user is the actor (`telegram:USER`).
//!
//! The bot token is part of every request's URL: it is kept here only, never printed (`Bot` has
//! no `Debug` of it), and errors are stripped of their URL.

use super::render::{self, Facts};
use super::{Attempted, Channel};
use crate::app::App;
use async_trait::async_trait;
use mission_core::notify::{TELEGRAM_CHANNEL, TelegramSettings, TokenSource, Topic};
use mission_core::{ActionKind, Actor, InboxId, Name, TicketId};
use mission_store::{OutboxItem, Store};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The largest Bot API answer read (a `getUpdates` page of 100 updates is far smaller).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// How long an acknowledgement (a reply, a button's answer) may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The cursor of `getUpdates` in the store.
pub const CURSOR: &str = "telegram";

pub struct Bot {
    token: String,
    api_base: String,
    chat_id: i64,
    allowed_users: BTreeSet<i64>,
    poll_timeout: Duration,
    timeout: Duration,
    paused: bool,
    max_per_second: u32,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    dashboard: Option<String>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("token", &"[REDACTED]")
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

/// Reads the token from where the configuration says.
pub fn resolve_token(source: &TokenSource) -> Result<String, String> {
    let token = match source {
        TokenSource::Value(secret) => secret.expose().to_owned(),
        TokenSource::Env(name) => std::env::var(name).map_err(|_| {
            format!("notify.telegram.bot_token_env: the variable {name} is not set")
        })?,
    };
    if !mission_core::notify::valid_bot_token(&token) {
        return Err(
            "notify.telegram: the bot token is not one (expected NUMBER:SECRET)".to_owned(),
        );
    }
    Ok(token)
}

/// A Bot API answer: `result` when `ok`, else the error with its code and `retry_after`.
struct Answer {
    status: u16,
    body: Value,
}

impl Bot {
    pub fn new(
        settings: &TelegramSettings,
        http: reqwest::Client,
        store: Arc<dyn Store>,
        dashboard: Option<String>,
    ) -> Result<Self, String> {
        Ok(Bot {
            token: resolve_token(&settings.token)?,
            api_base: settings.api_base.clone(),
            chat_id: settings.chat_id,
            allowed_users: settings.allowed_user_ids.clone(),
            poll_timeout: settings.poll_timeout,
            timeout: settings.timeout,
            paused: settings.paused,
            max_per_second: settings.max_per_second,
            http,
            store,
            dashboard,
        })
    }

    /// The token, for the redaction of what the server shows.
    pub fn token(&self) -> &str {
        &self.token
    }

    async fn call(&self, method: &str, body: &Value, timeout: Duration) -> Result<Answer, String> {
        let url = format!("{}/bot{}/{method}", self.api_base, self.token);
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!(
                        "{method}: no answer within {}",
                        humantime::format_duration(timeout)
                    )
                } else {
                    format!("{method}: {}", e.without_url())
                }
            })?;
        let status = response.status().as_u16();
        // Read up to MAX_ANSWER bytes: the API's answer is not trusted to be small.
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{method}: {}", e.without_url()))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("{method}: an answer over {MAX_ANSWER} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| json!({ "ok": false, "description": "not a Bot API answer" }));
        Ok(Answer { status, body })
    }

    /// What a notification says, read from the store now (the ticket's title, the item's text).
    async fn facts(&self, item: &OutboxItem) -> Facts {
        let mut facts = Facts::default();
        if let Some(ticket) = &item.ticket
            && let Ok(t) = self.store.ticket(ticket).await
        {
            facts.ticket = Some((t.id.to_string(), t.title.clone()));
        }
        if item.payload["event"] == "inbox.created"
            && let Some(id) = item.payload["data"]["item"].as_i64()
            && let Ok(found) = self.store.inbox_item(InboxId::new(id)).await
        {
            facts.item_text = Some(found.text.clone());
        }
        facts
    }

    async fn obeyed(&self, from: Option<i64>, chat: Option<i64>) -> bool {
        chat == Some(self.chat_id) && from.is_some_and(|u| self.allowed_users.contains(&u))
    }

    /// Handles one update; false when it was ignored (not allowed, or not for us).
    async fn handle(&self, app: &App, update: &Value) -> bool {
        if let Some(message) = update.get("message") {
            let from = message["from"]["id"].as_i64();
            let chat = message["chat"]["id"].as_i64();
            if !self.obeyed(from, chat).await {
                return false;
            }
            let (Some(text), Some(replied)) = (
                message["text"].as_str(),
                message["reply_to_message"]["message_id"].as_i64(),
            ) else {
                return false;
            };
            let Some(item) = self.item_of(replied, &[Topic::Question]).await else {
                return false;
            };
            let user = from.unwrap_or(0);
            let outcome = self
                .act(app, user, item, ActionKind::Answered, Some(text.to_owned()))
                .await;
            let reply = match &outcome {
                Ok(ticket) => format!("Answered{}.", on(ticket)),
                Err(error) => format!("Not answered: {error}"),
            };
            let _ = self
                .call(
                    "sendMessage",
                    &json!({
                        "chat_id": self.chat_id,
                        "text": reply,
                        "reply_to_message_id": message["message_id"],
                    }),
                    SEND_TIMEOUT,
                )
                .await;
            return true;
        }
        if let Some(query) = update.get("callback_query") {
            let from = query["from"]["id"].as_i64();
            let chat = query["message"]["chat"]["id"].as_i64();
            let id = query["id"].clone();
            if !self.obeyed(from, chat).await {
                let _ = self
                    .call(
                        "answerCallbackQuery",
                        &json!({ "callback_query_id": id, "text": "Not allowed." }),
                        SEND_TIMEOUT,
                    )
                    .await;
                return false;
            }
            let data = query["data"].as_str().unwrap_or("");
            let action = match data.split_once(':').map(|(a, _)| a) {
                Some("approve") => ActionKind::Approved,
                Some("reject") => ActionKind::Rejected,
                _ => return false,
            };
            let Some(message_id) = query["message"]["message_id"].as_i64() else {
                return false;
            };
            let Some(item) = self
                .item_of(message_id, &[Topic::ReviewRequest, Topic::Approval])
                .await
            else {
                return false;
            };
            let user = from.unwrap_or(0);
            let text = (action == ActionKind::Rejected)
                .then(|| format!("rejected from Telegram by user {user}"));
            let outcome = self.act(app, user, item, action, text).await;
            let reply = match &outcome {
                Ok(ticket) => format!("{action}{}.", on(ticket)),
                Err(error) => format!("Not done: {error}"),
            };
            let _ = self
                .call(
                    "answerCallbackQuery",
                    &json!({ "callback_query_id": id, "text": reply }),
                    SEND_TIMEOUT,
                )
                .await;
            return true;
        }
        false
    }

    /// The inbox item of a message this bot sent for one of `topics`.
    async fn item_of(&self, message_id: i64, topics: &[Topic]) -> Option<InboxId> {
        let row = self
            .store
            .outbox_by_remote(TELEGRAM_CHANNEL, &message_id.to_string())
            .await
            .ok()??;
        if !topics.contains(&row.topic) {
            return None;
        }
        row.payload["data"]["item"].as_i64().map(InboxId::new)
    }

    async fn act(
        &self,
        app: &App,
        user: i64,
        item: InboxId,
        action: ActionKind,
        text: Option<String>,
    ) -> Result<Option<TicketId>, String> {
        let by = Name::parse(&format!("telegram-{user}")).map_err(|e| e.to_string())?;
        let actor = Actor::new(format!("telegram:{user}"));
        app.inbox_act(item, action, text, by, &actor)
            .await
            .map(|acted| acted.item.ticket)
            .map_err(|e| e.to_string())
    }

    /// One `getUpdates` and the handling of what it returned. Returns how many updates came.
    pub async fn poll_once(&self, app: &App) -> Result<usize, String> {
        let offset = self
            .store
            .notify_cursor(CURSOR)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let answer = self
            .call(
                "getUpdates",
                &json!({
                    "offset": offset,
                    "timeout": self.poll_timeout.as_secs(),
                    "allowed_updates": ["message", "callback_query"],
                }),
                self.poll_timeout + Duration::from_secs(10),
            )
            .await?;
        if answer.body["ok"] != true {
            return Err(format!(
                "getUpdates: HTTP {}: {}",
                answer.status,
                answer.body["description"].as_str().unwrap_or("")
            ));
        }
        let updates = answer.body["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for update in &updates {
            let Some(update_id) = update["update_id"].as_i64() else {
                continue;
            };
            let obeyed = self.handle(app, update).await;
            if !obeyed {
                tracing::info!(update_id, "a Telegram update was ignored");
            }
            self.store
                .advance_notify_cursor(CURSOR, update_id + 1, u64::from(!obeyed))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(updates.len())
    }
}

fn on(ticket: &Option<TicketId>) -> String {
    ticket
        .as_ref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

/// Reads updates until `stopped`, backing off after errors (1 s doubling to 30 s).
pub async fn poll(bot: Arc<Bot>, app: App, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stopped.borrow() {
            return;
        }
        let polled = tokio::select! {
            polled = bot.poll_once(&app) => polled,
            _ = stopped.changed() => return,
        };
        match polled {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(error) => {
                tracing::warn!(%error, "reading Telegram updates failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[async_trait]
impl Channel for Bot {
    fn name(&self) -> &str {
        TELEGRAM_CHANNEL
    }

    fn paused(&self) -> bool {
        self.paused
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One message at a time: a chat takes about one a second anyway, and a crash between a
    /// send and its record leaves one message's lease to expire.
    fn batch(&self) -> u32 {
        1
    }

    fn max_per_second(&self) -> u32 {
        self.max_per_second
    }

    async fn deliver(&self, item: &OutboxItem) -> Attempted {
        let facts = self.facts(item).await;
        let text = render::message(
            item.id,
            item.topic,
            &item.payload,
            &facts,
            self.dashboard.as_deref(),
        );
        let mut body = json!({
            "chat_id": self.chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": { "is_disabled": true },
        });
        if matches!(item.topic, Topic::ReviewRequest | Topic::Approval)
            && let Some(id) = item.payload["data"]["item"].as_i64()
        {
            body["reply_markup"] = json!({
                "inline_keyboard": [[
                    { "text": "Approve", "callback_data": format!("approve:{id}") },
                    { "text": "Reject", "callback_data": format!("reject:{id}") },
                ]]
            });
        }
        let answer = match self.call("sendMessage", &body, self.timeout).await {
            Ok(answer) => answer,
            Err(error) => return Attempted::failed(error, None),
        };
        if answer.body["ok"] == true {
            return Attempted {
                ok: true,
                remote_id: answer.body["result"]["message_id"]
                    .as_i64()
                    .map(|m| m.to_string()),
                http_status: Some(answer.status),
                ..Attempted::default()
            };
        }
        let retry_after = answer.body["parameters"]["retry_after"]
            .as_u64()
            .map(Duration::from_secs);
        Attempted {
            retry_after,
            ..Attempted::failed(
                format!(
                    "sendMessage: HTTP {}: {}",
                    answer.status,
                    answer.body["description"].as_str().unwrap_or("")
                ),
                Some(answer.status),
            )
        }
    }
}
