/**
 * The drill's three places on this machine: the provider, outside both regions (its two sandbox aggregators on a
 * PostgreSQL of their own, so they outlive region A as a real provider does); region A, the platform as
 * `npm start -- --cluster` runs it; and region B, the same program and settings on the promoted standby.
 */
import fs from 'node:fs';
import path from 'node:path';
import { launchedProcesses } from '../apps/launcher/supervisor';
import { loadConfig, repoRoot, settings } from '../lib/config';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../lib/embedded-postgres';
import { killGroup, startProcess, type ManagedProcess } from '../lib/processes';
import { sandboxBProcessEnv } from '../lib/providers';
import { freePort, freePortRange, waitUntil } from '../lib/wait';

/**
 * The addresses a region's processes listen on. Region B takes region A's once A is gone, as a floating IP or a
 * DNS failover gives a standby site the addresses clients and the provider already use; only the database differs.
 */
export interface RegionAddresses {
  env: Record<string, string>;
  apiPort: number;
  temporalAddress: string;
}

export async function chooseAddresses(): Promise<RegionAddresses> {
  const [api, metrics, health, temporal, ui] = [await freePortRange(2), await freePortRange(2), await freePortRange(3), await freePortRange(9), await freePort()];
  return {
    apiPort: api,
    temporalAddress: `127.0.0.1:${temporal}`,
    env: {
      API_PORT: String(api),
      TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
      TEMPORAL_UI_PORT: String(ui),
      WORKER_METRICS_ADDRESS: `127.0.0.1:${metrics}`,
      // The publisher's, then the two workers' (the launcher hands them out in that order).
      OUTBOX_HEALTH_ADDRESS: `127.0.0.1:${health}`,
      WORKER_HEALTH_ADDRESS: `127.0.0.1:${health + 1}`,
    },
  };
}

export interface Provider {
  /** Provider `sandbox` (every drill payout is routed there) and `sandbox-b`. */
  sandboxUrl: string;
  sandboxBUrl: string;
  /** The provider's own database: its record of every payout and collection it was asked for. */
  databaseUrl: string;
  /** What the platform's regions are told about the provider. */
  platformEnv: Record<string, string>;
  stop(): Promise<void>;
}

/** The provider: its PostgreSQL and both sandbox aggregators, calling back the API at `apiPort` (whichever region has it). */
export async function startProvider(dir: string, apiPort: number, log: (line: string) => void): Promise<Provider> {
  const [pgPort, sandboxPort, sandboxBPort] = [await freePort(), await freePort(), await freePort()];
  const postgres: EmbeddedPostgresHandle = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres'), port: pgPort, database: 'provider', log: (line) => log(`[provider-postgres] ${line}`) });
  const platformEnv = {
    SANDBOX_EMBEDDED: 'false',
    SANDBOX_PORT: String(sandboxPort),
    SANDBOX_URL: `http://127.0.0.1:${sandboxPort}`,
    SANDBOX_WEBHOOK_URL: `http://127.0.0.1:${apiPort}/v1/webhooks/sandbox`,
    SANDBOX_B_PORT: String(sandboxBPort),
    SANDBOX_B_URL: `http://127.0.0.1:${sandboxBPort}`,
    SANDBOX_B_WEBHOOK_URL: `http://127.0.0.1:${apiPort}/v1/webhooks/sandbox-b`,
  };
  const base = { ...defaultsOnly(), ...platformEnv, SANDBOX_DATABASE_URL: postgres.url };
  const processes: ManagedProcess[] = [];
  const start = (name: string, env: NodeJS.ProcessEnv) => {
    const file = fs.createWriteStream(path.join(dir, `${name}.log`), { flags: 'a' });
    processes.push(startProcess(name, process.execPath, ['--import', 'tsx', 'apps/sandbox-aggregator/main.ts'], { cwd: repoRoot, env, onLine: (line) => file.write(`${line}\n`) }));
  };
  start('sandbox-aggregator', base);
  start('sandbox-aggregator-b', { ...base, ...sandboxBProcessEnv(loadConfig(base)) });
  for (const url of [platformEnv.SANDBOX_URL, platformEnv.SANDBOX_B_URL]) {
    await waitUntil(`provider at ${url}`, async () => (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })).ok, 60_000, 200);
  }
  return {
    sandboxUrl: platformEnv.SANDBOX_URL,
    sandboxBUrl: platformEnv.SANDBOX_B_URL,
    databaseUrl: postgres.url,
    platformEnv,
    async stop() {
      await Promise.all(processes.map((p) => p.stop(10_000)));
      await postgres.stop();
    },
  };
}

/** This shell's environment without the platform's settings: every setting not named is its default. */
function defaultsOnly(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !(name in settings)));
}

/**
 * Region A lost at once: SIGKILL of its launcher first (so nothing is restarted), then of every process it
 * supervises, PostgreSQL, Temporal and its UI, workers, API instances, outbox publisher, each with its process group
 * (PostgreSQL's backends, the Temporal server's children). Answers what was killed, name → pid.
 */
export function killRegion(dataDir: string, launcherPid: number): Record<string, number> {
  const killed: Record<string, number> = {};
  const kill = (name: string, pid: number) => {
    if (killGroup(pid)) killed[name] = pid;
  };
  // Read before the launcher dies: it rewrites the file while it restarts anything.
  const supervised = launchedProcesses(dataDir);
  kill('launcher', launcherPid);
  for (const [name, pid] of Object.entries(supervised)) if (pid) kill(name, pid);
  return killed;
}

/** True once no process of `pids` is alive (a zombie, killed but not yet reaped by its new parent, is dead). */
export function allDead(pids: number[]): boolean {
  return pids.every((pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
    } catch {
      return true;
    }
  });
}

