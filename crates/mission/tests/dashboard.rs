//! The dashboard through the real binary: `mission serve` on a port of its own, driven by a
//! real headless Chromium over the DevTools protocol (chromiumoxide). The board shows a ticket
//! created from the CLI without a reload (the event stream), the inbox answers the ticket's
//! question through its form, and the ticket's state changes; screenshots of the board and the
//! ticket page are saved (and checked not blank). And a secret canary: a worker's API key that
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

async fn evaluate_bool(page: &chromiumoxide::Page, expression: &str) -> bool {
    match page.evaluate(expression).await {
        Ok(result) => result.into_value::<bool>().unwrap_or(false),
        Err(_) => false,
    }
}

async fn evaluate_string(page: &chromiumoxide::Page, expression: &str) -> String {
    page.evaluate(expression)
        .await
        .unwrap()
        .into_value::<String>()
        .unwrap_or_default()
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
    let instance = Instance::with_fake_workers(FAST);
    let served = Served::start(&instance, &[]);
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

    // The board, connected to the event stream.
    let page = browser.new_page(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    assert!(evaluate_bool(&page, "document.querySelector('#verdict') !== null").await);
    eventually(
        "the page follows the event stream",
        Duration::from_secs(20),
        || {
            evaluate_bool(
                &page,
                "document.body.getAttribute('data-live-connected') === 'true'",
            )
        },
    )
    .await;
    // A mark that a reload would wipe out.
    page.evaluate("window.missionMark = 'still here'; true")
        .await
        .unwrap();

    // A ticket created from the CLI appears on the board without a reload.
    let id = instance.add_with_body(
        "Seen live in the browser",
        "luci",
        b"fake-agent: ask Which branch should I use?\n",
    );
    assert_eq!(id, "MC-1");
    eventually(
        "the new ticket on the board",
        Duration::from_secs(20),
        || {
            evaluate_bool(
                &page,
                "document.querySelector('[data-ticket=\"MC-1\"]') !== null",
            )
        },
    )
    .await;
    assert_eq!(
        evaluate_string(&page, "window.missionMark").await,
        "still here",
        "the board changed without a reload"
    );

    // Its agent asks; the board shows it waiting for input, still without a reload.
    eventually("MC-1 in needs_input", Duration::from_secs(30), || async {
        instance.state("MC-1") == "needs_input"
    })
    .await;
    eventually("the board shows needs_input", Duration::from_secs(20), || {
        evaluate_bool(
            &page,
            "(document.querySelector('[data-ticket=\"MC-1\"] .state') || {}).textContent === 'needs_input'",
        )
    })
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

    // The ticket's state changes: answered, it goes back for its session to resume, and on.
    eventually(
        "MC-1 leaves needs_input",
        Duration::from_secs(20),
        || async { instance.state("MC-1") != "needs_input" },
    )
    .await;
    let shown = instance.show("MC-1");
    let answered = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "inbox.acted" && e["actor"] == "dashboard");
    assert!(
        answered,
        "the dashboard's action is in the timeline: {shown}"
    );
    page.goto(format!("{base}/tickets/MC-1")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    eventually("the ticket page shows the new state", Duration::from_secs(30), || {
        evaluate_bool(
            &page,
            "['todo', 'running', 'review'].includes(document.querySelector('#ticket-state').textContent)",
        )
    })
    .await;
    eventually(
        "the ticket page shows its log",
        Duration::from_secs(30),
        || evaluate_bool(&page, "document.querySelector('#log') !== null"),
    )
    .await;
    screenshot(&page, "ticket.png").await;

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
