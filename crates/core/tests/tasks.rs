//! Task files and firing plans.

use mission_core::Timestamp;
use mission_core::task::{CatchUp, Outcome, Plan, TaskKind, Trigger, parse_task, plan};

fn parse(text: &str) -> Result<mission_core::task::TaskSpec, String> {
    parse_task("tasks/t.md", "t", text.as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn good_files() {
    let spec = parse("+++\nkind = \"command\"\nschedule = \"*/5 * * * *\"\ntimezone = \"Europe/Berlin\"\noverlap = \"replace\"\ncatch_up = \"all\"\ncatch_up_window = \"2h\"\njitter = \"30s\"\ntimeout = \"10m\"\n+++\necho hello\n").unwrap();
    assert_eq!(spec.kind, TaskKind::Command);
    assert_eq!(spec.catch_up, CatchUp::All);
    assert_eq!(spec.body, "echo hello\n");
    assert_eq!(spec.schedule.describe(), "cron */5 * * * * (Europe/Berlin)");
    let spec = parse("+++\nkind = \"board-sweep\"\nevery = \"10m\"\nlimits = { running = \"2h\", review = \"1d\" }\n+++\n").unwrap();
    assert_eq!(spec.limits.len(), 2);
    let spec = parse(
        "+++\nkind = \"agent\"\nevery = \"1h\"\nworker = \"luci\"\n+++\nSummarise the board.\n",
    )
    .unwrap();
    assert_eq!(spec.worker.unwrap().as_str(), "luci");
    assert!(
        parse("+++\nkind = \"command\"\nschedule = \"0 */5 * * * *\"\n+++\ntrue\n").is_ok(),
        "6 fields with seconds"
    );
}

#[test]
fn bad_files_are_named_with_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "kind = \"command\"\nschedule = \"61 * * * *\"\n",
            "tasks/t.md:3: key `schedule`: invalid cron expression \"61 * * * *\"",
        ),
        (
            "kind = \"command\"\nschedule = \"* * *\"\n",
            "tasks/t.md:3: key `schedule`: cron expression \"* * *\" has 3 fields; expected 5 or 6",
        ),
        (
            "kind = \"teleport\"\nevery = \"1m\"\n",
            "tasks/t.md:2: key `kind`: unknown variant `teleport`",
        ),
        (
            "kind = \"command\"\nevery = \"1m\"\ncolour = \"blue\"\n",
            "tasks/t.md:4: key `colour`: unknown field `colour`",
        ),
        (
            "kind = \"command\"\nschedule = \"0 * * * *\"\ntimezone = \"Mars/Olympus\"\n",
            "tasks/t.md:4: key `timezone`: unknown time zone \"Mars/Olympus\"",
        ),
        (
            "kind = \"command\"\nevery = \"soon\"\n",
            "tasks/t.md:3: key `every`: invalid duration \"soon\"",
        ),
        (
            "kind = \"command\"\nevery = \"300000000y\"\n",
            "tasks/t.md:3: key `every`: duration \"300000000y\" is longer than 10 years",
        ),
        ("kind = \"command\"\n", "tasks/t.md: no schedule"),
        (
            "kind = \"agent\"\nevery = \"1m\"\n",
            "tasks/t.md: an agent task needs `worker`",
        ),
        (
            "kind = \"board-sweep\"\nevery = \"1m\"\n",
            "tasks/t.md: a board-sweep task needs `limits`",
        ),
        (
            "kind = \"command\"\nevery = \"1m\"\novertime = = 3\n",
            "tasks/t.md:4:",
        ),
    ];
    for (front, expect) in cases {
        let text = format!("+++\n{front}+++\nexit 0\n");
        let got = parse(&text).unwrap_err();
        assert!(
            got.starts_with(expect),
            "{front:?}: {got:?} does not start with {expect:?}"
        );
    }
    assert_eq!(
        parse("no front matter").unwrap_err(),
        "tasks/t.md:1: expected front matter: the first line must be +++"
    );
    assert_eq!(
        parse("+++\nkind = \"command\"\n").unwrap_err(),
        "tasks/t.md: the front matter has no closing +++ line"
    );
    let garbage = parse_task(
        "tasks/g.md",
        "g",
        &[0x2b, 0x2b, 0x2b, 0x0a, 0xff, 0xfe, 0x00],
    )
    .unwrap_err();
    assert_eq!(garbage.to_string(), "tasks/g.md:2: not UTF-8 text");
    let bad_name = parse_task(
        "tasks/a b.md",
        "a b",
        b"+++\nkind = \"command\"\nevery = \"1m\"\n+++\ntrue\n",
    )
    .unwrap_err();
    assert!(
        bad_name.to_string().contains("not a task name"),
        "{bad_name}"
    );
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn show(plan: &Plan) -> (Vec<String>, Option<(String, u32)>) {
    (
        plan.fire.iter().map(|t| t.to_rfc3339()).collect(),
        plan.skipped.map(|(t, n)| (t.to_rfc3339(), n)),
    )
}

#[test]
fn catch_up_policies() {
    let spec = |policy: &str| {
        parse(&format!("+++\nkind = \"command\"\nevery = \"1h\"\ncatch_up = \"{policy}\"\ncatch_up_window = \"3h\"\n+++\ntrue\n")).unwrap()
    };
    let last = Some(at("2026-03-01T00:00:00Z"));
    // On time: the one due slot fires, whatever the policy.
    for policy in ["skip", "latest", "all"] {
        let p = plan(&spec(policy), last, at("2026-03-01T01:00:00.005Z"));
        assert_eq!(
            show(&p),
            (vec!["2026-03-01T01:00:00.000Z".to_owned()], None),
            "{policy}"
        );
    }
    // Down from 00:30 to 05:10: slots 01:00 .. 05:00 missed (the window reaches back to 02:10).
    let now = at("2026-03-01T05:10:00Z");
    assert_eq!(
        show(&plan(&spec("skip"), last, now)),
        (vec![], Some(("2026-03-01T05:00:00.000Z".to_owned(), 5)))
    );
    assert_eq!(
        show(&plan(&spec("latest"), last, now)),
        (
            vec!["2026-03-01T05:00:00.000Z".to_owned()],
            Some(("2026-03-01T04:00:00.000Z".to_owned(), 4))
        )
    );
    assert_eq!(
        show(&plan(&spec("all"), last, now)),
        (
            vec![
                "2026-03-01T03:00:00.000Z".to_owned(),
                "2026-03-01T04:00:00.000Z".to_owned(),
                "2026-03-01T05:00:00.000Z".to_owned()
            ],
            Some(("2026-03-01T02:00:00.000Z".to_owned(), 2))
        )
    );
    // A new task has missed nothing.
    assert_eq!(plan(&spec("all"), None, now), Plan::default());
}

#[test]
fn jitter_is_stable_and_bounded() {
    let spec =
        parse("+++\nkind = \"command\"\nevery = \"1m\"\njitter = \"20s\"\n+++\ntrue\n").unwrap();
    let slot = at("2026-03-01T00:01:00Z");
    let fire = spec.fire_time(slot);
    assert_eq!(fire, spec.fire_time(slot));
    assert!(fire >= slot && fire.as_millis() < slot.as_millis() + 20_000);
}

#[test]
fn outcomes_parse() {
    assert_eq!("degraded".parse::<Outcome>().unwrap(), Outcome::Degraded);
    assert!("fine".parse::<Outcome>().is_err());
}

#[test]
fn triggers_keep_their_stored_strings() {
    for (trigger, text) in [
        (Trigger::Schedule, "schedule"),
        (Trigger::CatchUp, "catch_up"),
        (Trigger::Manual, "manual"),
    ] {
        assert_eq!(trigger.as_str(), text);
        assert_eq!(text.parse::<Trigger>().unwrap(), trigger);
        assert_eq!(serde_json::to_value(trigger).unwrap(), text);
    }
    assert!("cron".parse::<Trigger>().is_err());
}
