//! Webhooks, signed the Standard Webhooks way: a JSON body `{type, timestamp, data}` POSTed with
//! `webhook-id` (the outbox row's, the same for every attempt), `webhook-timestamp` (seconds)
//! and `webhook-signature` (`v1,` base64 HMAC-SHA256 of `id.timestamp.body`), so that
//! receivers verify it with any Standard Webhooks library. A 2xx is success; anything else, or
//! no answer in time, is retried (a 429's or 503's `Retry-After` seconds are honoured).

use super::{Attempted, Channel, unix_seconds};
use crate::clock::Clock;
use async_trait::async_trait;
use mission_core::notify::{Topic, WebhookSettings, message_id};
use mission_core::{Timestamp, notify::WebhookSecret};
use mission_store::OutboxItem;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub struct Webhook {
    settings: WebhookSettings,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

/// The body of a notification: `type` is the topic, `data` the payload the store kept.
pub fn body(topic: Topic, created_at: Timestamp, id: &str, payload: &Value) -> Vec<u8> {
    json!({
        "type": topic.as_str(),
        "timestamp": created_at,
        "id": id,
        "data": payload,
    })
    .to_string()
    .into_bytes()
}

/// What a POST came to. Errors name no URL (it may carry a token of the receiver's).
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    id: &str,
    now: Timestamp,
    body: Vec<u8>,
    timeout: Duration,
) -> Attempted {
    let timestamp = unix_seconds(now);
    let signature = secret.sign(id, timestamp, &body);
    let sent = http
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("user-agent", "mission-control")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                return Attempted {
                    ok: true,
                    http_status: Some(status.as_u16()),
                    ..Attempted::default()
                };
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Attempted {
                retry_after,
                ..Attempted::failed(format!("HTTP {}", status.as_u16()), Some(status.as_u16()))
            }
        }
        Err(error) => {
            let what = if error.is_timeout() {
                format!("no answer within {}", humantime::format_duration(timeout))
            } else {
                error.without_url().to_string()
            };
            Attempted::failed(what, None)
        }
    }
}

impl Webhook {
    pub fn new(settings: WebhookSettings, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Webhook {
            settings,
            http,
            clock,
        }
    }

    /// `mission webhook test NAME`: a ping, sent now and not queued.
    pub async fn ping(&self) -> Attempted {
        let now = self.clock.now();
        let id = format!("msg_mcping{}", now.as_millis());
        let body = body(Topic::Ping, now, &id, &json!({ "ping": true }));
        post(
            &self.http,
            &self.settings.url,
            &self.settings.secret,
            &id,
            now,
            body,
            self.settings.timeout,
        )
        .await
    }
}

#[async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        self.settings.name.as_str()
    }

    fn paused(&self) -> bool {
        self.settings.paused
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn max_per_second(&self) -> u32 {
        self.settings.max_per_second
    }

    async fn deliver(&self, item: &OutboxItem) -> Attempted {
        let id = message_id(item.id);
        let body = body(item.topic, item.created_at, &id, &item.payload);
        post(
            &self.http,
            &self.settings.url,
            &self.settings.secret,
            &id,
            self.clock.now(),
            body,
            self.settings.timeout,
        )
        .await
    }
}
