/**
 * What the ladder (bench/payouts.ts) and the soak (bench/soak.ts) share: the load-generator process, CPU and
 * memory per process between two snapshots, the machine and stack a run is measured on, and formatting.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import readline from 'node:readline';
import { repoRoot } from '../lib/config';
import type { Job } from './load-generator';
import type { CpuSnapshot, Stack } from './stack';

export const PAYOUT_MINOR = 100;
/** Under the default velocity limit (PAYOUT_HOURLY_MAX_COUNT = 20 per account and hour). */
export const PAYOUTS_PER_ACCOUNT = 15;

export const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
export const round = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? null : Math.round(v * 10 ** digits) / 10 ** digits);

export function pct(share: number | null): string {
  return share === null ? '–' : `${Math.round(share * 1000) / 10} %`;
}

/**
 * Runs one load-generator process for a job and returns its JSON answer (the last line of its stdout).
 * Lines with an `event` field before it are streamed to `onEvent` as they come (the soak's windows).
 */
export function runLoadGenerator<T>(job: Job, onEvent?: (event: { event: string; [k: string]: unknown }) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/load-generator.ts'], { cwd: repoRoot, env: { ...process.env, BENCH_JOB: JSON.stringify(job) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let last = '';
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      last = line;
      if (!onEvent || !line.startsWith('{"event":')) return;
      onEvent(JSON.parse(line) as { event: string });
    });
    // 'close', not 'exit': every line of stdout has been read by then.
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(last) as T) : reject(new Error(`load generator (${job.kind}) exited ${code}`))));
  });
}

export type ProcessFigures = Record<string, { cpu_s: number; cpu_s_per_payout: number | null; rss_mib: number }>;

/** CPU seconds (and per settled saga) of each process between two snapshots, resident memory at the second. */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot, settled: number) {
  const perProcess: ProcessFigures = {};
  for (const [name, now] of Object.entries(after.services)) {
    const cpu = now.cpuSeconds - (before.services[name]?.cpuSeconds ?? 0);
    perProcess[name] = { cpu_s: round(cpu, 2)!, cpu_s_per_payout: settled ? round(cpu / settled, 4) : null, rss_mib: Math.round(now.rssBytes / 2 ** 20) };
  }
  const wallSeconds = (after.at - before.at) / 1000;
  const ours = Object.values(perProcess).reduce((a, p) => a + p.cpu_s, 0);
  const machineBusy = (after.machine.busy - before.machine.busy) / (after.machine.total - before.machine.total);
  return {
    wall_s: round(wallSeconds),
    cpu_per_process: perProcess,
    /** Share of all cores busy during the step, everyone's load included; and the part that was not ours. */
    machine_busy_share: round(machineBusy, 2),
    others_busy_cores: round(machineBusy * os.cpus().length - ours / wallSeconds, 2),
    loadavg_1m: round(os.loadavg()[0], 2),
  };
}

/** The machine and the stack a run measured, for its JSON. */
export function describeRun(stack: Stack, attached: boolean) {
  const c = stack.config;
  return {
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gib: round(os.totalmem() / 2 ** 30), node: process.version, loadavg_at_start: os.loadavg().map((v) => round(v, 2)) },
    stack: {
      started: attached ? 'attached to a running stack' : `apps/launcher/main.ts${stack.cluster ? ' --cluster' : ''} as a child process, own DATA_DIR and free ports, default settings`,
      topology: stack.cluster ? 'cluster: Temporal server on PostgreSQL (SQL visibility), 2 workers, 2 API instances' : 'development: Temporal dev server (SQLite file), 1 worker, 1 API instance',
      settings: { SAGA_SYNC_DEADLINE_MS: c.SAGA_SYNC_DEADLINE_MS, PAYOUT_RETURN_WINDOW_MS: c.PAYOUT_RETURN_WINDOW_MS, SANDBOX_CALLBACK_DELAY_MS: c.SANDBOX_CALLBACK_DELAY_MS, PG_POOL_MAX: c.PG_POOL_MAX },
      warnings_printed: stack.warnings.length,
      warnings_sample: stack.warnings.slice(0, 10),
    },
  };
}
