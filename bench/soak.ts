/**
 * `npm run bench -- --soak`: payouts at one fixed rate, open loop, for a long time (an hour by default) on the
 * stack bench/payouts.ts started (or attached to), reported per window (5 minutes by default) while it runs.
 *
 * Accounts are funded through the API first, enough that no account passes the hourly velocity limit. One
 * load-generator process then offers the payouts and streams one line per window (bench/load-generator.ts,
 * `soak`); this process takes CPU and memory per process (/proc) and the worker's Prometheus counters at every
 * window boundary, and prints one table row per window. At the end: every payout settled (after a drain)? the
 * last window against the first (throughput, accept p99: within 10 %?), and whether the worker's memory levels
 * off (its growth over the last half of the run). JSON and a PNG chart go to bench/results/soak-<date>.*.
 */
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../lib/config';
import { renderSoakChartPng } from './chart';
import { cpuDelta, describeRun, PAYOUT_MINOR, PAYOUTS_PER_ACCOUNT, pct, type ProcessFigures, round, runLoadGenerator, say } from './harness';
import type { StackAddresses } from './load-generator';
import { cpuSnapshot, type CpuSnapshot, type Stack } from './stack';

/** Deposits per second while funding: the deposit ladder holds 8/s on a fresh stack (accept p99 ≈ 0.3 s). */
const FUNDING_RATE = 8;
/** Longest wait for a window's answers and settlements before its line is printed anyway. */
const WINDOW_GRACE_MS = 60_000;
/** Worker memory "levels off" when it grows by at most this share over the last half of the run. */
const MEMORY_GROWTH_LIMIT = 0.05;
/** The last window against the first: throughput and accept p99 within this share. */
const DRIFT_LIMIT = 0.1;

export interface SoakPlan {
  rate: number;
  minutes: number;
  windowMinutes: number;
  windows: number;
  perWindow: number;
  payouts: number;
  accounts: number;
  payoutsPerAccount: number;
}

/** Checks the soak's flags (before any stack is started) and sizes the run. */
export function soakPlan(rate: number, minutes: number, windowMinutes: number): SoakPlan {
  if (!(rate > 0) || !(minutes > 0) || !(windowMinutes > 0)) throw new Error('--soak-rate, --soak-minutes and --window-minutes must be positive numbers');
  const windows = Math.round(minutes / windowMinutes);
  if (windows < 1 || Math.abs(windows * windowMinutes - minutes) > 1e-9) throw new Error(`--soak-minutes (${minutes}) must be a whole number of --window-minutes (${windowMinutes})`);
  const perWindow = Math.round(rate * windowMinutes * 60);
  const payouts = windows * perWindow;
  // Accounts are taken in turn, so each gets a payout every `accounts / rate` seconds: enough accounts that
  // none gets more than PAYOUTS_PER_ACCOUNT in any hour (or in the whole run, when shorter).
  const accounts = Math.max(10, Math.ceil(Math.min(payouts, rate * 3600) / PAYOUTS_PER_ACCOUNT));
  return { rate, minutes, windowMinutes, windows, perWindow, payouts, accounts, payoutsPerAccount: Math.ceil(payouts / accounts) };
}

interface WorkerCounters {
  /** temporal_workflow_task_execution_failed, summed over its series, by failure_reason. */
  taskFailures: Record<string, number>;
  stickyCacheSize: number | null;
}

/** The worker's Prometheus metrics (the Temporal SDK's among them); null when they cannot be read. */
async function readWorkerCounters(address: string): Promise<WorkerCounters | null> {
  try {
    const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return null;
    const counters: WorkerCounters = { taskFailures: {}, stickyCacheSize: null };
    for (const line of (await res.text()).split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const [, name, labels = '', value] = m;
      if (name === 'temporal_workflow_task_execution_failed' || name === 'temporal_workflow_task_execution_failed_total') {
        const reason = /failure_reason="([^"]*)"/.exec(labels)?.[1] ?? 'unlabelled';
        counters.taskFailures[reason] = (counters.taskFailures[reason] ?? 0) + Number(value);
      } else if (name === 'temporal_sticky_cache_size') {
        counters.stickyCacheSize = (counters.stickyCacheSize ?? 0) + Number(value);
      }
    }
    return counters;
  } catch {
    return null;
  }
}

/** Workflow task failures between two readings: total, nondeterminism errors, and by reason. */
function taskFailuresBetween(before: WorkerCounters | null, after: WorkerCounters | null) {
  if (!before || !after) return null;
  const byReason: Record<string, number> = {};
  for (const [reason, n] of Object.entries(after.taskFailures)) if (n - (before.taskFailures[reason] ?? 0) > 0) byReason[reason] = n - (before.taskFailures[reason] ?? 0);
  const sum = (pick: (reason: string) => boolean) => Object.entries(byReason).reduce((a, [r, n]) => a + (pick(r) ? n : 0), 0);
  return { total: sum(() => true), nondeterminism: sum((r) => /nondetermin/i.test(r)), by_reason: byReason };
}

interface Boundary {
  cpu: CpuSnapshot;
  counters: WorkerCounters | null;
}

/** A window as the load generator reports it (bench/load-generator.ts `summarize`, with the window's place). */
interface LoadWindow {
  window: number;
  from_min: number;
  to_min: number;
  offered_per_s: number;
  requests: number;
  decided_in_time_share: number | null;
  accept_ms: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  settled_in_window: number;
  settled_per_s: number;
  request_to_settled_ms: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  outcomes: Record<string, number>;
  [k: string]: unknown;
}

/** What this process measured over a window: CPU and memory per process, the worker's task failures. */
interface WindowProcesses {
  processes: ReturnType<typeof cpuDelta>;
  worker_rss_mib: number | null;
  worker_task_failures: ReturnType<typeof taskFailuresBetween>;
  sticky_cache_size: number | null;
}

type Window = LoadWindow & WindowProcesses;

export interface SoakRun {
  stack: Stack;
  addresses: StackAddresses;
  attached: boolean;
  startedAt: Date;
  resultsDir: string;
  plan: SoakPlan;
  drainMs: number;
}

export async function runSoak({ stack, addresses, attached, startedAt, resultsDir, plan, drainMs }: SoakRun): Promise<void> {
  const c = stack.config;
  const runId = startedAt.getTime().toString(36);
  say(`soak: ${plan.rate} payouts/s for ${plan.minutes} min (${plan.payouts} payouts, ${plan.windows} windows of ${plan.windowMinutes} min) over ${plan.accounts} accounts`);
  say(`funding ${plan.accounts} accounts through the API at ${FUNDING_RATE} deposits/s...`);
  const fundBefore = cpuSnapshot(stack.launcherPid);
  const funded = await runLoadGenerator<{ accounts: string[]; deposits: { settled: number; accept_ms: { p50: number | null; p99: number | null } } }>({
    ...addresses,
    kind: 'setup',
    runId,
    accounts: plan.accounts,
    // Twice what the account will pay out, so no payout is declined for funds.
    depositMinor: plan.payoutsPerAccount * PAYOUT_MINOR * 2,
    depositRate: FUNDING_RATE,
    drainTimeoutMs: 300_000,
    requireAll: true,
  });
  const funding = { accounts: plan.accounts, deposits: { ...funded.deposits, ...cpuDelta(fundBefore, cpuSnapshot(stack.launcherPid), funded.deposits.settled) } };
  say(`funded in ${funding.deposits.wall_s} s (deposit accept p50 ${funded.deposits.accept_ms.p50} ms, p99 ${funded.deposits.accept_ms.p99} ms)`);

  const takeBoundary = async (): Promise<Boundary> => ({ cpu: cpuSnapshot(stack.launcherPid), counters: await readWorkerCounters(c.WORKER_METRICS_ADDRESS) });
  const boundaries: Promise<Boundary>[] = [];
  const live: Window[] = [];
  let printing = Promise.resolve();
  process.stdout.write(`\nsoak: ${plan.rate} payouts/s offered, open loop; one row per ${plan.windowMinutes}-minute window\n${tableHeader()}\n`);
  const onWindow = async (w: LoadWindow) => {
    const [before, after] = await Promise.all([boundaries[w.window - 1]!, boundaries[w.window]!]);
    const window = { ...w, ...windowProcesses(before, after, w.settled_in_window) };
    live.push(window);
    process.stdout.write(`${tableRow(window)}\n`);
  };
  const result = await runLoadGenerator<{ windows: LoadWindow[]; per_minute: unknown[]; reconciliation_runs: { started_min: number; seconds: number; provider_items: number; ledger_movements: number }[]; totals: LoadWindow & { settled: number; not_settled: number; statuses: Record<string, number> }; not_final_after_drain: number; without_payout_id: number }>(
    { ...addresses, kind: 'soak', rate: plan.rate, windows: plan.windows, perWindow: plan.perWindow, accounts: funded.accounts, payoutMinor: PAYOUT_MINOR, syncDeadlineMs: c.SAGA_SYNC_DEADLINE_MS, windowGraceMs: WINDOW_GRACE_MS, drainTimeoutMs: drainMs },
    (event) => {
      if (event.event === 'started') {
        // The boundaries are taken on this process's clock at the load generator's window edges.
        const t0 = event.t0 as number;
        const windowMs = event.window_ms as number;
        boundaries.push(takeBoundary());
        for (let k = 1; k <= plan.windows; k++) boundaries.push(new Promise((resolve) => setTimeout(() => resolve(takeBoundary()), Math.max(0, t0 + k * windowMs - Date.now()))));
      } else if (event.event === 'window') {
        printing = printing.then(() => onWindow(event as unknown as LoadWindow));
      }
    },
  );
  await printing;
  const afterDrain = await takeBoundary();
  const first = await boundaries[0]!;

  // The windows again, with the settlements the drain saw; this process's figures are the live ones.
  const windows: Window[] = result.windows.map((w, k) => ({ ...w, ...pickProcesses(live[k]!) }));
  const firstWindow = windows[0]!;
  const lastWindow = windows.at(-1)!;
  const ratio = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? round(a / b, 3) : null);
  const within = (r: number | null) => r !== null && Math.abs(r - 1) <= DRIFT_LIMIT;
  const throughputRatio = ratio(lastWindow.settled_per_s, firstWindow.settled_per_s);
  const p99Ratio = ratio(lastWindow.accept_ms.p99, firstWindow.accept_ms.p99);
  const memory = memoryTrend(windows);
  const failures = taskFailuresBetween(first.counters, afterDrain.counters);
  const settled = result.totals.settled;
  const verdict = {
    every_payout_settled: settled === plan.payouts,
    settled,
    not_final_after_drain: result.not_final_after_drain,
    final_not_settled: plan.payouts - settled - result.not_final_after_drain,
    first_vs_last_window: {
      settled_per_s: { first: round(firstWindow.settled_per_s, 3), last: round(lastWindow.settled_per_s, 3), ratio: throughputRatio, within_10_percent: within(throughputRatio) },
      accept_p99_ms: { first: firstWindow.accept_ms.p99, last: lastWindow.accept_ms.p99, ratio: p99Ratio, within_10_percent: within(p99Ratio) },
    },
    worker_memory: memory,
    workflow_task_failures: failures,
  };
  const describe = describeRun(stack, attached);
  const json = {
    date: startedAt.toISOString(),
    mode: 'soak',
    ...describe,
    soak: { rate_per_s: plan.rate, minutes: plan.minutes, window_minutes: plan.windowMinutes, payouts: plan.payouts, accounts: plan.accounts, payouts_per_account: plan.payoutsPerAccount, payout_minor_units: PAYOUT_MINOR, drain_seconds: drainMs / 1000, window_grace_seconds: WINDOW_GRACE_MS / 1000 },
    funding,
    windows,
    per_minute: result.per_minute,
    reconciliation_runs: result.reconciliation_runs,
    totals: { ...result.totals, without_payout_id: result.without_payout_id, processes: cpuDelta(first.cpu, afterDrain.cpu, settled), worker_rss_mib_after_drain: rssOf(afterDrain.cpu, 'worker') },
    verdict,
  };
  const base = path.join(resultsDir, `soak-${json.date.slice(0, 10)}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  await renderSoakChartPng(
    {
      title: `Soak: ${plan.rate} payouts/s for ${plan.minutes} min on the npm start stack`,
      subtitle: `${json.date.slice(0, 16).replace('T', ' ')} UTC · ${describe.machine.cores} cores, ${describe.machine.cpu} · open loop, ${plan.windowMinutes}-minute windows · ${settled} of ${plan.payouts} settled`,
      offeredPerS: plan.rate,
      windows: windows.map((w) => ({ minute: w.to_min, accept_ms: w.accept_ms, settled_per_s: w.settled_per_s, worker_rss_mib: w.worker_rss_mib })),
      workerRssAtStartMib: rssOf(first.cpu, 'worker'),
    },
    `${base}.png`,
  );

  process.stdout.write(`\nafter the drain (every window recomputed with the drain's settlements):\n${tableHeader()}\n${windows.map(tableRow).join('\n')}\n`);
  process.stdout.write(`every payout settled: ${verdict.every_payout_settled ? 'yes' : 'NO'} (${settled} of ${plan.payouts}; ${verdict.not_final_after_drain} not final after a drain of up to ${drainMs / 1000} s, ${verdict.final_not_settled} final but not settled)\n`);
  process.stdout.write(
    `last window vs first: settled/s ${verdict.first_vs_last_window.settled_per_s.last} vs ${verdict.first_vs_last_window.settled_per_s.first} (×${throughputRatio ?? '–'}), accept p99 ${lastWindow.accept_ms.p99} vs ${firstWindow.accept_ms.p99} ms (×${p99Ratio ?? '–'}): ${within(throughputRatio) && within(p99Ratio) ? 'within' : 'NOT within'} 10 %\n`,
  );
  process.stdout.write(
    `worker memory: ${memory.levels_off === null ? 'too few windows to tell' : memory.levels_off ? 'levels off' : 'still growing'} (last half: ${memory.slope_mib_per_10_min ?? '–'} MiB per 10 min, +${memory.growth_share === null ? '–' : pct(memory.growth_share)} of ${memory.mean_mib ?? '–'} MiB)\n`,
  );
  process.stdout.write(
    `reconciliation runs: ${result.reconciliation_runs.map((r) => `minute ${r.started_min} (${r.seconds} s, ${r.provider_items} provider items, ${r.ledger_movements} ledger movements)`).join('; ') || 'none'}\n`,
  );
  process.stdout.write(`workflow task failures: ${failures ? `${failures.total} (nondeterminism ${failures.nondeterminism})` : 'unknown (worker metrics not readable)'}\n`);
  process.stdout.write(`saved ${path.relative(repoRoot, base)}.json and .png\n`);
}

function rssOf(snapshot: CpuSnapshot, service: string): number | null {
  const s = snapshot.services[service];
  return s ? Math.round(s.rssBytes / 2 ** 20) : null;
}

function windowProcesses(before: Boundary, after: Boundary, settledInWindow: number): WindowProcesses {
  return {
    processes: cpuDelta(before.cpu, after.cpu, settledInWindow),
    worker_rss_mib: rssOf(after.cpu, 'worker'),
    worker_task_failures: taskFailuresBetween(before.counters, after.counters),
    sticky_cache_size: after.counters?.stickyCacheSize ?? null,
  };
}

function pickProcesses(w: Window): WindowProcesses {
  return { processes: w.processes, worker_rss_mib: w.worker_rss_mib, worker_task_failures: w.worker_task_failures, sticky_cache_size: w.sticky_cache_size };
}

/** Least-squares slope of the worker's RSS over the last half of the windows, and the growth it means over that half. */
function memoryTrend(windows: Window[]) {
  const points = windows
    .slice(Math.floor(windows.length / 2))
    .filter((w) => w.worker_rss_mib !== null)
    .map((w) => [w.to_min, w.worker_rss_mib!] as const);
  if (points.length < 2) return { windows_used: points.length, slope_mib_per_10_min: null, mean_mib: null, growth_share: null, levels_off: null };
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const mx = mean(points.map(([x]) => x));
  const my = mean(points.map(([, y]) => y));
  const slope = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const growthShare = (slope * (points.at(-1)![0] - points[0]![0])) / my;
  return { windows_used: points.length, slope_mib_per_10_min: round(slope * 10), mean_mib: Math.round(my), growth_share: round(growthShare, 3), levels_off: growthShare <= MEMORY_GROWTH_LIMIT };
}

const COLUMNS = ['minutes', 'offered', '201 in time', 'accept p50/p95/p99 ms', 'settled/s', 'req→SETTLED p50/p99 ms', 'open', 'worker RSS MiB', 'CPU s/payout (worker, temporal, api, postgres)', 'WFT failures (nondet.)', 'sticky cache'];

function tableHeader(): string {
  return `| ${COLUMNS.join(' | ')} |\n|${COLUMNS.map(() => '---').join('|')}|`;
}

function tableRow(w: Window): string {
  const cpu: ProcessFigures = w.processes.cpu_per_process;
  const failures = w.worker_task_failures;
  return `| ${[
    `${w.from_min}–${w.to_min}`,
    String(w.requests),
    pct(w.decided_in_time_share),
    `${w.accept_ms.p50}/${w.accept_ms.p95}/${w.accept_ms.p99}`,
    String(round(w.settled_per_s, 2)),
    `${w.request_to_settled_ms.p50}/${w.request_to_settled_ms.p99}`,
    String(w.outcomes.open ?? 0),
    String(w.worker_rss_mib ?? '–'),
    [cpu.worker, cpu.temporal, cpu.api, cpu.postgres].map((p) => (p?.cpu_s_per_payout ?? '–').toString()).join(', '),
    failures ? `${failures.total} (${failures.nondeterminism})` : '–',
    String(w.sticky_cache_size ?? '–'),
  ].join(' | ')} |`;
}
