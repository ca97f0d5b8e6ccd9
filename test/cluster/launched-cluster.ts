import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection, type Client } from '@temporalio/client';
import { checkInvariants, createLedger, type Ledger } from '../../ledger';
import { launchedProcesses } from '../../apps/launcher/supervisor';
import { DEV_JWT_SECRET, repoRoot } from '../../lib/config';
import { createPool, type Pool } from '../../lib/db';
import { createTemporalClient } from '../../lib/temporal-client';
import { signToken } from '../../lib/tokens';
import { freePort, freePortRange, sleep, waitUntil } from '../../lib/wait';
import { uniqueId } from '../support';

export interface LaunchedCluster {
  dataDir: string;
  apiUrls: string[];
  workerMetricsUrls: string[];
  temporalAddress: string;
  uiUrl: string;
  pgPort: number;
  pool: Pool;
  ledger: Ledger;
  temporal: Client;
  service: string;
  /** Everything the launcher printed so far. */
  output(): string;
  /** name → pid, as the launcher keeps it in DATA_DIR/processes.json. */
  pids(): Record<string, number | null>;
  /** Sends `signal` to one supervised process and waits until the launcher has started it again (a new pid). */
  killAndAwaitRestart(name: string, signal: NodeJS.Signals, timeoutMs?: number): Promise<{ before: number; after: number }>;
  fundedAccount(minor: number): Promise<string>;
  post(instance: number, route: '/v1/payouts' | '/v1/deposits', body: unknown, key: string): Promise<{ status: number; headers: Headers; text: string; json: any }>;
  get(instance: number, route: string, authorization?: string): Promise<any>;
  waitForStatus(route: string, statuses: string[], timeoutMs?: number): Promise<any>;
  transferKinds(column: 'payout_id' | 'deposit_id', id: string): Promise<string[]>;
  ledgerViolations(): Promise<unknown[]>;
  /** Ctrl-C as a terminal sends it; resolves with the launcher's exit code. */
  stop(): Promise<number | null>;
}

/**
 * `npm start -- --cluster` as a user runs it: the real launcher (Temporal server on the embedded PostgreSQL, its
 * UI, two workers, two API instances), on free ports and a data folder of its own, with `settings` on top.
 */
export async function launchCluster(settings: Record<string, string> = {}): Promise<LaunchedCluster> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-cluster-'));
  const [sandbox, pgPort, ui] = [await freePort(), await freePort(), await freePort()];
  const [api, metrics, health, temporal] = [await freePortRange(2), await freePortRange(2), await freePortRange(3), await freePortRange(9)];
  const launcher: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'apps/launcher/main.ts', '--cluster'], {
    cwd: repoRoot,
    detached: true, // its own process group, so the Ctrl-C of stop() reaches it as a terminal's would
    env: {
      ...process.env,
      DATABASE_URL: '',
      TEMPORAL_EMBEDDED: 'true',
      WORKER_PROCESSES: '',
      API_INSTANCES: '',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      API_PORT: String(api),
      SANDBOX_PORT: String(sandbox),
      SANDBOX_URL: `http://127.0.0.1:${sandbox}`,
      SANDBOX_WEBHOOK_URL: `http://127.0.0.1:${api}/v1/webhooks/sandbox`,
      PG_PORT: String(pgPort),
      TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
      TEMPORAL_UI_PORT: String(ui),
      WORKER_METRICS_ADDRESS: `127.0.0.1:${metrics}`,
      // The publisher's, then the two workers' (the launcher hands them out in that order).
      OUTBOX_HEALTH_ADDRESS: `127.0.0.1:${health}`,
      WORKER_HEALTH_ADDRESS: `127.0.0.1:${health + 1}`,
      ...settings,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  launcher.stdout!.on('data', (chunk) => (output += chunk));
  launcher.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
  await Promise.race([
    waitUntil('the cluster launcher', async () => output.includes('Payout platform is up'), 300_000, 250),
    exited.then((code) => {
      throw new Error(`launcher exited (${code}):\n${output}`);
    }),
  ]).catch((err) => {
    if (launcher.pid) process.kill(-launcher.pid, 'SIGKILL');
    throw err;
  });

  const pool = createPool(`postgres://postgres:postgres@127.0.0.1:${pgPort}/payouts`, 10);
  const connection = await Connection.connect({ address: `127.0.0.1:${temporal}` });
  const temporalClient = createTemporalClient(connection, 'default');
  const ledger = createLedger(pool);
  const service = `Bearer ${await signToken({ sub: 'operator-backend', role: 'service' }, DEV_JWT_SECRET)}`;
  const apiUrls = [api, api + 1].map((port) => `http://127.0.0.1:${port}`);
  const pids = () => launchedProcesses(dataDir);

  const cluster: LaunchedCluster = {
    dataDir,
    apiUrls,
    workerMetricsUrls: [metrics, metrics + 1].map((port) => `http://127.0.0.1:${port}/metrics`),
    temporalAddress: `127.0.0.1:${temporal}`,
    uiUrl: `http://127.0.0.1:${ui}`,
    pgPort,
    pool,
    ledger,
    temporal: temporalClient,
    service,
    output: () => output,
    pids,
    async killAndAwaitRestart(name, signal, timeoutMs = 120_000) {
      const before = pids()[name];
      if (!before) throw new Error(`no pid for ${name}: ${JSON.stringify(pids())}`);
      process.kill(before, signal);
      let after = before;
      await waitUntil(`${name} restarted by the launcher`, async () => {
        after = pids()[name] ?? before;
        return after !== before && output.includes(`${name} restarted (pid ${after})`);
      }, timeoutMs, 200);
      return { before, after };
    },
    async fundedAccount(minor) {
      const accountId = uniqueId('player');
      if ((await ledger.createAccount({ accountId, currency: 'EUR', kind: 'player' })).result !== 'ok') throw new Error('account not created');
      const funding = await ledger.ensureSystemAccount('operator_funding', 'EUR');
      const funded = await ledger.transfer({ idempotencyKey: `fund:${accountId}`, debitAccountId: funding.id, creditAccountId: accountId, amount: minor, currency: 'EUR' });
      if (funded.result !== 'ok') throw new Error(`funding: ${funded.result}`);
      return accountId;
    },
    async post(instance, route, body, key) {
      const res = await fetch(`${apiUrls[instance]}${route}`, { method: 'POST', headers: { authorization: service, 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, json: text ? JSON.parse(text) : undefined };
    },
    async get(instance, route, authorization = service) {
      const res = await fetch(`${apiUrls[instance]}${route}`, { headers: { authorization } });
      return { status: res.status, ...((await res.json()) as object) };
    },
    async waitForStatus(route, statuses, timeoutMs = 60_000) {
      let last: any;
      let instance = 0;
      for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(250)) {
        // Either instance answers for any saga; a restarting one is skipped.
        last = await cluster.get(instance++ % apiUrls.length, route).catch((err) => ({ error: String(err) }));
        if (statuses.includes(last.status)) return last;
      }
      throw new Error(`${route} did not reach ${statuses.join('|')} in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    },
    async transferKinds(column, id) {
      const { rows } = await pool.query<{ kind: string }>(`SELECT kind FROM ledger_transfers WHERE metadata->>'${column}' = $1 ORDER BY id`, [id]);
      return rows.map((r) => r.kind);
    },
    async ledgerViolations() {
      return (await checkInvariants(pool)).violations;
    },
    async stop() {
      await connection.close();
      await pool.end();
      if (launcher.exitCode !== null) return launcher.exitCode;
      process.kill(-launcher.pid!, 'SIGINT');
      const code = await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
  return cluster;
}
