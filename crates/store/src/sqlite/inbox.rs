//! The inbox in SQLite. Every change of an item goes through the core's transitions (`deliver`,
//! `expire`, `act`, `fail`) on the item read in the same write transaction, and is written with
//! one event. An item is `acted` only with its row in `inbox_actions`, written first: the
//! trigger `inbox_acted_needs_its_action` refuses anything else, and a settled item never
//! changes again (`inbox_settled_items_stay`).

use super::SqliteStore;
use super::events::append_event;
use super::review::{RecordIn, record_review_in};
use super::runs::answer_question;
use super::tickets::{load_ticket, transition};
use crate::error::corrupt;
use crate::{
    ActOnItem, Acted, Change, Delivered, Expired, InboxFilter, InboxStore, RecordReview, Result,
    StoreError, Verdict,
};
use async_trait::async_trait;
use mission_core::inbox::{InboxError, StoredInboxItem};
use mission_core::inbox_flow::{ActionEffect, action_effect};
use mission_core::review::ReviewerKind;
use mission_core::transition::Via;
use mission_core::{
    Action, ActionKind, ActionRequest, Actor, EventKind, InboxId, InboxItem, InboxPolicy,
    NewInboxItem, State, TicketId, Timestamp,
};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection};

const ITEM_COLUMNS: &str = "i.id, i.kind, i.ticket, i.addressee, i.text, i.created_at, \
    i.deliveries, i.status, i.lease_expires_at, i.failure, i.failed_at, \
    a.kind AS action_kind, a.ticket AS action_ticket, a.actor AS action_actor, \
    a.text AS action_text, a.at AS action_at";

const ITEM_FROM: &str = "inbox_items i LEFT JOIN inbox_actions a ON a.item = i.id";

fn decode_item(row: &SqliteRow) -> Result<InboxItem> {
    let id = InboxId::new(row.try_get("id")?);
    let text_of = |col: &str| -> Result<String> { Ok(row.try_get::<String, _>(col)?) };
    let ticket = row
        .try_get::<Option<String>, _>("ticket")?
        .map(|t| TicketId::parse(&t).map_err(|_| corrupt("ticket id", &t)))
        .transpose()?;
    let action = match row.try_get::<Option<String>, _>("action_kind")? {
        None => None,
        Some(kind) => Some(Action {
            item: id,
            kind: kind.parse().map_err(|_| corrupt("action", &kind))?,
            ticket: row
                .try_get::<Option<String>, _>("action_ticket")?
                .map(|t| TicketId::parse(&t).map_err(|_| corrupt("ticket id", &t)))
                .transpose()?,
            actor: Actor::new(text_of("action_actor")?),
            text: row.try_get("action_text")?,
            at: Timestamp::from_millis(row.try_get("action_at")?),
        }),
    };
    let failure = match (
        row.try_get::<Option<String>, _>("failure")?,
        row.try_get::<Option<i64>, _>("failed_at")?,
    ) {
        (Some(reason), Some(at)) => Some((reason, Timestamp::from_millis(at))),
        _ => None,
    };
    let kind = text_of("kind")?;
    let addressee = text_of("addressee")?;
    let status = text_of("status")?;
    let deliveries: i64 = row.try_get("deliveries")?;
    let stored = StoredInboxItem {
        id,
        kind: kind.parse().map_err(|_| corrupt("inbox kind", &kind))?,
        ticket,
        addressee: addressee
            .parse()
            .map_err(|_| corrupt("addressee", &addressee))?,
        text: text_of("text")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        deliveries: u32::try_from(deliveries).map_err(|_| corrupt("deliveries", deliveries))?,
        status: status
            .parse()
            .map_err(|_| corrupt("inbox status", &status))?,
        lease_expires_at: row
            .try_get::<Option<i64>, _>("lease_expires_at")?
            .map(Timestamp::from_millis),
        failure,
        action,
    };
    // A row that breaks the inbox's rules (acted without an action) is refused, not shown.
    InboxItem::from_stored(stored).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) async fn load_item(conn: &mut SqliteConnection, id: InboxId) -> Result<InboxItem> {
    let sql = format!("SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.id = ?");
    let row = sqlx::query(&sql)
        .bind(id.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::InboxNotFound(id))?;
    decode_item(&row)
}

/// Creates an item inside the caller's transaction (`inbox.created`). `question` links a
/// question item to the question it asks.
pub(super) async fn insert_item(
    conn: &mut SqliteConnection,
    new: &NewInboxItem,
    question: Option<i64>,
    change: &Change,
) -> Result<InboxItem> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO inbox_items (kind, ticket, addressee, text, created_at, status, question) \
         VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
    )
    .bind(new.kind.as_str())
    .bind(new.ticket.as_ref().map(|t| t.to_string()))
    .bind(new.addressee.to_string())
    .bind(&new.text)
    .bind(change.at.as_millis())
    .bind(question)
    .fetch_one(&mut *conn)
    .await?;
    let item = InboxItem::new(InboxId::new(id), new.clone(), change.at);
    let data = json!({
        "item": id,
        "kind": new.kind,
        "addressee": new.addressee,
        "question": question,
    });
    append_event(
        conn,
        EventKind::InboxCreated,
        new.ticket.as_ref(),
        change,
        &data,
    )
    .await?;
    Ok(item)
}

/// Writes an item's state as the core left it. An acted item's action row goes first, so that
/// the trigger sees it.
async fn write_item(
    conn: &mut SqliteConnection,
    item: &InboxItem,
    token_hash: Option<&str>,
) -> Result<()> {
    let stored = item.to_stored();
    if let Some(action) = &stored.action {
        sqlx::query(
            "INSERT INTO inbox_actions (item, kind, ticket, actor, text, at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(item.id.get())
        .bind(action.kind.as_str())
        .bind(action.ticket.as_ref().map(|t| t.to_string()))
        .bind(action.actor.as_str())
        .bind(&action.text)
        .bind(action.at.as_millis())
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "UPDATE inbox_items SET status = ?, deliveries = ?, lease_expires_at = ?, \
         delivery_token_hash = ?, failure = ?, failed_at = ? WHERE id = ?",
    )
    .bind(stored.status.as_str())
    .bind(i64::from(stored.deliveries))
    .bind(stored.lease_expires_at.map(|t| t.as_millis()))
    .bind(token_hash)
    .bind(stored.failure.as_ref().map(|(reason, _)| reason.as_str()))
    .bind(stored.failure.as_ref().map(|(_, at)| at.as_millis()))
    .bind(item.id.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn token_of(conn: &mut SqliteConnection, id: InboxId) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT delivery_token_hash FROM inbox_items WHERE id = ?")
            .bind(id.get())
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Fails an item (already failed by the core on `item`) and raises its alert, in the caller's
/// transaction.
async fn write_failure(
    conn: &mut SqliteConnection,
    item: &InboxItem,
    alert: Option<NewInboxItem>,
    change: &Change,
) -> Result<Option<InboxItem>> {
    write_item(conn, item, None).await?;
    let alert = match alert {
        Some(new) => Some(insert_item(conn, &new, None, change).await?),
        None => None,
    };
    let reason = match item.state() {
        mission_core::InboxState::Failed { reason, .. } => reason.clone(),
        _ => String::new(),
    };
    let data = json!({
        "item": item.id,
        "kind": item.kind,
        "reason": reason,
        "deliveries": item.deliveries(),
        "alert": alert.as_ref().map(|a| a.id),
    });
    append_event(
        conn,
        EventKind::InboxFailed,
        item.ticket.as_ref(),
        change,
        &data,
    )
    .await?;
    Ok(alert)
}

/// Acts on `item` as `request` says, in the caller's transaction: the effect on the ticket
/// first (whose failure writes nothing), then the action and the item (`inbox.acted`).
pub(super) async fn act_in(
    conn: &mut SqliteConnection,
    mut item: InboxItem,
    request: &ActOnItem<'_>,
    change: &Change,
) -> Result<Acted> {
    if request.by.kind == ReviewerKind::Worker {
        // A worker acts only on the item delivered to it, under that delivery's token.
        let stored = token_of(conn, item.id).await?;
        let given = request.token_hash.as_deref();
        if given.is_none() || stored.as_deref() != given {
            return Err(InboxError::NotDeliveredTo {
                item: item.id,
                worker: request.by.name.clone(),
            }
            .into());
        }
        item.worker_may_act(&request.by.name)?;
    }
    let action = item.act(
        ActionRequest {
            kind: request.action,
            actor: change.actor.clone(),
            text: request.text.clone(),
        },
        change.at,
    )?;
    let mut extra = json!({});
    match (action_effect(item.kind, action.kind), &item.ticket) {
        (ActionEffect::None, _) | (_, None) => {}
        (ActionEffect::AnswerQuestion, Some(ticket)) => {
            let question: Option<i64> =
                sqlx::query_scalar("SELECT question FROM inbox_items WHERE id = ?")
                    .bind(item.id.get())
                    .fetch_one(&mut *conn)
                    .await?;
            let question = question.ok_or_else(|| StoreError::NoQuestion(ticket.clone()))?;
            let text = action.text.as_deref().unwrap_or_default();
            answer_question(conn, ticket, question, text, Some(item.id), change).await?;
            extra["question"] = json!(question);
        }
        (ActionEffect::Review(decision), Some(ticket)) => {
            let current = load_ticket(conn, ticket).await?;
            let review = RecordReview {
                ticket: ticket.clone(),
                attempt: current.current_attempt(),
                verdict: Verdict::Decision {
                    decision,
                    reason: action.text.clone().unwrap_or_default(),
                    reviewer: request.by.clone(),
                },
                request: None,
                rules: request.rules,
                max_attempts: request.max_attempts,
                routes: request.routes,
            };
            let result = record_review_in(
                conn,
                RecordIn {
                    request: &review,
                    acting_item: Some(item.id),
                },
                change,
            )
            .await?;
            extra["review"] = json!(result.record.outcome.as_str());
        }
        (ActionEffect::Requeue, Some(ticket)) => {
            let data = json!({ "inbox_item": item.id, "reason": action.text });
            transition(
                conn,
                ticket,
                State::Todo,
                Via::Operator,
                data,
                change,
                |_| {},
            )
            .await?;
        }
    }
    let token = token_of(conn, item.id).await?;
    write_item(conn, &item, token.as_deref()).await?;
    let mut data = json!({
        "item": item.id,
        "kind": item.kind,
        "action": action.kind,
        "text": action.text,
    });
    if let (serde_json::Value::Object(data), serde_json::Value::Object(extra)) = (&mut data, extra)
    {
        data.extend(extra);
    }
    append_event(
        conn,
        EventKind::InboxActed,
        item.ticket.as_ref(),
        change,
        &data,
    )
    .await?;
    Ok(Acted { item, action })
}

/// Acts with `action` on every unsettled item of `kind` about `ticket` (but `except`), as the
/// side of a change made elsewhere: a question answered with `ticket answer`, a review given
/// with `ticket review`. Items the core refuses to settle that way are left as they are.
pub(super) async fn settle_items_of(
    conn: &mut SqliteConnection,
    ticket: &TicketId,
    kind: mission_core::InboxKind,
    action: ActionKind,
    text: Option<&str>,
    except: Option<InboxId>,
    change: &Change,
) -> Result<Vec<InboxId>> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.ticket = ? AND i.kind = ? \
         AND i.status IN ('pending', 'delivered') ORDER BY i.id"
    );
    let rows = sqlx::query(&sql)
        .bind(ticket.to_string())
        .bind(kind.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let mut settled = Vec::new();
    for row in rows {
        let mut item = decode_item(&row)?;
        if Some(item.id) == except {
            continue;
        }
        let request = ActionRequest {
            kind: action,
            actor: change.actor.clone(),
            text: text.map(str::to_owned),
        };
        if item.act(request, change.at).is_err() {
            continue;
        }
        let token = token_of(conn, item.id).await?;
        write_item(conn, &item, token.as_deref()).await?;
        let data = json!({
            "item": item.id,
            "kind": item.kind,
            "action": action,
            "text": text,
        });
        append_event(conn, EventKind::InboxActed, Some(ticket), change, &data).await?;
        settled.push(item.id);
    }
    Ok(settled)
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn create_inbox_item(&self, item: &NewInboxItem, change: &Change) -> Result<InboxItem> {
        let mut tx = self.write_tx().await?;
        if let Some(ticket) = &item.ticket {
            load_ticket(&mut tx, ticket).await?;
        }
        let item = insert_item(&mut tx, item, None, change).await?;
        tx.commit().await?;
        Ok(item)
    }

    async fn inbox_item(&self, id: InboxId) -> Result<InboxItem> {
        let mut conn = self.pool.acquire().await?;
        load_item(&mut conn, id).await
    }

    async fn inbox_items(&self, filter: &InboxFilter) -> Result<Vec<InboxItem>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!(
            "SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE 1 = 1"
        ));
        if let Some(status) = filter.status {
            query.push(" AND i.status = ").push_bind(status.as_str());
        }
        if let Some(addressee) = &filter.addressee {
            query
                .push(" AND i.addressee = ")
                .push_bind(addressee.to_string());
        }
        if filter.to_workers {
            query.push(" AND i.addressee LIKE 'worker:%'");
        }
        if let Some(ticket) = &filter.ticket {
            query.push(" AND i.ticket = ").push_bind(ticket.to_string());
        }
        if filter.open {
            query.push(" AND i.status IN ('pending', 'delivered')");
        }
        if let Some(after) = filter.after {
            query.push(" AND i.id > ").push_bind(after.get());
        }
        query.push(" ORDER BY i.id");
        if let Some(limit) = filter.limit {
            query.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_item).collect()
    }

    async fn inbox_item_for_token(&self, token_hash: &str) -> Result<Option<InboxItem>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.delivery_token_hash = ?");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_item).transpose()
    }

    async fn deliver_inbox_item(
        &self,
        id: InboxId,
        policy: &InboxPolicy,
        token_hash: Option<&str>,
        change: &Change,
    ) -> Result<Delivered> {
        let mut tx = self.write_tx().await?;
        let mut item = load_item(&mut tx, id).await?;
        let delivered = match item.deliver(policy, change.at) {
            Ok(delivery) => {
                write_item(&mut tx, &item, token_hash).await?;
                let data = json!({
                    "item": id,
                    "delivery": delivery.delivery,
                    "lease_expires_at": delivery.lease_expires_at,
                    "addressee": item.addressee,
                });
                append_event(
                    &mut tx,
                    EventKind::InboxDelivered,
                    item.ticket.as_ref(),
                    change,
                    &data,
                )
                .await?;
                Delivered::Delivered { item, delivery }
            }
            Err(InboxError::DeliveriesExhausted { deliveries, .. }) => {
                let reason = format!(
                    "not acted on after {deliveries} deliveries to {}",
                    item.addressee
                );
                let alert = item.fail(&reason, policy, change.at)?;
                let alert = write_failure(&mut tx, &item, alert, change).await?;
                Delivered::Failed { item, alert }
            }
            Err(error) => return Err(error.into()),
        };
        tx.commit().await?;
        Ok(delivered)
    }

    async fn expire_inbox_leases(
        &self,
        policy: &InboxPolicy,
        change: &Change,
    ) -> Result<Vec<Expired>> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.status = 'delivered' \
             AND i.lease_expires_at <= ? ORDER BY i.id"
        );
        let rows = sqlx::query(&sql)
            .bind(change.at.as_millis())
            .fetch_all(&mut *tx)
            .await?;
        let mut expired = Vec::new();
        for row in rows {
            let mut item = decode_item(&row)?;
            match item.expire(policy, change.at)? {
                mission_core::inbox::Expiry::Redeliver => {
                    // The token of the run it was delivered to no longer acts on it.
                    write_item(&mut tx, &item, None).await?;
                    let data = json!({ "item": item.id, "deliveries": item.deliveries() });
                    append_event(
                        &mut tx,
                        EventKind::InboxExpired,
                        item.ticket.as_ref(),
                        change,
                        &data,
                    )
                    .await?;
                    expired.push(Expired { item, alert: None });
                }
                mission_core::inbox::Expiry::Failed { alert } => {
                    let alert = write_failure(&mut tx, &item, alert, change).await?;
                    expired.push(Expired { item, alert });
                }
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

    async fn fail_inbox_item(
        &self,
        id: InboxId,
        reason: &str,
        policy: &InboxPolicy,
        change: &Change,
    ) -> Result<Expired> {
        let mut tx = self.write_tx().await?;
        let mut item = load_item(&mut tx, id).await?;
        let alert = item.fail(reason, policy, change.at)?;
        let alert = write_failure(&mut tx, &item, alert, change).await?;
        tx.commit().await?;
        Ok(Expired { item, alert })
    }

    async fn act_on_inbox_item(&self, request: &ActOnItem<'_>, change: &Change) -> Result<Acted> {
        let mut tx = self.write_tx().await?;
        let item = load_item(&mut tx, request.item).await?;
        let acted = act_in(&mut tx, item, request, change).await?;
        fail::fail_point!("inbox-act-before-commit", |_| Err(StoreError::backend(
            "failpoint inbox-act-before-commit"
        )));
        tx.commit().await?;
        Ok(acted)
    }
}
