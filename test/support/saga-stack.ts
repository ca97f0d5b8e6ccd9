import { spawn, type ChildProcess } from 'node:child_process';
import { recordContractViolation } from './response-contract';
import type { AddressInfo } from 'node:net';
import { createTemporalClient } from '../../lib/temporal-client';
import type { FastifyInstance } from 'fastify';
import { Client, Connection } from '@temporalio/client';
import { expect } from 'vitest';
import { createApiApp } from '../../apps/api/app';
import { createSandboxAggregator } from '../../apps/sandbox-aggregator/server';
import { sandboxSchema } from './sandbox';
import { checkInvariants, createLedger, type Ledger } from '../../ledger';
import { repoRoot, type Config } from '../../lib/config';
import { createPool, type Pool } from '../../lib/db';
import { createLogger } from '../../lib/logger';
import { signToken } from '../../lib/tokens';
import { freePort, sleep } from '../../lib/wait';
import { startTestWorker, testConfig, uniqueId } from './index';

/** Saga timings shrunk so that every branch (polling, stuck marker, return window) runs in seconds. */
export const FAST_SAGA_SETTINGS: Record<string, string> = {
  SAGA_SYNC_DEADLINE_MS: '8000',
  PAYOUT_SUBMIT_DELAY_MS: '0',
  PROVIDER_POLL_INITIAL_MS: '400',
  PROVIDER_POLL_MAX_MS: '1500',
  PROVIDER_STUCK_AFTER_MS: '2000',
  PAYOUT_RETURN_WINDOW_MS: '1500',
  PAYOUT_MAX_AMOUNT: '10000000',
  PAYOUT_DAILY_MAX_AMOUNT: '1000000000',
  PAYOUT_HOURLY_MAX_COUNT: '100000',
  SANDBOX_WEBHOOK_SECRET: 'saga-tests-webhook-secret-0123',
  SANDBOX_B_WEBHOOK_SECRET: 'saga-tests-webhook-secret-b-456',
  // Suites not about routing pay out through one provider; the provider suites set the default routes.
  PAYOUT_ROUTES: '* -> sandbox',
  // The suites share two cores, so a decision here is slow for reasons other than this stack's own load:
  // at the default target (150 ms) the admission gate would refuse a few concurrent payouts of a suite that
  // is not about admission. The gate is steered at the sync deadline; the admission suites set their own.
  ADMISSION_LATENCY_TARGET_MS: '8000',
};

export interface SagaStack {
  config: Config;
  pool: Pool;
  ledger: Ledger;
  temporal: Client;
  apiUrl: string;
  sandboxUrl: string;
  sandbox: FastifyInstance;
  /** The second provider, `sandbox-b`. */
  sandboxBUrl: string;
  sandboxB: FastifyInstance;
  service: string;
  /** Authorization header of a player token for this account. */
  playerAuth(accountId: string): Promise<string>;
  /** A new player account funded with `minor` from the operator's funding account. */
  fundedAccount(minor: number, currency?: string): Promise<string>;
  postPayout(body: unknown, key: string | undefined, authorization?: string): Promise<{ status: number; headers: Headers; text: string; json: any }>;
  getPayout(payoutId: string, authorization?: string): Promise<any>;
  waitForStatus(payoutId: string, statuses: string[], timeoutMs?: number): Promise<any>;
  transfersOf(payoutId: string): Promise<{ kind: string; amount: number }[]>;
  postDeposit(body: unknown, key: string | undefined, authorization?: string): Promise<{ status: number; headers: Headers; text: string; json: any }>;
  getDeposit(depositId: string, authorization?: string): Promise<any>;
  waitForDepositStatus(depositId: string, statuses: string[], timeoutMs?: number): Promise<any>;
  /** Ledger transfers of a deposit saga (metadata deposit_id), oldest first. */
  depositTransfersOf(depositId: string): Promise<{ kind: string; amount: number; idempotency_key: string; debit_account_id: string; credit_account_id: string }[]>;
  /** Scripts the sandbox's outcome for a reference (PUT /sandbox/scenarios/:reference), before or after submission. */
  scriptSandbox(reference: string, scenario: Record<string, unknown>, provider?: 'sandbox' | 'sandbox-b'): Promise<void>;
  assertLedgerClean(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The platform as it runs: the real API listening on a loopback port, the sandbox aggregator over HTTP
 * calling back the API's webhook endpoint, and a real worker, on the test run's PostgreSQL and Temporal.
 */
export async function startSagaStack(overrides: Record<string, string> = {}, opts: { worker?: boolean } = {}): Promise<SagaStack> {
  const settings = { ...FAST_SAGA_SETTINGS, ...overrides };
  let config = testConfig(settings);
  const pool = createPool(config.DATABASE_URL!, 20);
  const ledger = createLedger(pool);
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const temporal = createTemporalClient(connection, config.TEMPORAL_NAMESPACE);

  // The API first (the sandbox needs its webhook URL), then the sandbox, then the worker (needs the sandbox URL).
  const taskQueue = uniqueId('payouts');
  config = { ...config, TEMPORAL_TASK_QUEUE: taskQueue };
  const api = await createApiApp({ config, pool, temporal, logger: createLogger('api-test', 'silent'), onResponseContractViolation: recordContractViolation });
  await api.listen({ port: 0, host: '127.0.0.1' });
  const apiUrl = `http://127.0.0.1:${(api.getHttpServer().address() as AddressInfo).port}`;

  const sandbox = await createSandboxAggregator({
    logger: createLogger('sandbox-test', 'silent'),
    databaseUrl: config.DATABASE_URL!,
    schema: sandboxSchema(),
    webhookSecret: config.SANDBOX_WEBHOOK_SECRET,
    webhookUrl: `${apiUrl}/v1/webhooks/sandbox`,
    callbackDelayMs: 50,
    webhookRetry: { attempts: 6, baseDelayMs: 100 },
    apiToken: config.SANDBOX_API_TOKEN,
  });
  await sandbox.listen({ port: 0, host: '127.0.0.1' });
  const sandboxUrl = `http://127.0.0.1:${(sandbox.server.address() as AddressInfo).port}`;
  const sandboxB = await createSandboxAggregator({
    logger: createLogger('sandbox-b-test', 'silent'),
    databaseUrl: config.DATABASE_URL!,
    schema: sandboxSchema(),
    webhookSecret: config.SANDBOX_B_WEBHOOK_SECRET,
    webhookUrl: `${apiUrl}/v1/webhooks/sandbox-b`,
    callbackDelayMs: 50,
    webhookRetry: { attempts: 6, baseDelayMs: 100 },
    supportedMethods: config.SANDBOX_B_METHODS,
    supportedCurrencies: config.SANDBOX_B_CURRENCIES,
    ...(config.SANDBOX_B_API_TOKEN ? { apiToken: config.SANDBOX_B_API_TOKEN } : {}),
  });
  await sandboxB.listen({ port: 0, host: '127.0.0.1' });
  const sandboxBUrl = `http://127.0.0.1:${(sandboxB.server.address() as AddressInfo).port}`;
  config = { ...config, SANDBOX_URL: sandboxUrl, SANDBOX_B_URL: sandboxBUrl };
  const worker = opts.worker === false ? undefined : await startTestWorker(pool, taskQueue, config);

  const service = `Bearer ${await signToken({ sub: 'operator-backend', role: 'service' }, config.AUTH_JWT_SECRET)}`;

  /** A money-moving POST as a client sends it; the body text is kept to compare replays byte for byte. */
  async function postJson(path: string, body: unknown, key: string | undefined, authorization: string) {
    const headers: Record<string, string> = { authorization, 'content-type': 'application/json' };
    if (key !== undefined) headers['idempotency-key'] = key;
    const res = await fetch(`${apiUrl}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json: json as any };
  }
  async function getJson(path: string, authorization: string) {
    const res = await fetch(`${apiUrl}${path}`, { headers: { authorization } });
    return { status: res.status, ...((await res.json()) as object) } as any;
  }
  async function waitForStatus(read: () => Promise<any>, what: string, statuses: string[], timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = await read();
      if (statuses.includes(last.status)) return last;
      await sleep(150);
    }
    throw new Error(`${what} did not reach ${statuses.join('|')} in ${timeoutMs}ms; last: ${JSON.stringify(last)}`);
  }

  const stack: SagaStack = {
    config,
    pool,
    ledger,
    temporal,
    apiUrl,
    sandboxUrl,
    sandbox,
    sandboxBUrl,
    sandboxB,
    service,
    playerAuth: async (accountId) => `Bearer ${await signToken({ sub: accountId, role: 'player' }, config.AUTH_JWT_SECRET)}`,
    async fundedAccount(minor, currency = 'EUR') {
      const accountId = uniqueId('player');
      const created = await ledger.createAccount({ accountId, currency, kind: 'player' });
      expect(created.result).toBe('ok');
      if (minor > 0) {
        const funding = await ledger.ensureSystemAccount('operator_funding', currency);
        const funded = await ledger.transfer({ idempotencyKey: `fund:${accountId}`, debitAccountId: funding.id, creditAccountId: accountId, amount: minor, currency });
        expect(funded.result).toBe('ok');
      }
      return accountId;
    },
    postPayout: (body, key, authorization = service) => postJson('/v1/payouts', body, key, authorization),
    getPayout: (payoutId, authorization = service) => getJson(`/v1/payouts/${payoutId}`, authorization),
    waitForStatus: (payoutId, statuses, timeoutMs) => waitForStatus(() => stack.getPayout(payoutId), `payout ${payoutId}`, statuses, timeoutMs),
    async transfersOf(payoutId) {
      const { rows } = await pool.query<{ kind: string; amount: number }>(
        "SELECT kind, amount FROM ledger_transfers WHERE metadata->>'payout_id' = $1 ORDER BY id",
        [payoutId],
      );
      return rows;
    },
    postDeposit: (body, key, authorization = service) => postJson('/v1/deposits', body, key, authorization),
    getDeposit: (depositId, authorization = service) => getJson(`/v1/deposits/${depositId}`, authorization),
    waitForDepositStatus: (depositId, statuses, timeoutMs) => waitForStatus(() => stack.getDeposit(depositId), `deposit ${depositId}`, statuses, timeoutMs),
    async depositTransfersOf(depositId) {
      const { rows } = await pool.query<{ kind: string; amount: number; idempotency_key: string; debit_account_id: string; credit_account_id: string }>(
        "SELECT kind, amount, idempotency_key, debit_account_id, credit_account_id FROM ledger_transfers WHERE metadata->>'deposit_id' = $1 ORDER BY id",
        [depositId],
      );
      return rows;
    },
    async scriptSandbox(reference, scenario, provider = 'sandbox') {
      const res = await fetch(`${provider === 'sandbox' ? sandboxUrl : sandboxBUrl}/sandbox/scenarios/${encodeURIComponent(reference)}`, { method: 'PUT', headers: { 'content-type': 'application/json', ...(config.SANDBOX_API_TOKEN ? { authorization: `Bearer ${config.SANDBOX_API_TOKEN}` } : {}) }, body: JSON.stringify(scenario) });
      expect(res.status).toBe(200);
    },
    async assertLedgerClean() {
      const report = await checkInvariants(pool);
      expect(report.violations).toEqual([]);
    },
    async close() {
      await worker?.stop();
      await sandbox.close();
      await sandboxB.close();
      await api.close();
      await connection.close();
      await pool.end();
    },
  };
  return stack;
}

/** A payout request body. */
export function payoutRequest(accountId: string, minor: number, walletId = 'wallet-0001', currency = 'EUR') {
  return { account_id: accountId, amount: { minor_units: minor, currency }, destination: { method: 'ewallet', wallet_id: walletId } };
}

/** A deposit request body. */
export function depositRequest(accountId: string, minor: number, currency = 'EUR') {
  return { account_id: accountId, amount: { minor_units: minor, currency } };
}

/**
 * The worker as a real separate process (apps/worker/main.ts) on the stack's task queue, as the launcher runs
 * it: for tests that kill it, or read its logs and metrics. `ready` resolves at its "worker ready" line.
 */
export async function spawnWorkerProcess(stack: SagaStack, env: Record<string, string> = {}): Promise<{ child: ChildProcess; ready: Promise<void>; metricsUrl: string; output: () => string }> {
  const metricsPort = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/worker/main.ts'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...FAST_SAGA_SETTINGS,
      LOG_LEVEL: 'info',
      DATABASE_URL: stack.config.DATABASE_URL,
      TEMPORAL_ADDRESS: stack.config.TEMPORAL_ADDRESS,
      TEMPORAL_NAMESPACE: stack.config.TEMPORAL_NAMESPACE,
      TEMPORAL_TASK_QUEUE: stack.config.TEMPORAL_TASK_QUEUE,
      SANDBOX_URL: stack.sandboxUrl,
      SANDBOX_B_URL: stack.sandboxBUrl,
      SANDBOX_B_WEBHOOK_SECRET: stack.config.SANDBOX_B_WEBHOOK_SECRET,
      PAYOUT_ROUTES: stack.config.PAYOUT_ROUTES.map((r) => r.text).join('; '),
      WORKER_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
      // Any free port: tests run workers side by side.
      WORKER_HEALTH_ADDRESS: '127.0.0.1:0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      output += chunk;
      if (output.includes('"msg":"worker ready"')) resolve();
    });
    child.stderr!.on('data', (chunk) => (output += chunk));
    child.once('exit', (code) => reject(new Error(`worker exited (${code}) before ready:\n${output}`)));
  });
  return { child, ready, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, output: () => output };
}
