//! The command-line surface (SPEC §3). Only argument shapes live here; each command's behaviour
//! is in `commands/`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "mission",
    version,
    about = "Mission Control: runs a board of tickets through a fleet of autonomous workers",
    after_help = "Exit codes: 0 success, 1 negative answer, 2 usage or input error, 3 internal or store error."
)]
pub struct Cli {
    /// The instance's mission.toml (default: ./mission.toml).
    #[arg(long, global = true, env = "MISSION_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an instance: mission.toml, tasks/, the data folder and the store. Idempotent.
    Init(InitArgs),
    /// Apply pending store migrations.
    Migrate(JsonFlag),
    /// Create, list, show, edit and move tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Say whether a ticket may be dispatched now, and every reason why not.
    Explain(ExplainArgs),
    /// Print the event log as JSON Lines.
    Events(EventsArgs),
    /// Run the dispatcher, the runners, the scheduler and the HTTP API in the foreground until
    /// SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// One dispatch pass, the server's own, then supervise the runs it claimed to their end.
    Dispatch(DispatchArgs),
    /// Inside a run: talk back to Mission Control (the run token comes from the environment).
    #[command(subcommand)]
    Run(RunCommand),
    /// Recurring tasks from tasks/*.md: list them, run one now, show its history.
    #[command(subcommand)]
    Task(TaskCommand),
    /// API tokens for the HTTP API: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Is it working? The verdict with its reasons; exit 0 working, 1 degraded, 2 broken.
    Status(JsonFlag),
    /// What runs used (tokens, cost, runs, run-hours) by worker, pool, ticket, label or day, the
    /// budgets as they stand and the workers parked by a rate limit.
    Usage(UsageArgs),
    /// Incidents found by the operator audit: list them, show one, resolve one.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Items that need a decision: questions, review requests, alerts, failed tickets.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// Notifications (Telegram, webhooks): the outbox and each row's state.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Webhook endpoints of [[notify.webhooks]]: send a signed test ping.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The launcher of a run (started by the runner, not by people): applies the run's sandbox,
    /// then executes its program.
    #[command(name = "__run-sandboxed", hide = true)]
    RunSandboxed(RunSandboxedArgs),
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Outbox rows, newest first.
    List(NotifyListArgs),
}

#[derive(Debug, Args)]
pub struct NotifyListArgs {
    /// Only rows in this state: pending, sent or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this channel (a webhook's name, or telegram).
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Send a ping to the endpoint now, signed like every notification; exit 0 on a 2xx.
    Test(WebhookTestArgs),
}

#[derive(Debug, Args)]
pub struct WebhookTestArgs {
    /// The webhook's name in mission.toml.
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open incidents (every one with --all), newest opened first.
    List(IncidentListArgs),
    /// An incident with its occurrences and their evidence.
    Show(IncidentIdArgs),
    /// Resolve an open incident; if its condition persists, the next audit reopens it.
    Resolve(IncidentResolveArgs),
}

#[derive(Debug, Args)]
pub struct IncidentListArgs {
    /// Resolved incidents too.
    #[arg(long)]
    pub all: bool,
    /// Only warning or critical ones.
    #[arg(long)]
    pub severity: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IncidentIdArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IncidentResolveArgs {
    pub id: String,
    /// Why it is resolved (required).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, and only its hash is kept.
    Create(TokenCreateArgs),
    /// Every token with its scope, expiry, last use and state; never the tokens themselves.
    List(JsonFlag),
    /// Revoke a token at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// read (GET), write (also creates, edits, moves, answers, task runs) or admin (also tokens).
    #[arg(long)]
    pub scope: String,
    /// Valid for this long, e.g. 30d or 12h (default: until revoked).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// A note saying what the token is for.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id, as `mission token list` shows it.
    pub id: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InboxShowArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Items waiting for a decision (pending or delivered), oldest first.
    List(InboxListArgs),
    /// One item, with its action when it was acted on.
    Show(InboxShowArgs),
    /// Act on an item: answered, approved, rejected, requeued, escalated, dismissed. Inside a
    /// run (MISSION_RUN_TOKEN set), the worker the item was delivered to acts on it.
    Act(InboxActArgs),
}

#[derive(Debug, Args)]
pub struct InboxListArgs {
    /// Only items in this state: pending, delivered, acted, failed.
    #[arg(long, conflicts_with = "all")]
    pub status: Option<String>,
    /// Every item, settled ones too.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InboxActArgs {
    pub id: String,
    /// answered, approved, rejected, requeued, escalated or dismissed.
    pub action: String,
    /// The answer, or the reason (needed to answer or reject).
    #[arg(long)]
    pub text: Option<String>,
    /// Who acts (default: operator); not for a run, which acts as its worker.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunSandboxedArgs {
    /// The run's sandbox spec (JSON, written by the runner).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The program's arguments.
    #[arg(last = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Every task with its schedule, next firing and last outcome, and every broken task file.
    List(JsonFlag),
    /// Run a task now, through the same path as a scheduled firing; prints its outcome.
    Run(TaskNameArgs),
    /// A task's runs, newest first.
    History(TaskHistoryArgs),
}

#[derive(Debug, Args)]
pub struct TaskNameArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskHistoryArgs {
    pub name: String,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The HTTP API's address, IP:PORT (default: `[server] bind`, 127.0.0.1:3001). Anything but a
    /// loopback address needs `[server] auth = true`.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// Exactly one pass (the only mode; the server runs the loop).
    #[arg(long, required = true)]
    pub once: bool,
    /// One lane only: normal or needs-input (default: needs-input, then normal, as the server).
    #[arg(long)]
    pub lane: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Ask a question: the ticket waits in needs_input, the worker's slot is released.
    Ask(RunTextArgs),
    /// Report progress (also keeps the run from being judged stalled).
    Progress(RunTextArgs),
    /// Submit the work for review.
    Submit(JsonFlag),
    /// Ask the harness to record evidence: it checks the commit, runs the configured test,
    /// requests the configured route or hashes the file itself. Exit 1 when it did not verify.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// A reviewer run's verdict on the ticket it was asked to review.
    Review(RunReviewArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// A commit of the ticket's branch (default: the workspace's HEAD).
    Commit(EvidenceCommitArgs),
    /// A test command configured in mission.toml, run now by the harness in the workspace.
    Test(EvidenceNameArgs),
    /// A route configured in mission.toml, requested now by the harness.
    Route(EvidenceNameArgs),
    /// A file of the workspace (a screenshot, a build output), hashed now by the harness.
    Artifact(EvidenceArtifactArgs),
}

#[derive(Debug, Args)]
pub struct EvidenceCommitArgs {
    pub sha: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvidenceNameArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvidenceArtifactArgs {
    /// The file's path, relative to the workspace.
    pub path: String,
    /// Its media type (default: from its extension).
    #[arg(long)]
    pub media_type: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunReviewArgs {
    /// approve or reject.
    pub decision: String,
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunTextArgs {
    pub text: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder of the new instance (default: the current folder).
    pub dir: Option<PathBuf>,
    /// Also add a few example tickets to a new, empty board.
    #[arg(long)]
    pub demo: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Create a ticket; it starts in todo when assigned, else in triage.
    Add(TicketAddArgs),
    /// List tickets, highest priority first.
    List(TicketListArgs),
    /// Show a ticket with its timeline.
    Show(TicketShowArgs),
    /// Move a ticket to another state.
    Move(TicketMoveArgs),
    /// Change a ticket's fields.
    Edit(TicketEditArgs),
    /// Answer a ticket's open question; it is requeued to resume the same agent session.
    Answer(TicketAnswerArgs),
    /// Ask the gate: close the ticket if its evidence holds now and its review is given; else
    /// exit 1 naming what is missing.
    Done(TicketShowArgs),
    /// A person's review verdict on a ticket in review.
    Review(TicketReviewArgs),
}

#[derive(Debug, Args)]
pub struct TicketReviewArgs {
    pub id: String,
    /// approve or reject.
    pub decision: String,
    #[arg(long)]
    pub reason: String,
    /// The reviewer's name (default: operator).
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketAnswerArgs {
    pub id: String,
    pub text: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BodyArgs {
    /// The ticket's body text.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the body from a file (`-` for standard input), byte for byte.
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TicketAddArgs {
    #[arg(long)]
    pub title: String,
    #[command(flatten)]
    pub body: BodyArgs,
    /// The worker (or controller) the ticket is assigned to.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Who owns the ticket (e.g. the controller of its campaign).
    #[arg(long)]
    pub owner: Option<String>,
    /// A label; repeat for more.
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Higher runs first; -1000..=1000, default 0.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// A ticket this one waits for; repeat for more.
    #[arg(long = "depends-on", value_name = "ID")]
    pub depends_on: Vec<String>,
    /// The git repository the work happens in.
    #[arg(long)]
    pub repo: Option<String>,
    /// What the ticket must prove to be done: none, or commit, test, route, artifact joined by '+'.
    #[arg(long, value_name = "POLICY")]
    pub evidence_policy: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketListArgs {
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub assignee: Option<String>,
    /// At most this many tickets.
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketShowArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketMoveArgs {
    pub id: String,
    /// triage, todo, blocked, cancelled, … (running, review, needs_input and done are reached
    /// through the dispatcher, runs, answers and the gate).
    pub state: String,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketEditArgs {
    pub id: String,
    #[arg(long)]
    pub title: Option<String>,
    #[command(flatten)]
    pub body: BodyArgs,
    #[arg(long, conflicts_with = "no_assignee")]
    pub assignee: Option<String>,
    /// Remove the assignee.
    #[arg(long)]
    pub no_assignee: bool,
    #[arg(long, conflicts_with = "no_owner")]
    pub owner: Option<String>,
    /// Remove the owner.
    #[arg(long)]
    pub no_owner: bool,
    /// Replace the labels with these; repeat for more.
    #[arg(long = "label", value_name = "LABEL", conflicts_with = "no_labels")]
    pub labels: Vec<String>,
    /// Remove every label.
    #[arg(long)]
    pub no_labels: bool,
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// Replace the dependencies with these; repeat for more.
    #[arg(long = "depends-on", value_name = "ID", conflicts_with = "no_depends")]
    pub depends_on: Vec<String>,
    /// Remove every dependency.
    #[arg(long)]
    pub no_depends: bool,
    #[arg(long, conflicts_with = "no_repo")]
    pub repo: Option<String>,
    /// Remove the repository.
    #[arg(long)]
    pub no_repo: bool,
    #[arg(long, value_name = "POLICY")]
    pub evidence_policy: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Group by worker, pool, ticket, label or day (the instance's local days).
    #[arg(long, default_value = "worker")]
    pub by: String,
    /// From this time (RFC 3339), local date (2026-11-01) or duration back (7d). Default: the
    /// start of the local month.
    #[arg(long)]
    pub since: Option<String>,
    /// Show the first N groups by cost (0: all). Default: 50 with `--by ticket`, all otherwise;
    /// not with `--by day`.
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub since: i64,
    /// Only events of this ticket.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Keep printing new events as they are written.
    #[arg(long)]
    pub follow: bool,
    /// Accepted for symmetry: events are always JSON Lines.
    #[arg(long)]
    pub json: bool,
}
