-- Several servers on one database: leases (the scheduler's leader) and node heartbeats.

-- A lease is held by `holder` until `expires_at` (milliseconds, on the holders' clocks); its
-- holder renews it before then and stops trusting it earlier still. `fencing` increases each time
-- the lease changes hands.
CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    fencing     BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- A supervisor (`HOST:PID`, as runs and task runs name it) alive until `expires_at` unless it
-- beats again; stopped cleanly when `stopped_at` is set. A node silent past its expiry is dead:
-- what it left behind is settled by a survivor.
CREATE TABLE nodes (
    node         TEXT   PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    stopped_at   BIGINT
);
