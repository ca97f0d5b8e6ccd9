import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { DEV_JWT_SECRET } from '../../lib/config';
import { signToken } from '../../lib/tokens';
import { isPortFree, sleep, waitUntil } from '../../lib/wait';
import { ensureTemporalCli } from '../../temporal/cli';
import { TEMPORAL_SERVER_VERSION, TEMPORAL_UI_VERSION } from '../../temporal/server';
import { uniqueId } from '../support';
import { launchCluster, type LaunchedCluster } from './launched-cluster';

/**
 * The production topology as `npm start -- --cluster` runs it: the Temporal server on PostgreSQL (SQL
 * visibility), two workers, two API instances. A smoke subset of the platform's behaviour, then faults.
 */
describe('cluster mode (npm start -- --cluster)', () => {
  let cluster: LaunchedCluster;

  beforeAll(async () => {
    cluster = await launchCluster({
      // Sagas wait on the provider long enough for the faults below to land while they are in flight.
      SANDBOX_CALLBACK_DELAY_MS: '4000',
      PROVIDER_POLL_INITIAL_MS: '1000',
      PROVIDER_POLL_MAX_MS: '2000',
      PROVIDER_STUCK_AFTER_MS: '3000',
      RECONCILIATION_INTERVAL_SECONDS: '10',
      PAYOUT_HOURLY_MAX_COUNT: '1000',
    });
  }, 420_000);

  afterAll(async () => {
    if (!cluster) return;
    const ports = [cluster.pgPort, Number(cluster.temporalAddress.split(':')[1]), ...cluster.apiUrls.map((u) => Number(new URL(u).port))];
    expect(await cluster.stop()).toBe(0);
    for (const port of ports) expect(await isPortFree(port), `port ${port} released`).toBe(true);
  }, 120_000);

  const payout = (accountId: string, minor = 1_000) => ({ account_id: accountId, amount: { minor_units: minor, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-0001' } });

  it('runs the server and UI versions the pinned CLI bundles', () => {
    expect(execFileSync(ensureTemporalCli().path, ['--version'], { encoding: 'utf8' })).toContain(`Server ${TEMPORAL_SERVER_VERSION.slice(1)}, UI ${TEMPORAL_UI_VERSION.slice(1)}`);
  });

  it('runs the Temporal server on PostgreSQL and lists every instance', async () => {
    const banner = cluster.output();
    expect(banner).toMatch(/Topology\s+cluster: Temporal server on PostgreSQL, 2 worker\(s\), 2 API instance\(s\)/);
    for (const url of [...cluster.apiUrls, ...cluster.workerMetricsUrls, cluster.uiUrl]) expect(banner).toContain(url);
    expect(Object.keys(cluster.pids()).sort()).toEqual(['api', 'api-2', 'outbox-publisher', 'postgres', 'sandbox-aggregator', 'sandbox-aggregator-b', 'temporal', 'temporal-ui', 'worker', 'worker-2'].sort());
    for (const url of cluster.workerMetricsUrls) expect(await (await fetch(url)).text()).toMatch(/temporal_/);
    expect((await fetch(cluster.uiUrl)).status).toBe(200);

    // Temporal's own state is in PostgreSQL: its shards and the namespace in `temporal`, SQL visibility in `temporal_visibility`.
    const temporalDb = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${cluster.pgPort}/temporal` });
    await temporalDb.connect();
    try {
      expect((await temporalDb.query('SELECT count(*)::int AS n FROM shards')).rows[0].n).toBe(4);
      expect((await temporalDb.query("SELECT name FROM namespaces WHERE name = 'default'")).rowCount).toBe(1);
    } finally {
      await temporalDb.end();
    }
  });

  it('settles a payout and a deposit, each requested on a different API instance', async () => {
    const accountId = await cluster.fundedAccount(10_000);
    const created = await cluster.post(1, '/v1/payouts', payout(accountId, 2_500), uniqueId('wd'));
    expect(created.status).toBe(201);
    await cluster.waitForStatus(`/v1/payouts/${created.json.payout_id}`, ['SETTLED']);
    expect(await cluster.transferKinds('payout_id', created.json.payout_id)).toEqual(['hold', 'post']);

    const deposit = await cluster.post(0, '/v1/deposits', { account_id: accountId, amount: { minor_units: 4_000, currency: 'EUR' } }, uniqueId('dep'));
    expect(deposit.status).toBe(201);
    await cluster.waitForStatus(`/v1/deposits/${deposit.json.deposit_id}`, ['CREDITED']);
    expect(await cluster.transferKinds('deposit_id', deposit.json.deposit_id)).toHaveLength(1);
  });

  it('answers 40 concurrent duplicates spread over both API instances with one saga, one hold and one answer', async () => {
    const accountId = await cluster.fundedAccount(10_000);
    const key = uniqueId('storm');
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => cluster.post(i % 2, '/v1/payouts', payout(accountId, 1_200), key)));
    // One answer for all 40: 201, or 202 when the shared CI machine could not decide within the 3 s deadline.
    const statuses = new Set(answers.map((a) => a.status));
    expect(statuses.size).toBe(1);
    expect([201, 202]).toContain([...statuses][0]);
    expect(new Set(answers.map((a) => a.text)).size).toBe(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(39);
    const payoutId = resourceIdFor('po', accountId, key);
    expect(answers[0]!.json.payout_id).toBe(payoutId);
    let runs = 0;
    await waitUntil('the saga in SQL visibility', async () => {
      runs = 0;
      for await (const _ of cluster.temporal.workflow.list({ query: `WorkflowId = '${payoutId}'` })) runs++;
      return runs > 0;
    }, 10_000);
    expect(runs).toBe(1);
    await cluster.waitForStatus(`/v1/payouts/${payoutId}`, ['SETTLED']);
    expect(await cluster.transferKinds('payout_id', payoutId)).toEqual(['hold', 'post']);
  });

  it('finds a stuck payout with the staff filter on SQL visibility', async () => {
    const accountId = await cluster.fundedAccount(10_000);
    const body = { ...payout(accountId), destination: { method: 'ewallet', wallet_id: 'sandbox:stay_pending' } };
    const created = await cluster.post(0, '/v1/payouts', body, uniqueId('stuck'));
    expect(created.status).toBe(201);
    const payoutId = created.json.payout_id as string;
    const query = `PayoutStuck = true AND PayoutStatus = 'SUBMITTED' AND AccountId = '${accountId}'`;
    await waitUntil('the stuck payout in SQL visibility', async () => {
      for await (const execution of cluster.temporal.workflow.list({ query })) if (execution.workflowId === payoutId) return true;
      return false;
    }, 60_000, 500);
    const staff = `Bearer ${await signToken({ sub: 'alice', role: 'staff' }, DEV_JWT_SECRET)}`;
    const listed = await cluster.get(1, '/v1/ops/payouts?stuck=true&limit=100', staff);
    expect((listed.items as { payout_id: string }[]).map((i) => i.payout_id)).toContain(payoutId);
  });

  it('runs the reconciliation schedule', async () => {
    await waitUntil('a reconciliation run', async () => (await cluster.pool.query('SELECT 1 FROM reconciliation_runs WHERE scope IS NULL')).rowCount! > 0, 60_000, 500);
  });

  /** Payouts in flight (waiting on the provider's delayed callback) while `fault` happens; each must settle once. */
  async function payoutsThrough(fault: () => Promise<void>, count = 12): Promise<string[]> {
    const accountId = await cluster.fundedAccount(count * 1_000);
    const answers = await Promise.all(Array.from({ length: count }, (_, i) => cluster.post(i % 2, '/v1/payouts', payout(accountId, 1_000), uniqueId('fault'))));
    expect(answers.map((a) => `${a.status} ${a.json?.code ?? ''}`.trim())).toEqual(answers.map(() => '201'));
    await fault();
    for (const { json } of answers) {
      await cluster.waitForStatus(`/v1/payouts/${json.payout_id}`, ['SETTLED'], 120_000);
      expect(await cluster.transferKinds('payout_id', json.payout_id), json.payout_id).toEqual(['hold', 'post']);
    }
    const balance = await cluster.get(0, `/v1/accounts/${accountId}/balance`);
    expect(balance).toMatchObject({ posted: 0, held: 0 });
    expect(await cluster.ledgerViolations()).toEqual([]);
    return answers.map((a) => a.json.payout_id as string);
  }

  /** Who completed each workflow task of these sagas after `since` (worker identities: `<pid>@<host>`). */
  async function taskCompletersAfter(workflowIds: string[], since: number): Promise<Set<string>> {
    const identities = new Set<string>();
    for (const id of workflowIds) {
      const { events } = await cluster.temporal.workflow.getHandle(id).fetchHistory();
      for (const event of events ?? []) {
        const identity = event.workflowTaskCompletedEventAttributes?.identity;
        if (identity && Number(event.eventTime?.seconds ?? 0) * 1000 >= since) identities.add(identity);
      }
    }
    return identities;
  }

  it('finishes sagas on the other worker when one is killed, and restarts the killed one', async () => {
    const survivor = cluster.pids()['worker-2']!;
    let killedAt = 0;
    const ids = await payoutsThrough(async () => {
      killedAt = Date.now();
      await cluster.killAndAwaitRestart('worker', 'SIGKILL');
    });
    expect(cluster.output()).toMatch(/worker exited unexpectedly \(SIGKILL\)/);
    const completers = [...(await taskCompletersAfter(ids, killedAt + 1_000))];
    expect(completers.some((identity) => identity.startsWith(`${survivor}@`)), `survivor ${survivor} among ${completers.join(', ')}`).toBe(true);
  });

  it('completes every saga once when the Temporal server is killed and restarted mid-saga', async () => {
    await payoutsThrough(async () => {
      await cluster.killAndAwaitRestart('temporal', 'SIGKILL');
    });
  });

  it('completes every saga once when PostgreSQL shuts down at once and restarts mid-saga', async () => {
    await payoutsThrough(async () => {
      // SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, crash recovery at the next start.
      await cluster.killAndAwaitRestart('postgres', 'SIGQUIT');
      await sleep(500);
    });
  });
});
