-- Task runs: one row per execution of a task, each ending with exactly one outcome.

CREATE TABLE task_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task        TEXT    NOT NULL,
    slot        INTEGER,                     -- the scheduled time it fired for; NULL for a manual run
    trigger     TEXT    NOT NULL,            -- schedule | catch_up | manual
    node        TEXT    NOT NULL,            -- HOST:PID of the process running it
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    pid         INTEGER,                     -- process group of a command task
    outcome     TEXT,                        -- acted | noop | skipped | degraded | failed
    reason      TEXT,
    counts      TEXT    NOT NULL DEFAULT '{}'  -- JSON object of integers
);

-- Each (task, scheduled time) fires once, whatever restarts or concurrent schedulers do.
CREATE UNIQUE INDEX task_runs_one_per_slot ON task_runs (task, slot) WHERE slot IS NOT NULL;
CREATE INDEX task_runs_by_task ON task_runs (task, id);
CREATE INDEX task_runs_open ON task_runs (task) WHERE ended_at IS NULL;

-- When the supervisor saw a run's process gone. A run that ended by its own report (ask,
-- submit) may still be exiting; no new attempt starts until it is gone.
ALTER TABLE runs ADD COLUMN exited_at INTEGER;
UPDATE runs SET exited_at = ended_at WHERE ended_at IS NOT NULL;

-- A question is closed without an answer when its ticket leaves needs_input another way
-- (cancelled, say); only an open question can be answered or block a new one.
ALTER TABLE questions ADD COLUMN closed_at INTEGER;
DROP INDEX questions_one_open_per_ticket;
CREATE UNIQUE INDEX questions_one_open_per_ticket ON questions (ticket)
    WHERE answer IS NULL AND closed_at IS NULL;
