/**
 * The stack the benchmark measures: the launcher itself (`npm start`'s program) as a child process with its
 * own DATA_DIR and free ports, default settings otherwise; or a stack already running (--attach).
 * Also reads CPU time per process from /proc, grouped by the launcher's services.
 */
import fs from 'node:fs';
import path from 'node:path';
import { launchedProcesses } from '../apps/launcher/supervisor';
import { type Config, databaseUrl, loadConfig, repoRoot, settings } from '../lib/config';
import { killGroup, startProcess, type ManagedProcess } from '../lib/processes';
import { ensureTemporalCli } from '../temporal/cli';
import { ensureTemporalServerTools } from '../temporal/server';
import { freePort, freePortRange } from '../lib/wait';

export interface Stack {
  /** Started with `--cluster` (the production topology). */
  cluster: boolean;
  apiUrl: string;
  /** Every API instance the launcher started (the load generator spreads requests over them, as a load balancer would). */
  apiUrls: string[];
  databaseUrl: string;
  temporalAddress: string;
  config: Config;
  launcherPid: number;
  /** Launcher output (started stacks only): warnings and errors the services printed. */
  warnings: string[];
  stop(): Promise<void>;
}

/** Starts `apps/launcher/main.ts` as `npm start` does, in `dataDir`, on free ports; resolves once it says it is up. */
export interface StackOptions {
  cluster?: boolean;
  /**
   * Rewires the stack's connections (the chaos run puts a fault-injection proxy between worker and provider and
   * between provider and API, and its receiver behind the outbox): given the ports chosen, extra settings.
   */
  wire?: (ports: { api: number; sandbox: number }) => Promise<NodeJS.ProcessEnv>;
}

/** Attempts at starting: another process may take a port between choosing it and the launcher binding it. */
const START_ATTEMPTS = 3;

export async function startStack(dataDir: string, log: (line: string) => void, opts: StackOptions = {}): Promise<Stack> {
  // Built here on a fresh machine (minutes, printed), so that the launcher's start is timed without the build.
  const say = (msg: string) => process.stderr.write(`[stack] ${msg}\n`);
  if (opts.cluster) ensureTemporalServerTools(say);
  else ensureTemporalCli(say);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(dataDir, log, opts);
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt === START_ATTEMPTS) throw err;
      log(`[stack] ${err.message}; trying again with other ports`);
    }
  }
}

class PortTaken extends Error {}

async function startStackOnce(dataDir: string, log: (line: string) => void, opts: StackOptions): Promise<Stack> {
  const [api, sandbox, sandboxB, pgPort, ui, metrics] = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  // The cluster's Temporal server takes 8 ports after its frontend's; further API instances and workers take
  // the ports after API_PORT and WORKER_METRICS_ADDRESS's, hence ranges.
  const temporal = await freePortRange(9);
  const apiBase = opts.cluster ? await freePortRange(4) : api!;
  const metricsBase = opts.cluster ? await freePortRange(4) : metrics!;
  const ports: NodeJS.ProcessEnv = {
    DATA_DIR: dataDir,
    API_PORT: String(apiBase),
    SANDBOX_PORT: String(sandbox),
    SANDBOX_URL: `http://127.0.0.1:${sandbox}`,
    SANDBOX_WEBHOOK_URL: `http://127.0.0.1:${apiBase}/v1/webhooks/sandbox`,
    SANDBOX_B_PORT: String(sandboxB),
    SANDBOX_B_URL: `http://127.0.0.1:${sandboxB}`,
    SANDBOX_B_WEBHOOK_URL: `http://127.0.0.1:${apiBase}/v1/webhooks/sandbox-b`,
    PG_PORT: String(pgPort),
    TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
    TEMPORAL_UI_PORT: String(ui),
    WORKER_METRICS_ADDRESS: `127.0.0.1:${metricsBase}`,
  };
  // Only the ports and the data folder differ from a user's `npm start`: every other setting is its default,
  // whatever this shell has set.
  Object.assign(ports, await opts.wire?.({ api: apiBase, sandbox: sandbox! }));
  const env: NodeJS.ProcessEnv = { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !(name in settings))), ...ports };
  const config = loadConfig(ports);
  const warnings: string[] = [];
  const lastLines: string[] = [];
  let up: () => void;
  const isUp = new Promise<void>((resolve) => (up = resolve));
  const launcher: ManagedProcess = startProcess('launcher', process.execPath, ['--import', 'tsx', 'apps/launcher/main.ts', ...(opts.cluster ? ['--cluster'] : [])], {
    cwd: repoRoot,
    env,
    onLine: (line) => {
      log(line);
      lastLines.push(line);
      if (lastLines.length > 20) lastLines.shift();
      if (/^\[(?!launcher)/.test(line)) warnings.push(line);
      if (line.includes('Payout platform is up')) up();
    },
  });
  try {
    await Promise.race([
      isUp,
      launcher.exited.then((code) => {
        const said = lastLines.join('\n');
        if (said.includes('is already in use')) throw new PortTaken(`the launcher found a port taken: ${said}`);
        throw new Error(`the launcher exited (${code}) before the platform was up; see ${path.join(dataDir, 'logs')}. It said last:\n${said}`);
      }),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the platform was not up within 300 s; see ${path.join(dataDir, 'logs')}`)), 300_000).unref()),
    ]);
  } catch (err) {
    await launcher.stop(60_000); // a launcher not up in time is stopped with what it started
    throw err;
  }
  return {
    cluster: opts.cluster === true,
    // From the settings the launcher got: `wire` may have chosen the ports (the disaster-recovery drill's region B takes A's).
    apiUrl: `http://127.0.0.1:${config.API_PORT}`,
    apiUrls: Array.from({ length: config.API_INSTANCES ?? (opts.cluster ? 2 : 1) }, (_, i) => `http://127.0.0.1:${config.API_PORT + i}`),
    databaseUrl: databaseUrl(config),
    temporalAddress: config.TEMPORAL_ADDRESS,
    config,
    launcherPid: launcher.child.pid!,
    warnings,
    stop: () => launcher.stop(60_000),
  };
}

/**
 * What a launcher left running when it was stopped before it was up (a run interrupted while its stack starts):
 * SIGKILL of it and of each process it started that is still running, known by the DATA_DIR in its environment (a
 * pid in the files may have been reused since).
 */
export function killLeftovers(dataDir: string): void {
  const pids: Record<string, number | null> = {};
  try {
    pids.launcher = Number(fs.readFileSync(path.join(dataDir, 'launcher.pid'), 'utf8')) || null;
    Object.assign(pids, launchedProcesses(dataDir));
  } catch {
    // no launcher, or one that had started nothing yet
  }
  const ofRegion = (pid: number) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`DATA_DIR=${dataDir}`);
    } catch {
      return false;
    }
  };
  for (const pid of Object.values(pids)) if (pid && ofRegion(pid)) killGroup(pid);
}

/** A stack started elsewhere by `npm start` with this environment's settings (its DATA_DIR names the launcher). */
export function attachStack(env: NodeJS.ProcessEnv = process.env): Stack {
  const config = loadConfig(env);
  const pidFile = path.join(config.dataDirAbsolute, 'launcher.pid');
  const launcherPid = Number(fs.readFileSync(pidFile, 'utf8'));
  return {
    cluster: false,
    apiUrl: `http://${config.API_HOST}:${config.API_PORT}`,
    apiUrls: Array.from({ length: config.API_INSTANCES ?? 1 }, (_, i) => `http://${config.API_HOST}:${config.API_PORT + i}`),
    databaseUrl: databaseUrl(config),
    temporalAddress: config.TEMPORAL_ADDRESS,
    config,
    launcherPid,
    warnings: [],
    stop: async () => undefined,
  };
}

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in seconds. */
  cpuSeconds: number;
  rssBytes: number;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux
const PAGE_BYTES = 4096;

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
    return { pid, ppid: Number(rest[1]), cpuSeconds: ticks / CLOCK_TICKS, rssBytes: Number(rest[21]) * PAGE_BYTES };
  } catch {
    return undefined; // exited meanwhile
  }
}

function allStats(): ProcStat[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((d) => readStat(Number(d)))
    .filter((s): s is ProcStat => s !== undefined);
}

function serviceOf(pid: number): string {
  let cmd = '';
  try {
    cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return 'other';
  }
  if (cmd.includes('apps/worker/main.ts')) return 'worker';
  if (cmd.includes('apps/api/main.ts')) return 'api';
  if (cmd.includes('sandbox-aggregator/main.ts')) return 'sandbox';
  if (cmd.includes('outbox-publisher/main.ts')) return 'outbox-publisher';
  if (cmd.includes('temporal-ui-server')) return 'temporal-ui';
  if (cmd.includes('start-dev') || cmd.includes('temporal-server')) return 'temporal';
  if (/postgres/.test(cmd)) return 'postgres';
  return 'other';
}

export interface CpuSnapshot {
  at: number;
  /** CPU seconds per service (each with all its descendants), and resident memory. */
  services: Record<string, { cpuSeconds: number; rssBytes: number }>;
  /** /proc/stat: busy and total jiffies of the whole machine (other users' load included). */
  machine: { busy: number; total: number };
}

/** CPU time of the launcher's services (each direct child with all its descendants) and of extra named processes. */
export function cpuSnapshot(launcherPid: number, extra: Record<string, number> = {}): CpuSnapshot {
  const stats = allStats();
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const subtree = (pid: number): ProcStat[] => {
    const self = stats.find((s) => s.pid === pid);
    return [...(self ? [self] : []), ...(children.get(pid) ?? []).flatMap((c) => subtree(c.pid))];
  };
  const services: CpuSnapshot['services'] = {};
  const add = (name: string, procs: ProcStat[]) => {
    const entry = (services[name] ??= { cpuSeconds: 0, rssBytes: 0 });
    for (const p of procs) {
      entry.cpuSeconds += p.cpuSeconds;
      entry.rssBytes += p.rssBytes;
    }
  };
  const launcher = stats.find((s) => s.pid === launcherPid);
  if (launcher) add('launcher', [launcher]);
  for (const child of children.get(launcherPid) ?? []) add(serviceOf(child.pid), subtree(child.pid));
  for (const [name, pid] of Object.entries(extra)) add(name, subtree(pid));
  const [, ...fields] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const jiffies = fields.map(Number);
  const idle = jiffies[3]! + (jiffies[4] ?? 0);
  const total = jiffies.slice(0, 8).reduce((a, b) => a + b, 0);
  return { at: Date.now(), services, machine: { busy: total - idle, total } };
}
