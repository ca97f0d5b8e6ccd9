/**
 * `npm run bench -- --overload`: three times the sustainable payout rate for 60 s on the stack a user runs
 * (back-pressure issue). The sustainable rate is the platform's from the latest full benchmark in
 * bench/results (payouts-<date>.json), or --overload-rate. Prints the verdict of each acceptance point
 * and saves bench/results/overload-<date>.json and .png.
 */
import fs from 'node:fs';
import path from 'node:path';
import { signToken } from '../lib/tokens';
import { renderOverloadChartPng } from './chart';
import { cpuDelta, describeRun, PAYOUT_MINOR, round, runLoadGenerator, say } from './harness';
import type { StackAddresses } from './load-generator';
import { cpuSnapshot, type Stack } from './stack';

export interface OverloadRun {
  stack: Stack;
  addresses: StackAddresses;
  attached: boolean;
  startedAt: Date;
  resultsDir: string;
  /** Offered payouts per second; default 3 × the latest benchmark's sustained rate. */
  rate?: number;
  seconds: number;
}

/** The platform's sustained rate in the newest full benchmark result (same topology). */
export function latestSustainedRate(resultsDir: string, cluster: boolean): { rate: number; from: string } {
  const pattern = cluster ? /^payouts-cluster-\d{4}-\d{2}-\d{2}\.json$/ : /^payouts-\d{4}-\d{2}-\d{2}\.json$/;
  const newest = fs.readdirSync(resultsDir).filter((f) => pattern.test(f)).sort().at(-1);
  if (!newest) throw new Error(`no ${cluster ? 'payouts-cluster' : 'payouts'}-<date>.json in ${resultsDir}: run the benchmark first, or give --overload-rate`);
  const result = JSON.parse(fs.readFileSync(path.join(resultsDir, newest), 'utf8')) as { sustained_settled_per_s: { platform: number } };
  return { rate: result.sustained_settled_per_s.platform, from: newest };
}

export async function runOverload({ stack, addresses, attached, startedAt, resultsDir, rate, seconds }: OverloadRun): Promise<void> {
  const c = stack.config;
  const sustained = rate === undefined ? latestSustainedRate(resultsDir, stack.cluster) : undefined;
  const offered = rate ?? Math.round(3 * sustained!.rate);
  const payouts = offered * seconds;
  // At most 15 payouts per account (the hourly velocity limit is 20), 4 more for the idle and recovery singles.
  const accounts = Math.ceil(payouts / 15) + 4;
  const runId = startedAt.getTime().toString(36);
  say(`overload: ${offered} payouts/s for ${seconds} s${sustained ? ` (3 × ${sustained.rate}/s sustained in ${sustained.from})` : ''}; funding ${accounts} accounts...`);
  const funded = await runLoadGenerator<{ accounts: string[] }>({ ...addresses, kind: 'setup', runId, accounts, depositMinor: PAYOUT_MINOR * 60, depositRate: 6, drainTimeoutMs: 300_000, requireAll: true });
  const staffToken = await signToken({ sub: 'bench-staff', role: 'staff' }, c.AUTH_JWT_SECRET, '2h', { issuer: c.AUTH_JWT_ISSUER, audience: c.AUTH_JWT_AUDIENCE });
  const before = cpuSnapshot(stack.launcherPid);
  const figures = await runLoadGenerator<Record<string, any>>({
    ...addresses,
    kind: 'overload',
    rate: offered,
    seconds,
    accounts: funded.accounts,
    payoutMinor: PAYOUT_MINOR,
    syncDeadlineMs: c.SAGA_SYNC_DEADLINE_MS,
    drainTimeoutMs: 300_000,
    staffToken,
    idleSamples: 10,
    recoverySeconds: 15,
  });
  const processes = cpuDelta(before, cpuSnapshot(stack.launcherPid), figures.settled);
  const checks = {
    no_5xx: figures.server_errors === 0 && figures.transport_errors === 0,
    every_answer_within_1s: figures.answered_within_1s_share === 1,
    admitted_accept_p99_le_300ms: (figures.admitted.accept_ms.p99 ?? Infinity) <= 300,
    admitted_all_settled: figures.admitted.settled === figures.admitted.requests,
    excess_is_429_with_retry_after: figures.refused.requests > 0 && figures.refused.with_retry_after === figures.refused.requests,
    refused_wrote_nothing: figures.refused.idempotency_records === 0 && figures.refused.read_model_rows === 0 && figures.refused.ledger_transfers === 0 && figures.refused.sagas_found === 0,
    webhooks_never_429: (figures.webhooks.answered_by_status['429'] ?? 0) === 0 && figures.webhooks.rate_limited === 0,
    staff_within_500ms: (figures.staff_probe.ms.max ?? Infinity) <= 500 && Object.keys(figures.staff_probe.statuses).every((s) => s === '200'),
    idle_latency_within_10s_after: figures.recovery.first_at_idle_after_s !== null && figures.recovery.first_at_idle_after_s <= 10,
  };
  const result = {
    date: startedAt.toISOString(),
    ...describeRun(stack, attached),
    offered_per_s: offered,
    seconds,
    sustained_reference: sustained ?? null,
    accounts,
    checks,
    ...figures,
    ...processes,
  };
  const base = path.join(resultsDir, `overload-${stack.cluster ? 'cluster-' : ''}${result.date.slice(0, 10)}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  await renderOverloadChartPng(
    {
      title: `Overload: ${offered} payouts/s offered for ${seconds} s (${sustained ? `3 × the sustained ${sustained.rate}/s` : 'fixed rate'}) on the npm start${stack.cluster ? ' -- --cluster' : ''} stack`,
      subtitle: `${result.date.slice(0, 16).replace('T', ' ')} UTC · ${result.machine.cores} cores · admitted ${round(figures.admitted.per_s, 1)}/s (accept p99 ${figures.admitted.accept_ms.p99} ms), refused ${figures.refused.requests} × 429 (p99 ${figures.refused.accept_ms.p99} ms), ${figures.server_errors} × 5xx`,
      perSecond: figures.per_second,
    },
    `${base}.png`,
  );
  const out = [
    '',
    `overload: ${offered}/s offered for ${seconds} s, ${figures.requests} requests: ${JSON.stringify(figures.statuses)} ${JSON.stringify(figures.codes)}`,
    `  admitted ${figures.admitted.requests} (${round(figures.admitted.per_s, 1)}/s): accept p50 ${figures.admitted.accept_ms.p50} / p99 ${figures.admitted.accept_ms.p99} ms; settled ${figures.admitted.settled}`,
    `  refused ${figures.refused.requests}: answered p50 ${figures.refused.accept_ms.p50} / p99 ${figures.refused.accept_ms.p99} ms; with Retry-After ${figures.refused.with_retry_after}; wrote: ${figures.refused.idempotency_records} idempotency records, ${figures.refused.read_model_rows} payouts rows, ${figures.refused.ledger_transfers} transfers, ${figures.refused.sagas_found}/${figures.refused.sagas_checked} sagas`,
    `  slowest answer ${figures.answer_ms_max} ms; webhooks answered ${JSON.stringify(figures.webhooks.answered_by_status)}; staff probe p50 ${figures.staff_probe.ms.p50} / max ${figures.staff_probe.ms.max} ms`,
    `  idle single payout p50 ${figures.idle_before.p50_ms} ms; first at idle latency ${figures.recovery.first_at_idle_after_s} s after the load stopped`,
    ...Object.entries(checks).map(([name, ok]) => `  ${ok ? 'PASS' : 'FAIL'} ${name}`),
    `saved ${path.relative(path.dirname(resultsDir), base)}.json and .png`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
