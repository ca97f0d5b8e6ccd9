/**
 * `npm run bench`: payout API and saga figures on this machine, against the real stack started here
 * (embedded PostgreSQL, Temporal dev server, worker, sandbox aggregator settling at once, API on loopback).
 *
 * 1. Accept latency of POST /v1/payouts (p50/p95/p99) at a fixed request rate, with autocannon.
 * 2. End-to-end throughput: payouts from request to SETTLED per second.
 * 3. Duplicate storm: N concurrent requests with one Idempotency-Key → one saga, N identical answers.
 *
 * Prints the figures and saves them as JSON in bench/results/. Environment: BENCH_RATE (req/s, default 10),
 * BENCH_SECONDS (default 10), BENCH_E2E_PAYOUTS (default 200), BENCH_STORM (default 100).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
// @ts-expect-error autocannon ships no types
import autocannon from 'autocannon';
import { Connection } from '@temporalio/client';
import { createTemporalClient } from '../lib/temporal-client';
import { NativeConnection, bundleWorkflowCode } from '@temporalio/worker';
import { createLedger } from '../activities/ledger';
import { createApiApp } from '../apps/api/app';
import { createSandboxAggregator } from '../apps/sandbox-aggregator/server';
import { activitySettings, createPayoutWorker, WORKFLOW_BUNDLE_OPTIONS } from '../apps/worker/create-worker';
import { loadConfig, repoRoot } from '../lib/config';
import { createPool } from '../lib/db';
import { startEmbeddedPostgres } from '../lib/embedded-postgres';
import { createLogger } from '../lib/logger';
import { migrateUp } from '../lib/migrate';
import { installTemporalRuntime } from '../lib/temporal-runtime';
import { signToken } from '../lib/tokens';
import { freePort, sleep } from '../lib/wait';
import { ensureTemporalCli } from '../temporal/cli';
import { startTemporalDevServer } from '../temporal/dev-server';

const RATE = Number(process.env.BENCH_RATE ?? 10);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const E2E_PAYOUTS = Number(process.env.BENCH_E2E_PAYOUTS ?? 200);
const STORM = Number(process.env.BENCH_STORM ?? 100);

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function main() {
  installTemporalRuntime(createLogger('bench-worker', 'error'), 'ERROR');
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-bench-'));
  const stops: (() => Promise<unknown>)[] = [];
  try {
    say('starting PostgreSQL and Temporal...');
    const pg = await startEmbeddedPostgres({ dataDir: path.join(workDir, 'pg'), port: await freePort(), database: 'bench' });
    stops.push(() => pg.stop());
    await migrateUp(pg.url);
    const temporalServer = await startTemporalDevServer({ cliPath: ensureTemporalCli().path, port: await freePort(), namespace: 'default' });
    stops.push(() => temporalServer.stop());

    const apiPort = await freePort();
    const sandboxPort = await freePort();
    const config = loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      DATABASE_URL: pg.url,
      PG_POOL_MAX: '30',
      TEMPORAL_ADDRESS: temporalServer.address,
      SANDBOX_URL: `http://127.0.0.1:${sandboxPort}`,
      PAYOUT_SYNC_DEADLINE_MS: '10000',
      PAYOUT_POLL_INITIAL_MS: '5000',
      PAYOUT_RETURN_WINDOW_MS: '1000',
      PAYOUT_MAX_AMOUNT: '1000000',
      PAYOUT_DAILY_MAX_AMOUNT: '100000000000',
      PAYOUT_HOURLY_MAX_COUNT: '1000000',
    });
    const pool = createPool(pg.url, 30);
    stops.push(() => pool.end());
    const connection = await Connection.connect({ address: temporalServer.address });
    stops.push(() => connection.close());
    const temporal = createTemporalClient(connection, 'default');

    const api = await createApiApp({ config, pool, temporal, logger: createLogger('bench-api', 'silent') });
    await api.listen({ port: apiPort, host: '127.0.0.1' });
    stops.push(() => api.close());
    const apiUrl = `http://127.0.0.1:${(api.getHttpServer().address() as AddressInfo).port}`;

    const sandbox = await createSandboxAggregator({
      logger: createLogger('bench-sandbox', 'silent'),
      webhookSecret: config.SANDBOX_WEBHOOK_SECRET,
      webhookUrl: `${apiUrl}/v1/webhooks/sandbox`,
      callbackDelayMs: 0,
    });
    await sandbox.listen({ port: sandboxPort, host: '127.0.0.1' });
    stops.push(() => sandbox.close());

    const workerConnection = await NativeConnection.connect({ address: temporalServer.address });
    stops.push(() => workerConnection.close());
    const bundle = await bundleWorkflowCode({ ...WORKFLOW_BUNDLE_OPTIONS, logger: { trace() {}, debug() {}, info() {}, warn() {}, error: console.error, log() {} } as never });
    const worker = await createPayoutWorker({ connection: workerConnection, pool, namespace: 'default', taskQueue: config.TEMPORAL_TASK_QUEUE, workflowBundle: bundle, ...activitySettings(config) });
    const running = worker.run();
    stops.push(async () => {
      worker.shutdown();
      await running;
    });

    const ledger = createLedger(pool);
    const authorization = `Bearer ${await signToken({ sub: 'bench', role: 'service' }, config.AUTH_JWT_SECRET)}`;
    const fund = async (minor: number) => {
      const accountId = `bench-${randomUUID()}`;
      await ledger.createAccount({ accountId, currency: 'EUR', kind: 'player' });
      const funding = await ledger.ensureSystemAccount('operator_funding', 'EUR');
      await ledger.transfer({ idempotencyKey: `fund:${accountId}`, debitAccountId: funding.id, creditAccountId: accountId, amount: minor, currency: 'EUR' });
      return accountId;
    };
    const payoutBody = (accountId: string, minor = 100) => JSON.stringify({ account_id: accountId, amount: { minor_units: minor, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-bench' } });
    const post = async (accountId: string, key: string) =>
      fetch(`${apiUrl}/v1/payouts`, { method: 'POST', headers: { authorization, 'content-type': 'application/json', 'idempotency-key': key }, body: payoutBody(accountId) });

    // Warm-up: bundles are loaded, connections pooled, system accounts created.
    const warm = await fund(1_000_000);
    for (let i = 0; i < 10; i++) await post(warm, randomUUID());

    // 1. Accept latency at a fixed rate.
    say(`accept latency: ${RATE} req/s for ${SECONDS}s...`);
    const accounts = await Promise.all(Array.from({ length: 20 }, () => fund(1_000_000_000)));
    let n = 0;
    const statuses: Record<string, number> = {};
    const cannon = await autocannon({
      url: `${apiUrl}/v1/payouts`,
      method: 'POST',
      connections: Math.max(10, Math.ceil(RATE / 5)),
      overallRate: RATE,
      duration: SECONDS,
      headers: { authorization, 'content-type': 'application/json' },
      requests: [
        {
          setupRequest: (req: Record<string, unknown>) => ({
            ...req,
            headers: { ...(req.headers as object), 'idempotency-key': randomUUID() },
            body: payoutBody(accounts[n++ % accounts.length]!),
          }),
          onResponse: (status: number) => {
            statuses[status] = (statuses[status] ?? 0) + 1;
          },
        },
      ],
    });
    const accept = {
      rate_per_s: RATE,
      seconds: SECONDS,
      requests: cannon.requests.total,
      statuses,
      latency_ms: { p50: cannon.latency.p50, p90: cannon.latency.p90, p97_5: cannon.latency.p97_5, p99: cannon.latency.p99, max: cannon.latency.max },
    };
    // autocannon's summary has no p95; a second paced run at the same rate times every request itself.
    say('accept latency: paced run with per-request timing (p95)...');
    const samples: number[] = [];
    await waitUntilQuiet(pool); // the autocannon run's sagas finish first: each phase measures its own load
    const interval = 1000 / RATE;
    const started = performance.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; i < RATE * SECONDS; i++) {
      const due = started + i * interval;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      pending.push(
        (async () => {
          const t0 = performance.now();
          const res = await post(accounts[i % accounts.length]!, randomUUID());
          await res.arrayBuffer();
          samples.push(performance.now() - t0);
        })(),
      );
    }
    await Promise.all(pending);
    samples.sort((a, b) => a - b);
    const acceptExact = { p50: round(quantile(samples, 0.5)), p95: round(quantile(samples, 0.95)), p99: round(quantile(samples, 0.99)), max: round(samples.at(-1)!) };

    // 2. End to end: request → SETTLED.
    say(`end to end: ${E2E_PAYOUTS} payouts to SETTLED...`);
    await waitUntilQuiet(pool);
    const e2eAccount = await fund(1_000_000_000);
    const e2eStart = performance.now();
    const ids: string[] = [];
    const concurrency = 20;
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < E2E_PAYOUTS) {
          next++;
          const res = await post(e2eAccount, randomUUID());
          ids.push(((await res.json()) as { payout_id: string }).payout_id);
        }
      }),
    );
    for (;;) {
      const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payouts WHERE payout_id = ANY($1) AND status = 'SETTLED'", [ids]);
      if (rows[0]!.n === ids.length) break;
      if (performance.now() - e2eStart > 300_000) throw new Error(`only ${rows[0]!.n}/${ids.length} settled after 300s`);
      await sleep(50);
    }
    const e2eSeconds = (performance.now() - e2eStart) / 1000;
    const endToEnd = { payouts: E2E_PAYOUTS, seconds: round(e2eSeconds), settled_per_s: round(E2E_PAYOUTS / e2eSeconds) };

    // 3. Duplicate storm: one key, N at once.
    say(`duplicate storm: ${STORM} concurrent requests, one key...`);
    const stormAccount = await fund(1_000_000);
    const stormKey = randomUUID();
    const stormStart = performance.now();
    const answers = await Promise.all(
      Array.from({ length: STORM }, async () => {
        const res = await post(stormAccount, stormKey);
        return { status: res.status, body: await res.text(), replayed: res.headers.get('idempotent-replayed') === 'true' };
      }),
    );
    const stormMs = performance.now() - stormStart;
    const payoutId = (JSON.parse(answers[0]!.body) as { payout_id: string }).payout_id;
    const holds = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM ledger_transfers WHERE kind = 'hold' AND metadata->>'payout_id' = $1", [payoutId]);
    const sagas = await temporal.workflow.count(`WorkflowId = '${payoutId}'`);
    const storm = {
      requests: STORM,
      distinct_answers: new Set(answers.map((a) => `${a.status} ${a.body}`)).size,
      statuses: [...new Set(answers.map((a) => a.status))],
      replayed: answers.filter((a) => a.replayed).length,
      sagas: sagas.count,
      holds: holds.rows[0]!.n,
      wall_ms: round(stormMs),
    };

    const result = {
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gib: round(os.totalmem() / 2 ** 30), node: process.version },
      accept_latency_autocannon: accept,
      accept_latency_ms: acceptExact,
      end_to_end: endToEnd,
      duplicate_storm: storm,
    };
    const out = path.join(repoRoot, 'bench', 'results', `payouts-${result.date.slice(0, 10)}.json`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);

    process.stdout.write(
      [
        `machine: ${result.machine.cores} cores, ${result.machine.cpu}, node ${result.machine.node}`,
        `POST /v1/payouts accept latency at ${RATE} req/s for ${SECONDS}s: p50 ${acceptExact.p50} ms, p95 ${acceptExact.p95} ms, p99 ${acceptExact.p99} ms (autocannon: p50 ${accept.latency_ms.p50}, p99 ${accept.latency_ms.p99} ms, statuses ${JSON.stringify(statuses)})`,
        `end to end: ${endToEnd.payouts} payouts requested → SETTLED in ${endToEnd.seconds}s = ${endToEnd.settled_per_s} settled/s`,
        `duplicate storm: ${storm.requests} concurrent requests, one key → ${storm.sagas} saga, ${storm.holds} hold, ${storm.distinct_answers} distinct answer (${storm.replayed} replayed) in ${storm.wall_ms} ms`,
        `saved ${path.relative(repoRoot, out)}`,
      ].join('\n') + '\n',
    );
    if (storm.sagas !== 1 || storm.holds !== 1 || storm.distinct_answers !== 1) {
      for (const distinct of new Map(answers.map((a) => [`${a.status} ${a.body}`, a])).values()) say(`answer: ${distinct.status} ${distinct.body.slice(0, 300)}`);
      process.exitCode = 1;
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/** Waits until no payout saga of the warm-up is still between request and settlement. */
async function waitUntilQuiet(pool: ReturnType<typeof createPool>) {
  for (let i = 0; i < 600; i++) {
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payouts WHERE status IN ('AUTHORIZED', 'HELD', 'SUBMITTED')");
    if (rows[0]!.n === 0) return;
    await sleep(100);
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

await main();
process.exit(process.exitCode ?? 0);
