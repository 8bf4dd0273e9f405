//! `/metrics` in the OpenMetrics text format (what Prometheus scrapes). The board's figures
//! (tickets by state, ended runs by outcome and failure class, task runs by outcome, unsettled
//! inbox items and the oldest one's age, open incidents by severity) are read from the store at
//! each scrape, so they hold across restarts and whichever process made them; the verdict is
//! `App::status` (the dashboard's banner, reused for a moment); the engines' figures of this
//! process (dispatch passes, pickup latency) come from `mission_engine::stats`; the HTTP side's
//! own figures (requests, durations) live in this process.

use crate::Web;
use crate::api::types::TicketState;
use crate::error::ApiError;
use mission_core::health::Verdict;
use mission_core::incident::Severity;
use mission_core::{InboxKind, State};
use mission_engine::stats::HistogramFigures;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The figures this process keeps.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

fn request_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(request_histogram as fn() -> Histogram),
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("method".to_owned(), method.to_owned()),
                ("route".to_owned(), route.to_owned()),
                ("status".to_owned(), status.to_string()),
            ])
            .inc();
        self.durations
            .get_or_create(&vec![("route".to_owned(), route.to_owned())])
            .observe(elapsed.as_secs_f64());
    }
}

fn state_label(state: State) -> String {
    serde_json::to_value(TicketState::from(state))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| state.as_str().to_owned())
}

/// Renders every metric.
pub async fn render(web: &Web) -> Result<String, ApiError> {
    let store = web.app.store();
    let tickets = store.ticket_counts().await?;
    let runs = store.run_counts().await?;
    let tasks = store.task_outcome_counts().await?;

    let mut registry = Registry::with_prefix("mission");
    let by_state = Family::<Labels, Gauge>::default();
    for state in State::ALL {
        let count = tickets
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        by_state
            .get_or_create(&vec![("state".to_owned(), state_label(state))])
            .set(count);
    }
    registry.register("tickets", "Tickets in each state", by_state);

    let ended = Family::<Labels, Counter>::default();
    for run in runs {
        ended
            .get_or_create(&vec![
                ("outcome".to_owned(), run.outcome),
                (
                    "failure_class".to_owned(),
                    run.failure_class.unwrap_or_default(),
                ),
            ])
            .inc_by(u64::try_from(run.count).unwrap_or(0));
    }
    registry.register(
        "runs_ended",
        "Ended runs by outcome (submitted, asked, failed) and failure class",
        ended,
    );

    let task_runs = Family::<Labels, Counter>::default();
    for task in tasks {
        task_runs
            .get_or_create(&vec![
                ("task".to_owned(), task.task),
                ("outcome".to_owned(), task.outcome),
            ])
            .inc_by(u64::try_from(task.count).unwrap_or(0));
    }
    registry.register(
        "task_runs",
        "Ended task runs by task and outcome (acted, noop, skipped, degraded, failed)",
        task_runs,
    );

    let now = web.app.clock().now();
    let inbox = store.inbox_counts().await?;
    let items = Family::<Labels, Gauge>::default();
    let oldest = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for kind in InboxKind::ALL {
        for status in ["pending", "delivered"] {
            let count = inbox
                .iter()
                .find(|c| c.kind == kind.as_str() && c.status == status)
                .map_or(0, |c| c.count);
            items
                .get_or_create(&vec![
                    ("kind".to_owned(), kind.as_str().to_owned()),
                    ("status".to_owned(), status.to_owned()),
                ])
                .set(count);
        }
        let age = inbox
            .iter()
            .filter(|c| c.kind == kind.as_str())
            .map(|c| now.since(c.oldest))
            .max()
            .unwrap_or_default();
        oldest
            .get_or_create(&vec![("kind".to_owned(), kind.as_str().to_owned())])
            .set(age.as_secs_f64());
    }
    registry.register(
        "inbox_items",
        "Unsettled inbox items by kind and status (pending, delivered)",
        items,
    );
    registry.register(
        "inbox_oldest_age_seconds",
        "Age of the oldest unsettled inbox item of each kind (0: none)",
        oldest,
    );

    let incidents = store.open_incident_counts().await?;
    let open = Family::<Labels, Gauge>::default();
    for severity in [Severity::Warning, Severity::Critical] {
        let count = incidents
            .iter()
            .find(|(s, _)| s == severity.as_str())
            .map_or(0, |(_, n)| *n);
        open.get_or_create(&vec![("severity".to_owned(), severity.as_str().to_owned())])
            .set(count);
    }
    registry.register("incidents_open", "Open incidents by severity", open);

    let report = web.verdict.get(web).await?;
    let verdict = Family::<Labels, Gauge>::default();
    for each in [Verdict::Working, Verdict::Degraded, Verdict::Broken] {
        verdict
            .get_or_create(&vec![("verdict".to_owned(), each.as_str().to_owned())])
            .set(i64::from(report.verdict == each));
    }
    registry.register(
        "verdict",
        "The instance's health verdict (as `mission status`): 1 for the current one, 0 for the others",
        verdict,
    );
    let reasons = Gauge::<i64>::default();
    reasons.set(i64::try_from(report.reasons.len()).unwrap_or(i64::MAX));
    registry.register("verdict_reasons", "Reasons behind the verdict", reasons);

    registry.register(
        "pickup_latency_seconds",
        "Pickups by this process: from the commit of a run's claim to its agent's start",
        EngineHistogram(mission_engine::stats::PICKUPS.figures()),
    );
    registry.register(
        "dispatch_pass_duration_seconds",
        "Dispatch passes run by this process, by duration",
        EngineHistogram(mission_engine::stats::PASS_DURATIONS.figures()),
    );

    let passes = mission_engine::stats::DISPATCH_PASSES.figures();
    let count = Counter::<u64>::default();
    count.inc_by(passes.count);
    registry.register(
        "dispatch_passes",
        "Dispatch passes run by this process",
        count,
    );
    let seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    seconds.inc_by(passes.total.as_secs_f64());
    registry.register(
        "dispatch_pass_seconds",
        "Time spent in dispatch passes by this process (with dispatch_passes: the mean pass)",
        seconds,
    );
    let last = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    last.set(passes.last.as_secs_f64());
    registry.register(
        "dispatch_last_pass_seconds",
        "Duration of this process's latest dispatch pass",
        last,
    );

    registry.register(
        "http_requests",
        "HTTP requests handled by this process, by method, route and status",
        web.metrics.requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP request (streams: until their headers), by route",
        web.metrics.durations.clone(),
    );

    let mut text = String::new();
    encode(&mut text, &registry)
        .map_err(|e| ApiError::internal(format!("encoding the metrics: {e}")))?;
    Ok(text)
}

/// A histogram the engine keeps (bucket counts of its own), exported as it stands.
#[derive(Debug)]
struct EngineHistogram(HistogramFigures);

impl TypedMetric for EngineHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for EngineHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum.as_secs_f64(),
            self.0.count,
            &self.0.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
