#!/usr/bin/env bash
# graphile-worker on a local PostgreSQL, for comparison with `cargo bench -p mission --bench
# postgres`: jobs per second with 1 and 3 worker processes (each with the same concurrency), and
# pickup latency (add_job committed -> task handler called; and -> a process the handler starts
# running, as a run's start does). Not run in CI: it installs
# graphile-worker from npm into a temporary folder and needs Node.js 18 or later.
#
#   bench/graphile-worker.sh                 # a throwaway cluster (fsync on), like the test kit's
#   DATABASE_URL=postgres://… bench/graphile-worker.sh
#
# GRAPHILE_VERSION (default 0.18.0), JOBS (20000), CONCURRENCY (per process, 24), PICKUPS (200).
set -euo pipefail

version="${GRAPHILE_VERSION:-0.18.0}"
work="$(mktemp -d)"
cleanup() {
    if [ -n "${pg_data:-}" ]; then
        as_owner "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -z "${DATABASE_URL:-}" ]; then
    pg_bin="${MISSION_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
    [ "$(id -u)" -eq 0 ] && chown postgres "$work"
    pg_data="$work/data"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    as_owner "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
    as_owner "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/server.log" -w \
        -o "-k $work -h 127.0.0.1 -p $port -c fsync=on -c max_connections=200" start >/dev/null
    "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE graphile"
    DATABASE_URL="postgres://postgres@127.0.0.1:$port/graphile"
fi

mkdir -p "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "graphile-worker@$version" >/dev/null

cat > bench.mjs <<'JS'
import { run, runMigrations, makeWorkerUtils, Logger } from "graphile-worker";
import { fork, spawn } from "node:child_process";

const connectionString = process.env.DATABASE_URL;
const jobs = Number(process.env.JOBS ?? 20000);
const concurrency = Number(process.env.CONCURRENCY ?? 24);
const pickups = Number(process.env.PICKUPS ?? 200);
const logger = new Logger(() => () => {});

if (process.argv[2] === "worker") {
  // One worker process: runs jobs until told to stop.
  const runner = await run({
    connectionString, concurrency, noHandleSignals: true, pollInterval: 2000, logger,
    taskList: { noop: async () => {} },
  });
  process.send("ready");
  process.on("message", async () => { await runner.stop(); process.exit(0); });
} else {
  await runMigrations({ connectionString, logger });
  const utils = await makeWorkerUtils({ connectionString, logger });

  for (const processes of [1, 3]) {
    await utils.withPgClient((c) => c.query(
      `select graphile_worker.add_job('noop', json_build_object('i', i)) from generate_series(1, $1) i`,
      [jobs]));
    const left = async () => (await utils.withPgClient((c) =>
      c.query("select count(*)::int as n from graphile_worker.jobs"))).rows[0].n;
    const started = process.hrtime.bigint();
    const workers = [];
    for (let i = 0; i < processes; i++) {
      const w = fork(new URL(import.meta.url).pathname, ["worker"], { env: process.env });
      workers.push(w);
    }
    while ((await left()) > 0) await new Promise((r) => setTimeout(r, 20));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`graphile-worker ${process.env.GRAPHILE_VERSION}: ${jobs} jobs, ${processes} process(es) x concurrency ${concurrency}: ${(jobs / seconds).toFixed(0)} jobs/s (${seconds.toFixed(2)} s, including worker start)`);
    for (const w of workers) { w.send("stop"); }
    await Promise.all(workers.map((w) => new Promise((r) => w.on("exit", r))));
  }

  // Pickup latency: add_job committed (its call returned) -> handler called, one job at a time.
  const samples = [];
  let resolve;
  const runner = await run({
    connectionString, concurrency, noHandleSignals: true, pollInterval: 2000, logger,
    taskList: { latency: async () => { resolve(process.hrtime.bigint()); } },
  });
  for (let i = 0; i < pickups; i++) {
    const handled = new Promise((r) => { resolve = r; });
    await utils.addJob("latency", {});
    const committed = process.hrtime.bigint();
    const at = await handled;
    samples.push(Math.max(0, Number(at - committed) / 1e6));
  }
  await runner.stop();
  const line = (label, xs) => {
    xs.sort((a, b) => a - b);
    const p = (q) => xs[Math.round((xs.length - 1) * q)].toFixed(3);
    console.log(`graphile-worker ${label}: n=${xs.length} p50=${p(0.5)}ms p90=${p(0.9)}ms p99=${p(0.99)}ms max=${p(1)}ms`);
  };
  line("pickup latency (add_job -> handler)", samples);

  // The same, with the handler starting a process, as a run's start does: add_job committed ->
  // the process running (it prints the wall clock, nanoseconds, first thing: `date +%s%N`).
  const wallNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  const spawned = [];
  let started;
  const spawner = await run({
    connectionString, concurrency, noHandleSignals: true, pollInterval: 2000, logger,
    taskList: {
      spawn: () => new Promise((done) => {
        let out = "";
        const child = spawn("date", ["+%s%N"]);
        child.stdout.on("data", (d) => { out += d; });
        child.on("close", () => { started(BigInt(out.trim())); done(); });
      }),
    },
  });
  for (let i = 0; i < pickups; i++) {
    const handled = new Promise((r) => { started = r; });
    await utils.addJob("spawn", {});
    const committed = wallNs();
    const at = await handled;
    spawned.push(Math.max(0, Number(at - committed) / 1e6));
  }
  await spawner.stop();
  line("pickup latency with a process (add_job -> process running)", spawned);
  await utils.release();
}
JS

GRAPHILE_VERSION="$version" DATABASE_URL="$DATABASE_URL" node bench.mjs
