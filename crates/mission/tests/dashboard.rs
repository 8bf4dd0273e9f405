//! The dashboard through the real binary: `mission serve` on a port of its own with
//! authentication on, driven by a real headless Chromium over the DevTools protocol
//! (chromiumoxide). The browser signs in through the login form with a token, creates a ticket
//! through the board's form and watches it run and ask without a reload (the event stream),
//! answers the question through the inbox's form, watches the resumed run reach review on the
//! ticket page, approves it there (the gate closes it), and sees the verdict banner turn
//! degraded when a worker is rate limited; screenshots of the board and the ticket page are
//! saved (and checked not blank). And a secret canary: a worker's API key that
//! its agent prints never shows in any page, API answer or the server's own log.
//!
//! Chromium is Debian's `chromium` (`scripts/ensure-chromium.sh` installs it; `.ci/run` calls
//! it), or `MISSION_CHROMIUM`. Without one the browser test fails in CI (`CI=true`) and is
//! skipped with a notice elsewhere.

mod common;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use common::{FAST, Instance, Served};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CANARY: &str = "canary-5b1e9f03c7d2-never-shown";

/// The Chromium to drive, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("MISSION_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome-stable",
        "google-chrome",
    ] {
        let found = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file());
        if let Some(path) = found {
            return Ok(path);
        }
    }
    Err("no Chromium found (run scripts/ensure-chromium.sh, or set MISSION_CHROMIUM)".to_owned())
}

/// Waits until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `expression` is true on the page, for at most `limit`; on failure, says what
/// the page shows.
async fn until_page(page: &chromiumoxide::Page, what: &str, limit: Duration, expression: &str) {
    let start = Instant::now();
    while !evaluate_bool(page, expression).await {
        if start.elapsed() > limit {
            let text = match page
                .evaluate("location.href + '\\n' + document.body.innerText")
                .await
            {
                Ok(v) => v.into_value::<String>().unwrap_or_default(),
                Err(e) => format!("(no page: {e})"),
            };
            panic!("{what}: not within {limit:?}; the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn evaluate_bool(page: &chromiumoxide::Page, expression: &str) -> bool {
    match page.evaluate(expression).await {
        Ok(result) => result.into_value::<bool>().unwrap_or(false),
        Err(_) => false,
    }
}

/// The expression's string value; empty when the page could not answer — e.g. "Cannot find
/// context with specified id" while a live update or a navigation replaces the document — so
/// that `eventually` asks again instead of failing on the page's own timing.
async fn evaluate_string(page: &chromiumoxide::Page, expression: &str) -> String {
    match page.evaluate(expression).await {
        Ok(result) => result.into_value::<String>().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Saves a screenshot as a test artifact and checks that it shows something.
async fn screenshot(page: &chromiumoxide::Page, name: &str) {
    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &png).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
    // A blank page compresses to almost nothing; a rendered board does not.
    assert!(
        png.len() > 8 * 1024,
        "{} looks blank: {} bytes",
        path.display(),
        png.len()
    );
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let chromium = match chromium() {
        Ok(path) => path,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("NOTICE: the_dashboard_in_a_real_browser is skipped: {why}");
            return;
        }
    };
    // Authentication on: the browser signs in through the login form with a token. No
    // evidence is asked for: a person's approval is all the gate needs.
    let instance =
        Instance::with_fake_workers(&format!("{FAST}\n[evidence]\ndefault = \"none\"\n"));
    // No example task: auto-review would pass the gate before the person approves.
    for task in std::fs::read_dir(instance.path().join("tasks")).unwrap() {
        std::fs::remove_file(task.unwrap().path()).unwrap();
    }
    let token = instance
        .ok(&["token", "create", "--scope", "write"])
        .trim()
        .to_owned();
    let served = Served::start(&instance, &[("MISSION_SERVER__AUTH", "true")]);
    let base = format!("http://{}", served.addr);

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(&chromium)
        .disable_default_args()
        .no_sandbox()
        .user_data_dir(profile.path())
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
            "disable-dev-shm-usage",
        ])
        .window_size(1400, 1000)
        .viewport(None)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .unwrap_or_else(|e| panic!("{} does not start: {e}", chromium.display()));
    let events = tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if event.is_err() {
                break;
            }
        }
    });

    // The board sends a stranger to the login form; the token opens a session.
    let page = browser.new_page(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    eventually("the login form", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "location.pathname === '/login' && document.querySelector('input[name=token]') !== null",
        )
    })
    .await;
    page.find_element("input[name=token]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(&token)
        .await
        .unwrap();
    page.find_element("form[action='/login'] button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("signed in, on the board", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "location.pathname === '/' && document.querySelector('#verdict') !== null \
             && document.querySelector('details.new-ticket') !== null",
        )
    })
    .await;
    let verdict = "(document.querySelector('#verdict strong') || {}).textContent";
    let before = instance.json(&["status"])["verdict"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(before, "working", "{}", instance.ok(&["status"]));
    eventually(
        "the banner shows the verdict",
        Duration::from_secs(20),
        || async { evaluate_string(&page, verdict).await == before },
    )
    .await;

    // A ticket created through the board's form. Its agent works a moment, asks, and after the
    // answer works a moment more and submits.
    page.find_element("details.new-ticket summary")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.find_element("details.new-ticket input[name=title]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("Seen live in the browser")
        .await
        .unwrap();
    page.find_element("details.new-ticket input[name=assignee]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("luci")
        .await
        .unwrap();
    page.evaluate(
        "document.querySelector('details.new-ticket textarea[name=body]').value = \
         'fake-agent: sleep 3\\nfake-agent: ask Which branch should I use?\\nfake-agent: sleep 3\\n'; true",
    )
    .await
    .unwrap();
    page.find_element("details.new-ticket button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form leads to the new ticket's page, which follows it without a reload.
    until_page(
        &page,
        "the new ticket's page",
        Duration::from_secs(20),
        "location.pathname === '/tickets/MC-1' \
         && document.body.getAttribute('data-live-connected') === 'true'",
    )
    .await;
    let shown = instance.show("MC-1");
    assert_eq!(shown["title"], "Seen live in the browser", "{shown}");
    assert_eq!(shown["assignee"], "luci", "{shown}");
    // A mark that a reload would wipe out.
    page.evaluate("window.missionMark = 'still here'; true")
        .await
        .unwrap();
    let ticket_state = "(document.querySelector('#ticket-state') || {}).textContent";

    // It runs, then its agent asks: the page follows without a reload.
    eventually(
        "the page shows MC-1 running",
        Duration::from_secs(20),
        || async {
            let state = evaluate_string(&page, ticket_state).await;
            state == "running" || state == "needs_input"
        },
    )
    .await;
    until_page(
        &page,
        "the page shows needs_input",
        Duration::from_secs(30),
        &format!("{ticket_state} === 'needs_input'"),
    )
    .await;
    assert_eq!(instance.state("MC-1"), "needs_input");
    assert_eq!(
        evaluate_string(&page, "window.missionMark").await,
        "still here",
        "the page changed without a reload"
    );
    page.goto(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    until_page(
        &page,
        "the board shows needs_input",
        Duration::from_secs(20),
        "(document.querySelector('[data-ticket=\"MC-1\"] .state') || {}).textContent === 'needs_input'",
    )
    .await;
    screenshot(&page, "board.png").await;

    // The inbox answers the question through its form.
    page.goto(format!("{base}/inbox")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    assert!(
        evaluate_bool(
            &page,
            "document.body.innerText.includes('Which branch should I use?')"
        )
        .await
    );
    page.find_element("form.act-answered textarea")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("use main")
        .await
        .unwrap();
    page.find_element("form.act-answered button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let start = Instant::now();
    while !evaluate_bool(&page, "document.body.innerText.includes('answered (MC-1)')").await {
        if start.elapsed() > Duration::from_secs(20) {
            let text =
                evaluate_string(&page, "location.href + '\\n' + document.body.innerText").await;
            panic!(
                "no notice of the answer; the page shows:\n{text}\nserver log:\n{}",
                served.log.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = instance.show("MC-1");
    let answered = shown["timeline"].as_array().unwrap().iter().any(|e| {
        e["kind"] == "inbox.acted"
            && e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("dashboard"))
    });
    assert!(
        answered,
        "the dashboard's action is in the timeline: {shown}"
    );

    // The ticket page follows the resumed run to review without a reload.
    page.goto(format!("{base}/tickets/MC-1")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    eventually("the ticket page is live", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "document.body.getAttribute('data-live-connected') === 'true'",
        )
    })
    .await;
    page.evaluate("window.missionMark = 'still here'; true")
        .await
        .unwrap();
    eventually(
        "the ticket page shows review",
        Duration::from_secs(30),
        || async { evaluate_string(&page, ticket_state).await == "review" },
    )
    .await;
    assert_eq!(
        evaluate_string(&page, "window.missionMark").await,
        "still here",
        "the ticket page changed without a reload"
    );
    let runs = instance.show("MC-1")["runs"].as_array().unwrap().len();
    assert_eq!(runs, 2, "asked, then resumed to submit");
    eventually(
        "the ticket page shows its log",
        Duration::from_secs(30),
        || evaluate_bool(&page, "document.querySelector('#log') !== null"),
    )
    .await;
    screenshot(&page, "ticket.png").await;

    // A person approves the review through the ticket page's form: the gate closes it.
    eventually("the review form", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "document.querySelector('form[action=\"/tickets/MC-1/review\"] input[name=reason]') !== null",
        )
    })
    .await;
    page.find_element("form[action='/tickets/MC-1/review'] input[name=reason]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("looks right")
        .await
        .unwrap();
    page.find_element("form[action='/tickets/MC-1/review'] button[value=approve]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("MC-1 done", Duration::from_secs(20), || async {
        instance.state("MC-1") == "done"
    })
    .await;
    let shown = instance.show("MC-1");
    let approved = shown["timeline"].as_array().unwrap().iter().any(|e| {
        e["kind"] == "review.approved"
            && e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("dashboard"))
    });
    assert!(
        approved,
        "the dashboard's approval is in the timeline: {shown}"
    );
    eventually(
        "the ticket page shows done",
        Duration::from_secs(20),
        || async { evaluate_string(&page, ticket_state).await == "done" },
    )
    .await;

    // The verdict changes on the open board: a worker parked by a rate limit degrades it.
    page.goto(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    eventually("the board is live", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "document.body.getAttribute('data-live-connected') === 'true'",
        )
    })
    .await;
    page.evaluate("window.missionMark = 'still here'; true")
        .await
        .unwrap();
    assert_eq!(evaluate_string(&page, verdict).await, "working");
    let limited = instance.add_with_body("limited", "codex", b"fake-agent: rate-limit\n");
    until_page(
        &page,
        "a ticket added from the CLI appears on the board",
        Duration::from_secs(20),
        &format!("document.querySelector('[data-ticket=\"{limited}\"]') !== null"),
    )
    .await;
    // The page is not helped by anyone asking for the verdict: only the server assesses it.
    until_page(
        &page,
        "the banner shows degraded",
        Duration::from_secs(30),
        "document.querySelector('#verdict strong').textContent === 'degraded' \
         && document.querySelector('#verdict').innerText.includes('worker_rate_limited')",
    )
    .await;
    assert_eq!(
        evaluate_string(&page, "window.missionMark").await,
        "still here",
        "the verdict changed without a reload"
    );
    assert_eq!(instance.json(&["status"])["verdict"], "degraded");

    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
    served.stop();
}

/// `GET path` over a fresh connection; the status and body.
fn get(served: &Served, path: &str) -> (u16, String) {
    served.request_text("GET", path, None, None)
}

#[test]
fn no_page_or_answer_shows_a_workers_secret() {
    // The script worker's agent prints its key, its whole environment, and asks a question
    // naming the key's variable.
    let instance = Instance::with_script_worker_keys(
        FAST,
        &format!("env = {{ API_KEY = \"{CANARY}\" }}"),
        "echo \"my key is $API_KEY\"\nenv\nexit 0\n",
    );
    let served = Served::start(&instance, &[]);
    let id = instance.add_with_body("uses a key", "script", b"A body that is no secret.\n");
    let start = Instant::now();
    while instance.state(&id) != "review" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            instance.state(&id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = instance
        .path()
        .join("data/runs")
        .join(&id)
        .join("1/output.log");
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("my key is"), "the run printed: {written}");

    let mut seen = String::new();
    for path in [
        "/".to_owned(),
        "/?state=review".to_owned(),
        format!("/tickets/{id}"),
        "/inbox?status=all".to_owned(),
        "/tasks".to_owned(),
        "/incidents?all=true".to_owned(),
        "/api/v1/tickets".to_owned(),
        format!("/api/v1/tickets/{id}"),
        format!("/api/v1/tickets/{id}/runs/1/log"),
        format!("/api/v1/tickets/{id}/runs/1/log?from=0"),
        format!("/api/v1/tickets/{id}/explain"),
        "/api/v1/events?limit=1000".to_owned(),
        "/api/v1/inbox?status=all".to_owned(),
        "/api/v1/tasks".to_owned(),
        "/api/v1/incidents?all=true".to_owned(),
        "/api/v1/status".to_owned(),
        "/api/v1/tokens".to_owned(),
        "/metrics".to_owned(),
    ] {
        let (status, body) = get(&served, &path);
        assert_eq!(status, 200, "{path}: {body}");
        seen.push_str(&body);
    }
    assert!(
        seen.contains("my key is [REDACTED]"),
        "the log is shown, redacted"
    );
    assert!(
        !seen.contains(CANARY),
        "the worker's secret shows on a page or in an answer"
    );
    let server_log = served.stop();
    assert!(
        !server_log.contains(CANARY),
        "the worker's secret is in the server's log"
    );
}
