import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEV_JWT_SECRET, repoRoot } from '../../lib/config';
import type { ManagedProcess } from '../../lib/processes';
import { signToken } from '../../lib/tokens';
import { freePort, waitUntil } from '../../lib/wait';
import { scratchDatabase, uniqueId } from '../support';
import { FAST_SAGA_SETTINGS } from '../support/saga-stack';
import { startEntryPoint, waitForHealth } from '../health/support';
import { sourceOfBuiltEntry } from './build-output';

/**
 * The production build (`npm run build`) run as production runs it: the compiled migrate step, sandbox,
 * worker and API started with plain `node <file>.js` (no tsx, no loader), on a database of their own and
 * the test run's Temporal. A payout goes through them end to end.
 */
describe('production build (tsc into dist/, plain node)', () => {
  // Inside the repository, as dist/ is: node_modules and package.json are found by walking up from it.
  const outDir = path.join(repoRoot, '.cache', `build-test-${randomBytes(4).toString('hex')}`);
  const built = (entry: string) => path.join(outDir, entry);
  let database: Awaited<ReturnType<typeof scratchDatabase>>;
  const processes: ManagedProcess[] = [];
  const output: string[] = [];

  beforeAll(async () => {
    execFileSync(process.execPath, ['scripts/build.mjs', '--out-dir', path.relative(repoRoot, outDir)], { cwd: repoRoot, stdio: 'pipe' });
    database = await scratchDatabase('build_test');
  });
  afterAll(async () => {
    for (const proc of processes.reverse()) await proc.stop(15_000);
    await database?.drop();
    fs.rmSync(outDir, { recursive: true, force: true });
  });

  it('emits every entry point the Dockerfile, compose and the manifests run, with .js relative imports only', () => {
    for (const entry of ['apps/api/main.js', 'apps/worker/main.js', 'apps/outbox-publisher/main.js', 'apps/sandbox-aggregator/main.js', 'scripts/migrate.js', 'workflows/index.js']) {
      expect(fs.existsSync(built(entry)), entry).toBe(true);
    }
    const app = fs.readFileSync(built('apps/api/main.js'), 'utf8');
    expect(app).toContain("from './app.js'");
    expect(app).not.toMatch(/from '\.\.?\/[^']*(?<!\.js)'/);
  });

  it('is what the Dockerfile builds and runs: npm ci and npm run build in one stage, npm ci --omit=dev and dist/ as user node in the next', () => {
    const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages).toHaveLength(2);
    const [build, runtime] = stages as [string, string];
    expect(build).toMatch(/^RUN npm ci\b(?!.*--omit)/m);
    expect(build).toMatch(/^RUN npm run build$/m);
    expect(runtime).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtime).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    expect(runtime).toMatch(/^COPY migrations \.\/migrations$/m);
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime).not.toContain('tsx');
    const cmd = JSON.parse(/^CMD (.+)$/m.exec(runtime)![1]!) as string[];
    expect(cmd[0]).toBe('node');
    expect(sourceOfBuiltEntry(cmd[1]!)).toBe('apps/api/main.ts');
  });

  it('runs the migrations, then the API, worker and sandbox with plain node: ready, and a payout settles through them', async () => {
    const [apiPort, sandboxPort, healthPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...FAST_SAGA_SETTINGS,
      // Nothing may load TypeScript for them: no tsx, no loader passed on from the test runner.
      NODE_OPTIONS: '',
      DATABASE_URL: database.url,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: inject('temporalNamespace'),
      TEMPORAL_TASK_QUEUE: uniqueId('build-tq'),
      API_PORT: String(apiPort),
      SANDBOX_PORT: String(sandboxPort),
      SANDBOX_URL: `http://127.0.0.1:${sandboxPort}`,
      SANDBOX_WEBHOOK_URL: `http://127.0.0.1:${apiPort}/v1/webhooks/sandbox`,
      SANDBOX_CALLBACK_DELAY_MS: '200',
      WORKER_HEALTH_ADDRESS: `127.0.0.1:${healthPort}`,
      WORKER_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
    };
    const migrate = startEntryPoint('migrate', built('scripts/migrate.js'), env, output);
    expect(await migrate.exited, output.join('\n')).toBe(0);
    expect(output.join('\n')).toMatch(/applied: 0001/);

    const start = (name: string, entry: string) => {
      const proc = startEntryPoint(name, built(entry), env, output);
      processes.push(proc);
      expect(proc.child.spawnargs.slice(1)).toEqual([built(entry)]);
      return proc;
    };
    start('sandbox', 'apps/sandbox-aggregator/main.js');
    start('worker', 'apps/worker/main.js');
    start('api', 'apps/api/main.js');
    const failWithOutput = (err: Error) => {
      throw new Error(`${err.message}\n${output.slice(-40).join('\n')}`);
    };
    await waitForHealth(`http://127.0.0.1:${sandboxPort}/health`, 200).catch(failWithOutput);
    const workerReady = await waitForHealth(`http://127.0.0.1:${healthPort}/health/ready`, 200).catch(failWithOutput);
    expect(workerReady.body.checks).toMatchObject({ polling: { status: 'up' }, postgres: { status: 'up' } });
    const apiReady = await waitForHealth(`http://127.0.0.1:${apiPort}/health/ready`, 200).catch(failWithOutput);
    expect(apiReady.body).toMatchObject({ status: 'ok', checks: { postgres: { status: 'up' }, temporal: { status: 'up' } } });

    // As the launcher test does it: an account, a deposit the sandbox confirms, then a payout to an IBAN.
    const api = `http://127.0.0.1:${apiPort}`;
    const token = await signToken({ sub: 'backend', role: 'service' }, DEV_JWT_SECRET);
    const headers = (key?: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) });
    const accountId = uniqueId('player-build');
    expect((await fetch(`${api}/v1/accounts`, { method: 'POST', headers: headers(), body: JSON.stringify({ account_id: accountId, currency: 'EUR' }) })).status).toBe(201);
    const deposit = await fetch(`${api}/v1/deposits`, { method: 'POST', headers: headers(uniqueId('dep')), body: JSON.stringify({ account_id: accountId, amount: { minor_units: 5_000, currency: 'EUR' } }) });
    expect(deposit.status, await deposit.clone().text()).toBeLessThan(300);
    const balance = async () => (await (await fetch(`${api}/v1/accounts/${accountId}/balance`, { headers: headers() })).json()) as { posted: number; available: number };
    await waitUntil('deposit credited', async () => (await balance()).posted === 5_000, 30_000);
    const payout = await fetch(`${api}/v1/payouts`, {
      method: 'POST',
      headers: headers(uniqueId('wd')),
      body: JSON.stringify({ account_id: accountId, amount: { minor_units: 2_000, currency: 'EUR' }, destination: { method: 'bank_transfer', iban: 'DE89370400440532013000' } }),
    });
    expect(payout.status, await payout.clone().text()).toBe(201);
    const { payout_id } = (await payout.json()) as { payout_id: string };
    const status = async () => ((await (await fetch(`${api}/v1/payouts/${payout_id}`, { headers: headers() })).json()) as { status: string }).status;
    await waitUntil('payout settled', async () => (await status()) === 'SETTLED', 30_000).catch(async (err: Error) => failWithOutput(new Error(`${err.message} (status ${await status()})`)));
    expect(await balance()).toMatchObject({ posted: 3_000, available: 3_000 });
  });
});
