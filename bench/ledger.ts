/**
 * `npm run bench:ledger`: hold+post pairs per second and pair latency (p50/p99) at a few concurrency
 * levels. Each concurrent worker is one player paying out through the shared per-currency
 * payouts-in-flight account, as the payout saga does. Uses DATABASE_URL when set, otherwise starts its
 * own embedded PostgreSQL in a temp folder. Figures go to bench/results/ledger-<date>.json.
 *
 * Env: BENCH_SECONDS (per level, default 8), BENCH_LEVELS (default "1,8,32").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createLedger, type Ledger } from '../ledger';
import { createPool } from '../lib/db';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../lib/embedded-postgres';
import { migrateUp } from '../lib/migrate';
import { freePort } from '../lib/wait';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const LEVELS = (process.env.BENCH_LEVELS ?? '1,8,32').split(',').map(Number);
const WARMUP_MS = 1_000;
const CURRENCY = 'EUR';
const say = (msg: string) => process.stderr.write(`[bench:ledger] ${msg}\n`);

interface LevelResult {
  concurrency: number;
  pairs: number;
  seconds: number;
  pairsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  refused: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (n: number, digits = 2) => Number(n.toFixed(digits));

async function runLevel(ledger: Ledger, concurrency: number, runId: string): Promise<LevelResult> {
  const inFlight = await ledger.ensureSystemAccount('payouts_in_flight', CURRENCY);
  const funding = await ledger.ensureSystemAccount('operator_funding', CURRENCY);
  const players = await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      const id = `bench-${runId}-c${concurrency}-p${i}`;
      await ledger.createAccount({ accountId: id, currency: CURRENCY, kind: 'player' });
      const funded = await ledger.transfer({ idempotencyKey: `${id}:fund`, debitAccountId: funding.id, creditAccountId: id, amount: 1e12, currency: CURRENCY });
      if (funded.result !== 'ok') throw new Error(`funding ${id}: ${funded.result}`);
      return id;
    }),
  );

  const latencies: number[] = [];
  let refused = 0;
  let seq = 0;
  const startedAt = performance.now();
  const measureFrom = startedAt + WARMUP_MS;
  const stopAt = measureFrom + SECONDS * 1_000;

  await Promise.all(
    players.map(async (player) => {
      while (performance.now() < stopAt) {
        const key = `${player}:${seq++}`;
        const t0 = performance.now();
        const held = await ledger.hold({ idempotencyKey: `${key}:hold`, debitAccountId: player, creditAccountId: inFlight.id, amount: 100, currency: CURRENCY });
        const posted = held.result === 'ok' ? await ledger.post({ idempotencyKey: `${key}:post`, pendingId: held.transfer.id }) : held;
        const t1 = performance.now();
        if (t0 < measureFrom || t1 > stopAt) continue;
        if (posted.result === 'ok') latencies.push(t1 - t0);
        else refused++;
      }
    }),
  );
  if (latencies.length === 0) throw new Error('no pair finished inside the measuring window');
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    pairs: latencies.length,
    seconds: SECONDS,
    pairsPerSecond: round(latencies.length / SECONDS, 1),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(latencies.at(-1) ?? 0),
    refused,
  };
}

async function main(): Promise<void> {
  let databaseUrl = process.env.DATABASE_URL;
  let embedded: EmbeddedPostgresHandle | undefined;
  let workDir: string | undefined;
  if (!databaseUrl) {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ledger-'));
    fs.chmodSync(workDir, 0o755); // the postgres user needs to reach its data folder when we run as root
    say('starting embedded PostgreSQL');
    embedded = await startEmbeddedPostgres({ dataDir: path.join(workDir, 'postgres'), port: await freePort(), database: 'ledger_bench' });
    databaseUrl = embedded.url;
  } else {
    say('using DATABASE_URL (bench accounts are prefixed bench-)');
  }
  const pool = createPool(databaseUrl, Math.max(...LEVELS) + 4);
  try {
    await migrateUp(databaseUrl);
    const ledger = createLedger(pool);
    const runId = randomUUID().slice(0, 8);
    const results: LevelResult[] = [];
    for (const concurrency of LEVELS) {
      say(`concurrency ${concurrency}: ${SECONDS}s`);
      results.push(await runLevel(ledger, concurrency, runId));
    }
    const { rows } = await pool.query<{ server_version: string }>('SHOW server_version');
    const report = {
      benchmark: 'ledger hold+post pairs',
      date: new Date().toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', memoryGb: round(os.totalmem() / 2 ** 30, 1), platform: `${os.platform()} ${os.release()}`, node: process.version },
      postgres: { version: rows[0]?.server_version, embedded: embedded !== undefined, synchronousCommit: 'on (fsync on)' },
      method: 'each worker = one player: hold(player -> system:payouts_in_flight) then post, sequentially; pair latency measured after 1s warm-up',
      results,
    };
    const outDir = path.join(import.meta.dirname, 'results');
    fs.mkdirSync(outDir, { recursive: true });
    const outFile = path.join(outDir, `ledger-${report.date.slice(0, 10)}.json`);
    fs.writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    say(`saved ${path.relative(process.cwd(), outFile)}`);
    for (const r of results) say(`c=${r.concurrency}: ${r.pairsPerSecond} pairs/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms (${report.machine.cores} cores)`);
  } finally {
    await pool.end();
    await embedded?.stop();
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
