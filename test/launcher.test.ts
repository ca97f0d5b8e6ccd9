import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { launchedProcesses } from '../apps/launcher/supervisor';
import { DEV_JWT_SECRET, repoRoot } from '../lib/config';
import { signToken } from '../lib/tokens';
import { freePort, isPortFree, waitUntil } from '../lib/wait';
import { ensureTemporalCli } from '../temporal/cli';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../temporal/search-attributes';

/** `npm start` as a user runs it: the real launcher with its own ports and data folder. */
describe('launcher (npm start)', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-launcher-'));
  let launcher: ChildProcess | undefined;
  let ports: Record<string, number>;
  let output = '';

  afterAll(async () => {
    if (launcher?.pid && launcher.exitCode === null) {
      process.kill(-launcher.pid, 'SIGINT');
      await new Promise((resolve) => launcher!.once('exit', resolve));
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(): Promise<string> {
    ports ??= { api: await freePort(), sandbox: await freePort(), sandboxB: await freePort(), pg: await freePort(), temporal: await freePort(), ui: await freePort(), workerMetrics: await freePort(), workerHealth: await freePort(), outboxHealth: await freePort() };
    output = '';
    launcher = spawn(process.execPath, ['--import', 'tsx', 'apps/launcher/main.ts'], {
      cwd: repoRoot,
      detached: true, // own process group, so "Ctrl-C" below reaches it the way a terminal's would
      env: {
        ...process.env,
        DATABASE_URL: '',
        TEMPORAL_EMBEDDED: 'true',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'info',
        API_PORT: String(ports.api),
        SANDBOX_PORT: String(ports.sandbox),
        SANDBOX_URL: `http://127.0.0.1:${ports.sandbox}`,
        SANDBOX_WEBHOOK_URL: `http://127.0.0.1:${ports.api}/v1/webhooks/sandbox`,
        SANDBOX_B_PORT: String(ports.sandboxB),
        SANDBOX_B_URL: `http://127.0.0.1:${ports.sandboxB}`,
        SANDBOX_B_WEBHOOK_URL: `http://127.0.0.1:${ports.api}/v1/webhooks/sandbox-b`,
        PG_PORT: String(ports.pg),
        TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
        TEMPORAL_UI_PORT: String(ports.ui),
        WORKER_METRICS_ADDRESS: `127.0.0.1:${ports.workerMetrics}`,
        WORKER_HEALTH_ADDRESS: `127.0.0.1:${ports.workerHealth}`,
        OUTBOX_HEALTH_ADDRESS: `127.0.0.1:${ports.outboxHealth}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    launcher.stdout!.on('data', (chunk) => (output += chunk));
    launcher.stderr!.on('data', (chunk) => (output += chunk));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`launcher not up in 150s:\n${output}`)), 150_000);
      const onData = () => {
        if (output.includes('Payout platform is up')) {
          clearTimeout(timer);
          resolve();
        }
      };
      launcher!.stdout!.on('data', onData);
      launcher!.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`launcher exited (${code}):\n${output}`));
      });
    });
    return /worker self-check passed \(workflow ([^)]+)\)/.exec(output)![1]!;
  }

  async function ctrlC(): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => launcher!.once('exit', (code) => resolve(code)));
    process.kill(-launcher!.pid!, 'SIGINT');
    return exited;
  }

  it('brings everything up, prints where it is, and stops cleanly on Ctrl-C', async () => {
    const firstCheck = await start();
    for (const url of [`http://127.0.0.1:${ports.api}`, `http://127.0.0.1:${ports.api}/docs`, `http://127.0.0.1:${ports.ui}`]) expect(output).toContain(url);

    const health = await fetch(`http://127.0.0.1:${ports.api}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ checks: { postgres: { status: 'up' }, temporal: { status: 'up' } } });
    expect((await fetch(`http://127.0.0.1:${ports.ui}/`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.sandbox}/health`)).status).toBe(200);
    // Both providers run, each its own process, and the banner says where and what each takes.
    expect(await (await fetch(`http://127.0.0.1:${ports.sandboxB}/health`)).json()).toMatchObject({ methods: ['card', 'ewallet'], currencies: ['EUR', 'GBP', 'USD'] });
    expect(output).toMatch(new RegExp(`Provider sandbox-b\\s+http://127.0.0.1:${ports.sandboxB} \\(card, ewallet\\)`));
    expect(output).toContain('Payout routes');
    const workerMetrics = await (await fetch(`http://127.0.0.1:${ports.workerMetrics}/metrics`)).text();
    expect(workerMetrics).toMatch(/temporal_/); // the Temporal SDK's own worker metrics
    // Each process's readiness, where the banner says it is.
    for (const url of [`http://127.0.0.1:${ports.api}/health/ready`, `http://127.0.0.1:${ports.workerHealth}/health/ready`, `http://127.0.0.1:${ports.outboxHealth}/health/ready`]) {
      expect(output).toContain(url.replace(`:${ports.api}/health/ready`, `:${ports.api}/health`));
      expect((await fetch(url)).status, url).toBe(200);
    }

    // The launcher supervises: a killed worker and a killed sandbox are started again, and the payout below
    // runs through them.
    const pids = launchedProcesses(dataDir);
    for (const name of ['worker', 'sandbox-aggregator']) process.kill(pids[name]!, 'SIGKILL');
    await waitUntil('worker and sandbox restarted', async () => /worker restarted \(pid \d+\)/.test(output) && /sandbox-aggregator restarted \(pid \d+\)/.test(output), 60_000);
    expect(output).toMatch(/worker exited unexpectedly \(SIGKILL\)/);

    const attributes = execFileSync(ensureTemporalCli().path, ['operator', 'search-attribute', 'list', '--address', `127.0.0.1:${ports.temporal}`], { encoding: 'utf8' });
    for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) expect(attributes).toMatch(new RegExp(`${name}\\s+${type}`));

    // A deposit and a payout to an IBAN through the launched processes: the logs never hold the IBAN or the
    // token, and the payout's log lines carry its idempotency key and trace id.
    const api = `http://127.0.0.1:${ports.api}`;
    const token = await signToken({ sub: 'backend', role: 'service' }, DEV_JWT_SECRET);
    const headers = (key?: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) });
    const iban = 'DE89370400440532013000';
    await fetch(`${api}/v1/accounts`, { method: 'POST', headers: headers(), body: JSON.stringify({ account_id: 'player-launch', currency: 'EUR' }) });
    await fetch(`${api}/v1/deposits`, { method: 'POST', headers: headers('dep-launch'), body: JSON.stringify({ account_id: 'player-launch', amount: { minor_units: 5_000, currency: 'EUR' } }) });
    await waitUntil('deposit credited', async () => ((await (await fetch(`${api}/v1/accounts/player-launch/balance`, { headers: headers() })).json()) as { posted: number }).posted === 5_000, 30_000);
    const payout = await fetch(`${api}/v1/payouts`, { method: 'POST', headers: headers('wd-launch'), body: JSON.stringify({ account_id: 'player-launch', amount: { minor_units: 2_000, currency: 'EUR' }, destination: { method: 'bank_transfer', iban } }) });
    expect(payout.status).toBe(201);
    const { payout_id } = (await payout.json()) as { payout_id: string };
    await waitUntil('payout settled', async () => ((await (await fetch(`${api}/v1/payouts/${payout_id}`, { headers: headers() })).json()) as { status: string }).status === 'SETTLED', 30_000);
    // An e-wallet payout goes to the other provider, sandbox-b (default routes), and settles there.
    const wallet = await fetch(`${api}/v1/payouts`, { method: 'POST', headers: headers('wd-launch-wallet'), body: JSON.stringify({ account_id: 'player-launch', amount: { minor_units: 1_000, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-launch' } }) });
    const walletId = ((await wallet.json()) as { payout_id: string }).payout_id;
    await waitUntil('e-wallet payout settled', async () => ((await (await fetch(`${api}/v1/payouts/${walletId}`, { headers: headers() })).json()) as { status: string }).status === 'SETTLED', 30_000);
    expect(((await (await fetch(`${api}/v1/payouts/${walletId}`, { headers: headers() })).json()) as { provider: string }).provider).toBe('sandbox-b');
    expect(((await (await fetch(`${api}/v1/payouts/${payout_id}`, { headers: headers() })).json()) as { provider: string }).provider).toBe('sandbox');
    const logs = fs.readdirSync(path.join(dataDir, 'logs')).map((f) => fs.readFileSync(path.join(dataDir, 'logs', f), 'utf8')).join('\n');
    expect(logs).not.toContain(iban);
    expect(logs).not.toContain(token);
    const requestLine = fs.readFileSync(path.join(dataDir, 'logs', 'api.log'), 'utf8').split('\n').find((line) => line.includes('"payout requested"'));
    expect(JSON.parse(requestLine!)).toMatchObject({ idempotencyKey: 'wd-launch', workflowId: payout_id, trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });

    expect(await ctrlC()).toBe(0);
    for (const port of Object.values(ports)) expect(await isPortFree(port), `port ${port} released`).toBe(true);

    // Second start: Postgres data and Temporal history from the first run are still there.
    const secondCheck = await start();
    expect(secondCheck).not.toBe(firstCheck);
    const db = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${ports.pg}/payouts` });
    await db.connect();
    const { rows } = await db.query('SELECT check_id FROM platform_self_checks ORDER BY checked_at');
    await db.end();
    expect(rows.map((r) => r.check_id)).toEqual([firstCheck, secondCheck]);

    const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    const description = await new Client({ connection }).workflow.getHandle(firstCheck).describe();
    await connection.close();
    expect(description.status.name).toBe('COMPLETED');

    // A second launcher on the same folder refuses to start and touches nothing.
    const second = spawn(process.execPath, ['--import', 'tsx', 'apps/launcher/main.ts'], { cwd: repoRoot, env: { ...process.env, DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let secondOutput = '';
    second.stdout.on('data', (c) => (secondOutput += c));
    const secondCode = await new Promise((resolve) => second.once('exit', resolve));
    expect(secondCode).toBe(1);
    expect(secondOutput).toMatch(/already running from this folder/);

    expect(await ctrlC()).toBe(0);
  });

  it('names the setting when a port is already taken', async () => {
    const blocker = await import('node:net').then((net) => net.createServer().listen(0, '127.0.0.1'));
    await new Promise((resolve) => blocker.once('listening', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'apps/launcher/main.ts'], {
          cwd: repoRoot,
          env: { ...process.env, DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'payout-launcher-busy-')), API_PORT: String(port) },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (c) => (out += c));
        child.once('exit', (code) => resolve({ code, out }));
      });
      expect(result.code).toBe(1);
      expect(result.out).toContain(`port ${port} (API_PORT) is already in use`);
    } finally {
      blocker.close();
    }
  });
});
