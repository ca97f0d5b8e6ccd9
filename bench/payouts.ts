/**
 * `npm run bench`: payouts on the stack a user runs, against the same saga shape on the bare Temporal SDK.
 *
 * Starts the launcher (`npm start`'s program) as a child with its own DATA_DIR and free ports, default settings
 * otherwise: separate processes, persistent PostgreSQL and Temporal, the 7-day return window. Or, with
 * --attach, measures a stack already started with this shell's settings (API_PORT, DATA_DIR, ...).
 * A separate load-generator process (bench/load-generator.ts) funds accounts through the API, then offers
 * payouts open loop at a ladder of rates; the reference saga (bench/reference, its own worker process and
 * task queue on the same Temporal server) gets the same ladder. Per step: share decided in time, accept
 * latency, settled per second, request → SETTLED, history events and workflow tasks per saga, CPU seconds
 * per payout per process. Then deposits get a smaller ladder. Saves JSON and a PNG chart under bench/results/.
 * With --soak, one fixed rate for a long time instead, reported per window (bench/soak.ts).
 *
 *   npm run bench                      the full ladder (about 30 minutes on 2 cores)
 *   npm run bench -- --quick           a short smoke run
 *   npm run bench -- --rates 2,4,8 --step-seconds 30 --drain-seconds 60 --attach --no-reference --keep
 *   npm run bench -- --cluster         the same on the cluster topology (`npm start -- --cluster`)
 *   npm run bench -- --soak            an hour at 6 payouts/s, figures per 5 minutes
 *   npm run bench -- --soak --soak-rate 2 --soak-minutes 3 --window-minutes 1
 *   npm run bench -- --overload        3 × the sustained rate of the latest full run for 60 s (back-pressure)
 *   npm run bench -- --overload --overload-rate 30 --overload-seconds 60
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { repoRoot } from '../lib/config';
import { startProcess, type ManagedProcess } from '../lib/processes';
import { signToken } from '../lib/tokens';
import { sleep } from '../lib/wait';
import { renderChartPng } from './chart';
import { cpuDelta, describeRun, PAYOUT_MINOR, PAYOUTS_PER_ACCOUNT, pct, round, runLoadGenerator, say } from './harness';
import type { StackAddresses } from './load-generator';
import { runSoak, soakPlan } from './soak';
import { latestSustainedRate, runOverload } from './overload';
import { attachStack, cpuSnapshot, startStack, type Stack } from './stack';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    attach: { type: 'boolean', default: false },
    rates: { type: 'string' },
    'step-seconds': { type: 'string' },
    'drain-seconds': { type: 'string' },
    'no-reference': { type: 'boolean', default: false },
    'deposit-rates': { type: 'string' },
    keep: { type: 'boolean', default: false },
    cluster: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    'soak-rate': { type: 'string', default: '6' }, // about half of what the default stack sustains on 2 cores (11.6/s, 2026-12-02)
    'soak-minutes': { type: 'string', default: '60' },
    'window-minutes': { type: 'string', default: '5' },
    overload: { type: 'boolean', default: false },
    'overload-rate': { type: 'string' },
    'overload-seconds': { type: 'string', default: '60' },
  },
});
const RATES = flags.rates ? flags.rates.split(',').map(Number) : flags.quick ? [2, 6] : [1, 2, 4, 8, 12, 16, 20, 24, 28, 32];
const STEP_SECONDS = Number(flags['step-seconds'] ?? (flags.quick ? 10 : 40));
const DRAIN_MS = Number(flags['drain-seconds'] ?? (flags.quick ? 30 : 60)) * 1000;
/** Deposits: a smaller ladder after the payouts, one deposit per fresh account (the daily limits are per account). */
const DEPOSIT_RATES = flags['deposit-rates'] !== undefined ? flags['deposit-rates'].split(',').filter(Boolean).map(Number) : flags.quick ? [2, 6] : [2, 4, 8];
const DEPOSIT_STEP_SECONDS = flags.quick ? 10 : 20;
/** The soak's size, checked before any stack starts. */
if (flags.overload && !flags['overload-rate']) latestSustainedRate(path.join(repoRoot, 'bench', 'results'), flags.cluster); // fails early without one
const SOAK = flags.soak ? soakPlan(Number(flags['soak-rate']), Number(flags['soak-minutes']), Number(flags['window-minutes'])) : undefined;
const REFERENCE_TASK_QUEUE = 'bench-reference';
const HISTORY_SAMPLES = 5;
/** Longest wait for the previous step's backlog to finish before the next step starts. */
const QUIET_TIMEOUT_MS = 600_000;

function startReferenceWorker(stack: Stack, logFile: string): Promise<ManagedProcess> {
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  return new Promise((resolve, reject) => {
    const proc = startProcess('reference-worker', process.execPath, ['--import', 'tsx', 'bench/reference/worker.ts'], {
      cwd: repoRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: stack.temporalAddress, TEMPORAL_NAMESPACE: stack.config.TEMPORAL_NAMESPACE, REFERENCE_TASK_QUEUE, SANDBOX_CALLBACK_DELAY_MS: String(stack.config.SANDBOX_CALLBACK_DELAY_MS) },
      onLine: (line) => {
        log.write(`${line}\n`);
        if (line.includes('reference worker ready')) resolve(proc);
      },
    });
    void proc.exited.then((code) => reject(new Error(`reference worker exited (${code}); see ${logFile}`)));
  });
}

type StepFigures = {
  offered_per_s: number;
  requests: number;
  settled: number;
  settled_per_s: number;
  decided_in_time_share: number | null;
  accept_ms: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  request_to_settled_ms: { p50: number | null; p99: number | null };
  history: { events_per_saga: number | null; workflow_tasks_per_saga: number | null };
  [k: string]: unknown;
};

/**
 * Waits until neither workload has sagas in flight (payouts of this run not yet final in the read model,
 * reference sagas still running), so a saturated step's backlog does not load the next step. Returns what
 * was still in flight when the wait gave up (0 normally).
 */
async function waitUntilQuiet(db: pg.Pool, temporal: Client, accountPrefix: string, payoutsSent: number): Promise<{ platform: number; reference: number; waited_s: number }> {
  const started = Date.now();
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM payouts WHERE account_id LIKE $1 AND status IN ('SETTLED', 'FAILED', 'DECLINED', 'CANCELLED', 'RETURNED')",
      [`${accountPrefix}%`],
    );
    const platform = payoutsSent - rows[0]!.n;
    const reference = (await temporal.workflow.count(`TaskQueue = '${REFERENCE_TASK_QUEUE}' AND ExecutionStatus = 'Running'`)).count;
    const waited = (Date.now() - started) / 1000;
    if ((platform <= 0 && reference === 0) || Date.now() - started > QUIET_TIMEOUT_MS) return { platform: Math.max(0, platform), reference, waited_s: round(waited)! };
    if (Math.round(waited) % 30 === 0) say(`waiting for the backlog: ${platform} payouts, ${reference} reference sagas in flight`);
    await sleep(1_000);
  }
}

function saturated(step: StepFigures): boolean {
  return step.settled_per_s < 0.8 * step.offered_per_s || (step.decided_in_time_share ?? 0) < 0.9;
}

async function main() {
  const startedAt = new Date();
  const resultsDir = path.join(repoRoot, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-bench-'));
  const stops: (() => Promise<unknown>)[] = [];
  const launcherLog = fs.createWriteStream(path.join(dataDir, 'launcher-output.log'));
  // Ctrl-C stops the stack this run started (in reverse order), then exits.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`${signal}: stopping the stack...`);
      void (async () => {
        for (const stop of stops.reverse()) await stop().catch(() => undefined);
        fs.rmSync(dataDir, { recursive: true, force: true });
        process.exit(130);
      })();
    });
  }
  try {
    let stack: Stack;
    if (flags.attach) {
      stack = attachStack();
      say(`using the running stack at ${stack.apiUrl} (launcher pid ${stack.launcherPid})`);
    } else {
      say(`starting the platform as npm start does (launcher, DATA_DIR ${dataDir}, free ports)...`);
      stack = await startStack(dataDir, (line) => launcherLog.write(`${line}\n`), { cluster: flags.cluster });
      stops.push(() => stack.stop());
      say(`platform up at ${stack.apiUrl}`);
    }
    const c = stack.config;
    const token = await signToken({ sub: 'bench', role: 'service' }, c.AUTH_JWT_SECRET, '12h', { issuer: c.AUTH_JWT_ISSUER, audience: c.AUTH_JWT_AUDIENCE });
    const addresses: StackAddresses = { apiUrls: stack.apiUrls, databaseUrl: stack.databaseUrl, temporalAddress: stack.temporalAddress, namespace: c.TEMPORAL_NAMESPACE, token };
    if (flags.overload) {
      await runOverload({ stack, addresses, attached: flags.attach, startedAt, resultsDir, ...(flags['overload-rate'] ? { rate: Number(flags['overload-rate']) } : {}), seconds: Number(flags['overload-seconds']) });
      return;
    }
    if (SOAK) {
      await runSoak({ stack, addresses, attached: flags.attach, startedAt, resultsDir, plan: SOAK, drainMs: Number(flags['drain-seconds'] ?? 300) * 1000 });
      return;
    }

    let referenceWorker: ManagedProcess | undefined;
    if (!flags['no-reference']) {
      say('starting the reference worker (bare SDK, no-op steps)...');
      referenceWorker = await startReferenceWorker(stack, path.join(dataDir, 'reference-worker.log'));
      stops.push(() => referenceWorker!.stop(15_000));
    }
    const extra: Record<string, number> = referenceWorker ? { 'reference-worker': referenceWorker.child.pid! } : {};

    const maxPayouts = RATES.reduce((a, r) => a + Math.round(r * STEP_SECONDS), 0);
    const accountCount = Math.max(10, Math.ceil(maxPayouts / PAYOUTS_PER_ACCOUNT));
    say(`funding ${accountCount} accounts through the API (deposits, paid at the sandbox checkout)...`);
    const fundBefore = cpuSnapshot(stack.launcherPid, extra);
    const runId = startedAt.getTime().toString(36);
    const funded = await runLoadGenerator<{ accounts: string[]; deposits: StepFigures }>({
      ...addresses,
      kind: 'setup',
      runId,
      accounts: accountCount,
      depositMinor: PAYOUT_MINOR * 20 * 2,
      depositRate: flags.quick ? 2 : 4,
      drainTimeoutMs: 120_000,
      requireAll: true,
    });
    const deposits = { ...funded.deposits, ...cpuDelta(fundBefore, cpuSnapshot(stack.launcherPid, extra), funded.deposits.settled) };
    say(`deposits at ${deposits.offered_per_s}/s: accept p50 ${deposits.accept_ms.p50} ms, p99 ${deposits.accept_ms.p99} ms, request → CREDITED p50 ${deposits.request_to_settled_ms.p50} ms`);

    const platform: StepFigures[] = [];
    const reference: StepFigures[] = [];
    let nextAccount = 0;
    let payoutsSent = 0;
    const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 1 });
    stops.push(() => db.end());
    const temporalConnection = await Connection.connect({ address: stack.temporalAddress });
    stops.push(() => temporalConnection.close());
    const temporal = new Client({ connection: temporalConnection, namespace: c.TEMPORAL_NAMESPACE });
    // Interleaved per rate, so both workloads meet the same machine (other users' load included).
    for (const rate of RATES) {
      for (const [name, steps] of [['platform', platform], ['reference', reference]] as const) {
        if (name === 'reference' && !referenceWorker) continue;
        // A workload stops one step after it first saturated: the plateau is shown, the backlog bounded.
        if (steps.length >= 2 && saturated(steps.at(-1)!) && saturated(steps.at(-2)!)) continue;
        const backlog = await waitUntilQuiet(db, temporal, `bench-${runId}-`, payoutsSent);
        say(`${name}: ${rate}/s for ${STEP_SECONDS}s...`);
        const before = cpuSnapshot(stack.launcherPid, extra);
        const common = { ...addresses, rate, seconds: STEP_SECONDS, syncDeadlineMs: c.SAGA_SYNC_DEADLINE_MS, drainTimeoutMs: DRAIN_MS, historySamples: HISTORY_SAMPLES };
        const figures =
          name === 'platform'
            ? await runLoadGenerator<StepFigures>({ ...common, kind: 'platform', accounts: funded.accounts, firstAccount: nextAccount, payoutMinor: PAYOUT_MINOR })
            : await runLoadGenerator<StepFigures>({ ...common, kind: 'reference', taskQueue: REFERENCE_TASK_QUEUE });
        if (name === 'platform') {
          nextAccount += figures.requests;
          payoutsSent += figures.settled + (figures.not_settled as number);
        }
        const step = { ...figures, ...cpuDelta(before, cpuSnapshot(stack.launcherPid, extra), figures.settled), in_flight_at_start: backlog };
        steps.push(step);
        say(`${name} ${rate}/s: ${line(step)}`);
      }
    }

    const depositLadder: StepFigures[] = [];
    for (const rate of DEPOSIT_RATES) {
      await waitUntilQuiet(db, temporal, `bench-${runId}-`, payoutsSent);
      say(`deposits: ${rate}/s for ${DEPOSIT_STEP_SECONDS}s (a fresh account each)...`);
      const before = cpuSnapshot(stack.launcherPid, extra);
      const { deposits: figures } = await runLoadGenerator<{ deposits: StepFigures }>({
        ...addresses,
        kind: 'setup',
        runId: `${runId}-d${rate}`,
        accounts: Math.round(rate * DEPOSIT_STEP_SECONDS),
        depositMinor: 1000,
        depositRate: rate,
        drainTimeoutMs: DRAIN_MS,
        requireAll: false,
      });
      const step = { ...figures, ...cpuDelta(before, cpuSnapshot(stack.launcherPid, extra), figures.settled) };
      depositLadder.push(step);
      say(`deposits ${rate}/s: ${line(step).replace('settled/s', 'credited/s').replace('SETTLED', 'CREDITED')}`);
    }

    const sustained = (steps: StepFigures[]) => Math.max(0, ...steps.map((s) => s.settled_per_s));
    const result = {
      date: startedAt.toISOString(),
      mode: flags.quick ? 'quick' : 'full',
      ...describeRun(stack, flags.attach),
      ladder: { rates: RATES, step_seconds: STEP_SECONDS, drain_seconds: DRAIN_MS / 1000, payout_minor_units: PAYOUT_MINOR, accounts: accountCount },
      funding_deposits: deposits,
      deposits: depositLadder,
      platform,
      reference,
      sustained_settled_per_s: { platform: round(sustained(platform), 2), reference: referenceWorker ? round(sustained(reference), 2) : null },
      ratio_platform_to_reference: referenceWorker && sustained(reference) > 0 ? round(sustained(platform) / sustained(reference), 2) : null,
    };
    const base = path.join(resultsDir, `payouts-${flags.cluster ? 'cluster-' : ''}${flags.quick ? 'quick-' : ''}${result.date.slice(0, 10)}`);
    fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
    await renderChartPng(
      {
        title: `Payouts: platform (npm start${flags.cluster ? ' -- --cluster' : ''} stack) vs the same saga shape on the bare Temporal SDK${flags.quick ? ' (quick run)' : ''}`,
        subtitle: `${result.date.slice(0, 16).replace('T', ' ')} UTC · ${result.machine.cores} cores, ${result.machine.cpu} · open loop, ${STEP_SECONDS} s per step · sustained: platform ${result.sustained_settled_per_s.platform}/s, reference ${result.sustained_settled_per_s.reference ?? '–'}/s, ratio ${result.ratio_platform_to_reference ?? '–'}`,
        series: [
          { name: 'platform', color: '#1f6feb', steps: platform },
          ...(referenceWorker ? [{ name: 'reference', color: '#e8590c', steps: reference }] : []),
        ],
      },
      `${base}.png`,
    );
    process.stdout.write(`${table(result.machine.cores, platform, reference)}\n`);
    for (const d of depositLadder) process.stdout.write(`deposits ${d.offered_per_s}/s: ${line(d).replace('settled/s', 'credited/s').replace('SETTLED', 'CREDITED (paid at the checkout on the answer)')}\n`);
    process.stdout.write(`sustained settled/s: platform ${result.sustained_settled_per_s.platform}, reference ${result.sustained_settled_per_s.reference ?? '–'}; ratio platform/reference ${result.ratio_platform_to_reference ?? '–'}\n`);
    process.stdout.write(`saved ${path.relative(repoRoot, base)}.json and .png\n`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => say(`stop: ${String(err)}`));
    launcherLog.end();
    if (flags.keep) say(`kept ${dataDir}`);
    else fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function line(s: StepFigures): string {
  return `${pct(s.decided_in_time_share)} decided in time, accept p50 ${s.accept_ms.p50} / p99 ${s.accept_ms.p99} ms, ${round(s.settled_per_s, 2)} settled/s, request → SETTLED p50 ${s.request_to_settled_ms.p50} ms`;
}

function table(cores: number, platform: StepFigures[], reference: StepFigures[]): string {
  const rows = [
    ['workload', 'offered/s', '201 in time', 'accept p50/p95/p99 ms', 'settled/s', 'req→SETTLED p50/p99 ms', 'events/saga', 'WFTs/saga', 'CPU s/payout (worker, temporal, api, postgres)'],
    ...[...platform.map((s) => ['platform', s] as const), ...reference.map((s) => ['reference', s] as const)].map(([name, s]) => {
      const cpu = (s.cpu_per_process ?? {}) as Record<string, { cpu_s_per_payout: number | null }>;
      const worker = name === 'platform' ? cpu.worker : cpu['reference-worker'];
      return [
        name,
        String(s.offered_per_s),
        pct(s.decided_in_time_share),
        `${s.accept_ms.p50}/${s.accept_ms.p95}/${s.accept_ms.p99}`,
        String(round(s.settled_per_s, 2)),
        `${s.request_to_settled_ms.p50}/${s.request_to_settled_ms.p99}`,
        String(round(s.history.events_per_saga)),
        String(round(s.history.workflow_tasks_per_saga)),
        [worker, cpu.temporal, name === 'platform' ? cpu.api : undefined, name === 'platform' ? cpu.postgres : undefined].map((p) => (p?.cpu_s_per_payout ?? '–').toString()).join(', '),
      ];
    }),
  ];
  const lines = rows.map((r) => `| ${r.join(' | ')} |`);
  lines.splice(1, 0, `|${rows[0]!.map(() => '---').join('|')}|`);
  return `\nmachine: ${cores} cores\n${lines.join('\n')}`;
}

await main();
process.exit(process.exitCode ?? 0);
