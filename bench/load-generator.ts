/**
 * The benchmark's load generator: a process of its own, started by bench/payouts.ts once per step.
 * Open loop: request i leaves at t0 + i / rate whatever the earlier ones do (nothing awaits a previous
 * request), so a slow system sees its queue grow instead of a politely slower client.
 *
 * One JSON job in BENCH_JOB (see `Job`), one JSON result as the last line of stdout.
 *   setup     creates and funds accounts through the API (deposits paid at the sandbox checkout), open loop;
 *             also the deposit ladder's step (fresh accounts, one deposit each)
 *   platform  POST /v1/payouts at the step's rate; settlement read from the `payouts` read model
 *   reference the bare-SDK saga (bench/reference) started by update-with-start at the same rate
 *   soak      POST /v1/payouts at one rate for many windows; streams one `{"event":"window",...}` line per
 *             window as it closes (after a `{"event":"started"}` line), then all windows again after the drain
 *   overload  an idle baseline (single payouts), then POST /v1/payouts far above what the stack sustains while
 *             staff endpoints are probed, then single payouts again until one is answered at idle latency;
 *             checks from outside that every refused request wrote nothing
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import pg from 'pg';
import { sleep } from '../lib/wait';
import { decisionUpdate, type referenceSaga } from './reference/workflow';
import { resourceIdFor } from '../apps/api/sagas/idempotency';

export interface StackAddresses {
  /** One or more API instances: requests go to each in turn, as through a round-robin load balancer. */
  apiUrls: string[];
  databaseUrl: string;
  temporalAddress: string;
  namespace: string;
  token: string;
}

export type Job =
  | (StackAddresses & { kind: 'setup'; runId: string; accounts: number; depositMinor: number; depositRate: number; drainTimeoutMs: number; requireAll: boolean })
  | (StackAddresses & { kind: 'platform'; rate: number; seconds: number; accounts: string[]; firstAccount: number; payoutMinor: number; syncDeadlineMs: number; drainTimeoutMs: number; historySamples: number })
  | (StackAddresses & { kind: 'reference'; rate: number; seconds: number; taskQueue: string; syncDeadlineMs: number; drainTimeoutMs: number; historySamples: number })
  | (StackAddresses & { kind: 'overload'; rate: number; seconds: number; accounts: string[]; payoutMinor: number; syncDeadlineMs: number; drainTimeoutMs: number; staffToken: string; idleSamples: number; recoverySeconds: number })
  | (StackAddresses & { kind: 'soak'; rate: number; windows: number; perWindow: number; accounts: string[]; payoutMinor: number; syncDeadlineMs: number; windowGraceMs: number; drainTimeoutMs: number });

/** One request of a step: when it left, how it was answered, and when (if) it settled. */
interface Sample {
  sentAt: number;
  lateMs: number;
  acceptMs?: number;
  status: number | 'error';
  /** The API answered, but the client's next step (the player paying at the checkout) failed. */
  failedAfterAnswer?: boolean;
  id?: string;
  doneAt?: number;
  outcome?: string;
  /** Problem code and Retry-After of a refusal; the request's account and key (to check it wrote nothing). */
  code?: string;
  retryAfter?: string | null;
  accountId?: string;
  key?: string;
}

const job = JSON.parse(process.env.BENCH_JOB ?? '{}') as Job;
const say = (msg: string) => process.stderr.write(`[load] ${msg}\n`);
const PAYOUT_FINAL_STATES = ['SETTLED', 'FAILED', 'DECLINED', 'CANCELLED', 'RETURNED'];

/**
 * Fires `send(i)` at t0 + i/rate for `count` requests without awaiting any of them; resolves when all answered.
 * Samples are appended to `samples` as they leave, so a caller can watch them live.
 */
async function openLoop(rate: number, count: number, send: (i: number, sample: Sample) => Promise<void>, samples: Sample[] = []): Promise<Sample[]> {
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now() + 100;
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const sample: Sample = { sentAt: Date.now(), lateMs: Math.max(0, performance.now() - due), status: 'error' };
    samples.push(sample);
    const started = performance.now();
    inFlight.push(
      send(i, sample)
        .catch(() => {
          // A failure after the API answered (e.g. paying at the checkout) keeps the API's status.
          if (sample.status === 'error') return;
          sample.failedAfterAnswer = true;
        })
        .finally(() => {
          sample.acceptMs ??= performance.now() - started;
        }),
    );
  }
  await Promise.all(inFlight);
  return samples;
}

let nextApi = 0;
function api(path: string, init: { method?: string; body?: unknown; key?: string } = {}): Promise<Response> {
  const apiUrl = job.apiUrls[nextApi++ % job.apiUrls.length]!;
  const headers: Record<string, string> = { authorization: `Bearer ${job.token}` };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  if (init.key) headers['idempotency-key'] = init.key;
  return fetch(`${apiUrl}${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), signal: AbortSignal.timeout(60_000) });
}

/** Reads the read model once for the ids not yet final; fills doneAt/outcome of those now final. Answers how many are still open. */
async function readFinalStates(db: pg.Pool, table: 'payouts' | 'deposits', samples: Sample[], finalStates: string[], doneState: string): Promise<number> {
  const idColumn = table === 'payouts' ? 'payout_id' : 'deposit_id';
  const open = samples.filter((s) => s.id && !s.outcome);
  if (open.length === 0) return 0;
  const { rows } = await db.query<{ id: string; status: string; at: string }>(
    `SELECT ${idColumn} AS id, status, (extract(epoch FROM updated_at) * 1000)::float8 AS at FROM ${table} WHERE ${idColumn} = ANY($1) AND status = ANY($2)`,
    [open.map((s) => s.id), finalStates],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const s of open) {
    const row = byId.get(s.id!);
    if (!row) continue;
    s.outcome = row.status;
    if (row.status === doneState) s.doneAt = Number(row.at);
  }
  return open.length - rows.length;
}

/** Polls the read model until every id is in a final state (or the timeout); fills doneAt/outcome. */
async function drainReadModel(db: pg.Pool, table: 'payouts' | 'deposits', samples: Sample[], finalStates: string[], doneState: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await readFinalStates(db, table, samples, finalStates, doneState)) > 0 && Date.now() <= deadline) await sleep(1_000);
}

/** Events and workflow tasks in the histories of a few settled sagas. */
async function historyShape(client: Client, ids: string[]) {
  const shapes = await Promise.all(
    ids.map(async (id) => {
      const history = await client.workflow.getHandle(id).fetchHistory();
      const events = history.events ?? [];
      const type = (e: (typeof events)[number]) => String(e.eventType);
      return {
        events: events.length,
        workflowTasks: events.filter((e) => type(e) === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED' || type(e) === '7' || e.workflowTaskCompletedEventAttributes).length,
        workflowTaskFailures: events.filter((e) => e.workflowTaskFailedEventAttributes || e.workflowTaskTimedOutEventAttributes).length,
      };
    }),
  );
  const mean = (k: 'events' | 'workflowTasks' | 'workflowTaskFailures') => (shapes.length ? shapes.reduce((a, s) => a + s[k], 0) / shapes.length : null);
  return { sampled: shapes.length, events_per_saga: mean('events'), workflow_tasks_per_saga: mean('workflowTasks'), workflow_task_failures_per_saga: mean('workflowTaskFailures') };
}

function pick<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  return Array.from({ length: n }, (_, k) => items[Math.floor(((k + 0.5) * items.length) / n)]!);
}

async function setup(j: Extract<Job, { kind: 'setup' }>) {
  const db = new pg.Pool({ connectionString: j.databaseUrl, max: 2 });
  const accounts = Array.from({ length: j.accounts }, (_, i) => `bench-${j.runId}-${i}`);
  // Accounts: a few at a time (not measured).
  for (let i = 0; i < accounts.length; i += 8) {
    await Promise.all(
      accounts.slice(i, i + 8).map(async (accountId) => {
        const res = await api('/v1/accounts', { method: 'POST', body: { account_id: accountId, currency: 'EUR' } });
        if (res.status !== 201 && res.status !== 200) throw new Error(`create account ${accountId}: ${res.status} ${await res.text()}`);
      }),
    );
  }
  say(`${accounts.length} accounts created; funding them with deposits at ${j.depositRate}/s`);
  // Deposits, open loop: each paid at the sandbox checkout as soon as its checkout_url is known.
  const samples = await openLoop(j.depositRate, accounts.length, async (i, sample) => {
    const started = performance.now();
    const res = await api('/v1/deposits', { method: 'POST', key: `bench-fund-${accounts[i]}`, body: { account_id: accounts[i], amount: { minor_units: j.depositMinor, currency: 'EUR' } } });
    sample.status = res.status;
    const body = (await res.json()) as { deposit_id?: string; checkout_url?: string };
    sample.id = body.deposit_id;
    sample.acceptMs = performance.now() - started; // the API's answer; paying at the checkout is the player's part
    if (!sample.id) return;
    let checkoutUrl = body.checkout_url;
    for (let tries = 0; !checkoutUrl && tries < 120; tries++) {
      await sleep(500);
      const { rows } = await db.query<{ checkout_url: string | null }>('SELECT checkout_url FROM deposits WHERE deposit_id = $1', [sample.id]);
      checkoutUrl = rows[0]?.checkout_url ?? undefined;
    }
    if (!checkoutUrl) throw new Error(`deposit ${sample.id} got no checkout_url`);
    const url = new URL(checkoutUrl);
    const paid = await fetch(`${url.origin}${url.pathname}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'succeed', secret: url.searchParams.get('secret') }) });
    if (!paid.ok) throw new Error(`checkout ${sample.id}: ${paid.status} ${await paid.text()}`);
  });
  await drainReadModel(db, 'deposits', samples, ['CREDITED', 'FAILED'], 'CREDITED', j.drainTimeoutMs);
  await db.end();
  const credited = samples.filter((s) => s.doneAt).length;
  if (j.requireAll && credited < accounts.length) throw new Error(`only ${credited} of ${accounts.length} deposits credited`);
  return { accounts, deposits: summarize(samples, j.depositRate, accounts.length / j.depositRate, 3_000, 201) };
}

/** One payout request, each with its own Idempotency-Key. */
async function postPayout(accountId: string, minorUnits: number, sample: Sample): Promise<void> {
  const key = randomUUID();
  Object.assign(sample, { accountId, key });
  const res = await api('/v1/payouts', {
    method: 'POST',
    key,
    body: { account_id: accountId, amount: { minor_units: minorUnits, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-bench' } },
  });
  sample.status = res.status;
  sample.retryAfter = res.headers.get('retry-after');
  const body = (await res.json().catch(() => ({}))) as { payout_id?: string; code?: string };
  sample.id = body.payout_id;
  sample.code = body.code;
}

async function platformStep(j: Extract<Job, { kind: 'platform' }>) {
  const db = new pg.Pool({ connectionString: j.databaseUrl, max: 2 });
  const samples = await openLoop(j.rate, Math.round(j.rate * j.seconds), (i, sample) => postPayout(j.accounts[(j.firstAccount + i) % j.accounts.length]!, j.payoutMinor, sample));
  say(`platform ${j.rate}/s: all answered; waiting for settlement`);
  await drainReadModel(db, 'payouts', samples, PAYOUT_FINAL_STATES, 'SETTLED', j.drainTimeoutMs);
  await db.end();
  const connection = await Connection.connect({ address: j.temporalAddress });
  const history = await historyShape(new Client({ connection, namespace: j.namespace }), pick(samples.filter((s) => s.doneAt).map((s) => s.id!), j.historySamples));
  await connection.close();
  return { ...summarize(samples, j.rate, j.seconds, j.syncDeadlineMs, 201), history };
}

async function referenceStep(j: Extract<Job, { kind: 'reference' }>) {
  const connection = await Connection.connect({ address: j.temporalAddress });
  const client = new Client({ connection, namespace: j.namespace });
  const results: Promise<void>[] = [];
  const samples = await openLoop(j.rate, Math.round(j.rate * j.seconds), async (_i, sample) => {
    const workflowId = `ref-${randomUUID()}`;
    const start = new WithStartWorkflowOperation<typeof referenceSaga>('referenceSaga', { workflowId, taskQueue: j.taskQueue, workflowIdConflictPolicy: 'FAIL' });
    await client.workflow.executeUpdateWithStart(decisionUpdate, { startWorkflowOperation: start });
    // The platform answers 201 when decided within the sync deadline, 202 after: the same rule here.
    sample.status = Date.now() - sample.sentAt <= j.syncDeadlineMs ? 201 : 202;
    sample.id = workflowId;
    results.push(
      (async () => {
        const handle = await start.workflowHandle();
        const settledAt = await Promise.race([handle.result(), sleep(j.seconds * 1000 + j.drainTimeoutMs).then(() => undefined)]);
        if (settledAt !== undefined) {
          sample.doneAt = settledAt;
          sample.outcome = 'SETTLED';
        }
      })().catch(() => undefined),
    );
  });
  say(`reference ${j.rate}/s: all answered; waiting for completion`);
  await Promise.all(results);
  const history = await historyShape(client, pick(samples.filter((s) => s.doneAt).map((s) => s.id!), j.historySamples));
  await connection.close();
  return { ...summarize(samples, j.rate, j.seconds, j.syncDeadlineMs, 201), history };
}

/** Counters of every API instance's /metrics, summed: webhook answers by status, and the webhook limit's refusals. */
async function webhookCounters(): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const apiUrl of job.apiUrls) {
    const text = await (await fetch(`${apiUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const answer = /^http_request_duration_seconds_count\{(?=[^}]*route="\/v1\/webhooks\/:provider")(?=[^}]*status="(\d+)")[^}]*\} (\d+)/.exec(line);
      if (answer) totals[`webhook_${answer[1]}`] = (totals[`webhook_${answer[1]}`] ?? 0) + Number(answer[2]);
      const limited = /^rate_limit_requests_total\{(?=[^}]*limit="webhook")(?=[^}]*outcome="limited")[^}]*\} (\d+)/.exec(line);
      if (limited) totals.webhook_rate_limited = (totals.webhook_rate_limited ?? 0) + Number(limited[1]);
    }
  }
  return totals;
}

/** Single payouts one at a time, `spacingMs` apart; each answer's latency. */
async function singlePayouts(count: number, spacingMs: number, accounts: string[], minor: number, until?: (ms: number) => boolean): Promise<{ at_s: number; ms: number; status: number | 'error' }[]> {
  const out: { at_s: number; ms: number; status: number | 'error' }[] = [];
  const t0 = Date.now();
  for (let i = 0; i < count; i++) {
    const sample: Sample = { sentAt: Date.now(), lateMs: 0, status: 'error' };
    const started = performance.now();
    await postPayout(accounts[i % accounts.length]!, minor, sample).catch(() => undefined);
    const ms = performance.now() - started;
    out.push({ at_s: Math.round((sample.sentAt - t0) / 100) / 10, ms: Math.round(ms), status: sample.status });
    if (until?.(ms) && sample.status === 201) break;
    await sleep(Math.max(0, spacingMs - ms));
  }
  return out;
}

/**
 * The overload run (issue: back-pressure): far more payouts than the stack sustains, open loop. What must
 * hold: no 5xx, every answer within a second, the admitted ones fast and all settled, the excess refused
 * (429 with Retry-After) having written nothing, provider webhooks all taken, staff endpoints fast, and
 * the first single payout after the load answered at idle latency again.
 */
async function overload(j: Extract<Job, { kind: 'overload' }>) {
  const db = new pg.Pool({ connectionString: j.databaseUrl, max: 4 });
  const [idleAccounts, loadAccounts] = [j.accounts.slice(0, 4), j.accounts.slice(4)];
  const idle = await singlePayouts(j.idleSamples, 1_000, idleAccounts, j.payoutMinor);
  const idleP50 = quantiles(idle.map((s) => s.ms)).p50!;
  say(`overload: idle single payout p50 ${idleP50} ms; now ${j.rate}/s for ${j.seconds} s`);

  const webhooksBefore = await webhookCounters();
  let probing = true;
  const staffProbes: number[] = [];
  const staffStatuses: Record<string, number> = {};
  const prober = (async () => {
    while (probing) {
      const started = performance.now();
      const res = await fetch(`${job.apiUrls[staffProbes.length % job.apiUrls.length]}/v1/ops/payouts?limit=20`, { headers: { authorization: `Bearer ${j.staffToken}` } }).catch(() => undefined);
      await res?.text();
      staffProbes.push(performance.now() - started);
      staffStatuses[String(res?.status ?? 'error')] = (staffStatuses[String(res?.status ?? 'error')] ?? 0) + 1;
      await sleep(500);
    }
  })();
  const samples = await openLoop(j.rate, Math.round(j.rate * j.seconds), (i, sample) => postPayout(loadAccounts[i % loadAccounts.length]!, j.payoutMinor, sample));
  const loadStoppedAt = Date.now();
  probing = false;
  await prober;
  // Recovery: single payouts every 500 ms until one is answered at idle latency (within 1.5× the idle p50, or +25 ms).
  const atIdle = (ms: number) => ms <= Math.max(1.5 * idleP50, idleP50 + 25);
  const recoveryStartedAt = Date.now();
  const recovery = await singlePayouts(Math.round(j.recoverySeconds * 2), 500, idleAccounts, j.payoutMinor, atIdle);
  const firstAtIdle = recovery.find((r) => r.status === 201 && atIdle(r.ms));
  const afterLoad = (r: { at_s: number; ms: number }) => Math.round((recoveryStartedAt - loadStoppedAt + r.at_s * 1000 + r.ms) / 100) / 10;

  say(`overload: all answered; waiting for the admitted payouts to settle`);
  await drainReadModel(db, 'payouts', samples, PAYOUT_FINAL_STATES, 'SETTLED', j.drainTimeoutMs);
  // Webhooks of the admitted payouts arrive after the load (the sandbox calls back after its delay).
  await sleep(3_000);
  const webhooksAfter = await webhookCounters();

  // The refused requests, checked from outside: no idempotency record, no read-model row, no saga, no ledger movement.
  const refused = samples.filter((s) => s.status === 429);
  const keys = refused.map((s) => s.key!);
  const records = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_records WHERE idempotency_key = ANY($1)', [keys])).rows[0]!.n;
  const resourceIds = refused.map((s) => resourceIdFor('po', s.accountId!, s.key!));
  const rows = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM payouts WHERE payout_id = ANY($1)', [resourceIds])).rows[0]!.n;
  const moves = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ledger_transfers WHERE metadata->>'payout_id' = ANY($1)", [resourceIds])).rows[0]!.n;
  const connection = await Connection.connect({ address: j.temporalAddress });
  const client = new Client({ connection, namespace: j.namespace });
  let sagas = 0;
  const checked = pick(resourceIds, 300);
  for (let i = 0; i < checked.length; i += 10) {
    await Promise.all(
      checked.slice(i, i + 10).map((id) =>
        client.workflow
          .getHandle(id)
          .describe()
          .then(() => (sagas += 1))
          .catch(() => undefined),
      ),
    );
  }
  const history = await historyShape(client, pick(samples.filter((s) => s.doneAt).map((s) => s.id!), 5));
  await connection.close();
  await db.end();

  const admitted = samples.filter((s) => s.status === 201 || s.status === 202);
  const codes: Record<string, number> = {};
  for (const s of samples) if (s.code) codes[s.code] = (codes[s.code] ?? 0) + 1;
  const delta = (k: string) => (webhooksAfter[k] ?? 0) - (webhooksBefore[k] ?? 0);
  return {
    ...summarize(samples, j.rate, j.seconds, j.syncDeadlineMs, 201),
    history,
    codes,
    server_errors: samples.filter((s) => typeof s.status === 'number' && s.status >= 500).length,
    transport_errors: samples.filter((s) => s.status === 'error').length,
    answer_ms_max: Math.round(Math.max(0, ...samples.map((s) => s.acceptMs ?? Infinity))),
    answered_within_1s_share: samples.filter((s) => (s.acceptMs ?? Infinity) <= 1_000).length / samples.length,
    admitted: { requests: admitted.length, per_s: admitted.length / j.seconds, accept_ms: quantiles(admitted.map((s) => s.acceptMs!)), settled: admitted.filter((s) => s.outcome === 'SETTLED').length, not_final: admitted.filter((s) => !s.outcome).length },
    refused: {
      requests: refused.length,
      accept_ms: quantiles(refused.map((s) => s.acceptMs!)),
      with_retry_after: refused.filter((s) => s.retryAfter && Number(s.retryAfter) >= 1).length,
      idempotency_records: records,
      read_model_rows: rows,
      ledger_transfers: moves,
      sagas_found: sagas,
      sagas_checked: checked.length,
    },
    webhooks: { answered_by_status: Object.fromEntries(Object.keys(webhooksAfter).filter((k) => k.startsWith('webhook_') && k !== 'webhook_rate_limited').map((k) => [k.slice(8), delta(k)])), rate_limited: delta('webhook_rate_limited') },
    staff_probe: { requests: staffProbes.length, statuses: staffStatuses, ms: quantiles(staffProbes) },
    idle_before: { samples: idle, p50_ms: idleP50 },
    // Seconds from the last request of the load to the answer of the first single payout at idle latency.
    recovery: { samples: recovery, first_at_idle_after_s: firstAtIdle ? afterLoad(firstAtIdle) : null },
    per_second: perSecond(samples),
  };
}

/**
 * The soak: one open loop at a fixed rate for `windows` × `perWindow` payouts, accounts taken in turn (so each
 * account's payouts are evenly spaced, under the hourly velocity limit). Settlements are read from the read
 * model every second meanwhile, so a window's figures are known as it closes: its line is written once all
 * its requests are answered and its payouts final, or `windowGraceMs` after it closed (`outcomes.open` says
 * how many were not). After the last window, a drain; then every window again, computed with the drain's
 * answers, in the result.
 */
async function soak(j: Extract<Job, { kind: 'soak' }>) {
  const db = new pg.Pool({ connectionString: j.databaseUrl, max: 2 });
  const samples: Sample[] = [];
  const windowMs = (j.perWindow / j.rate) * 1000;
  let sending = true;
  const tracking = (async () => {
    while (sending) {
      await readFinalStates(db, 'payouts', samples, PAYOUT_FINAL_STATES, 'SETTLED').catch((err) => say(`read model: ${String(err)}`));
      await sleep(1_000);
    }
  })();
  const sent = openLoop(j.rate, j.windows * j.perWindow, (i, sample) => postPayout(j.accounts[i % j.accounts.length]!, j.payoutMinor, sample), samples);
  while (samples.length === 0) await sleep(5);
  // Windows are counted from the first request: window k holds requests k·perWindow … (k+1)·perWindow − 1.
  const t0 = samples[0]!.sentAt;
  const emit = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
  emit({ event: 'started', t0, window_ms: windowMs });
  const windowFigures = (k: number) => {
    const start = t0 + k * windowMs;
    return {
      window: k + 1,
      from_min: Math.round((k * windowMs) / 600) / 100,
      to_min: Math.round(((k + 1) * windowMs) / 600) / 100,
      ...summarize(samples.slice(k * j.perWindow, (k + 1) * j.perWindow), j.rate, windowMs / 1000, j.syncDeadlineMs, 201, { start, pool: samples }),
    };
  };
  for (let k = 0; k < j.windows; k++) {
    const closesAt = t0 + (k + 1) * windowMs;
    await sleep(Math.max(0, closesAt - Date.now()));
    const done = () => {
      const mine = samples.slice(k * j.perWindow, (k + 1) * j.perWindow);
      return mine.length === j.perWindow && mine.every((s) => s.acceptMs !== undefined && (!s.id || s.outcome));
    };
    while (!done() && Date.now() < closesAt + j.windowGraceMs) await sleep(250);
    emit({ event: 'window', ...windowFigures(k) });
  }
  await sent;
  sending = false;
  await tracking;
  say(`soak: all ${samples.length} answered; draining`);
  await drainReadModel(db, 'payouts', samples, PAYOUT_FINAL_STATES, 'SETTLED', j.drainTimeoutMs);
  const reconciliations = await reconciliationRuns(db, t0);
  await db.end();
  return {
    windows: Array.from({ length: j.windows }, (_, k) => windowFigures(k)),
    per_minute: perMinute(samples, t0),
    reconciliation_runs: reconciliations,
    totals: summarize(samples, j.rate, (j.windows * windowMs) / 1000, j.syncDeadlineMs, 201),
    not_final_after_drain: samples.filter((s) => s.id && !s.outcome).length,
    without_payout_id: samples.filter((s) => !s.id).length,
  };
}

/** Per second of sending: requests, how they were answered, and the admitted ones' accept p99 (the overload chart). */
function perSecond(samples: Sample[]) {
  const t0 = samples[0]?.sentAt ?? 0;
  const seconds: Sample[][] = [];
  for (const s of samples) (seconds[Math.floor((s.sentAt - t0) / 1000)] ??= []).push(s);
  return Array.from(seconds, (sec, k) => {
    const all = sec ?? [];
    const admitted = all.filter((s) => s.status === 201 || s.status === 202);
    return { second: k, requests: all.length, admitted: admitted.length, refused: all.filter((s) => s.status === 429).length, other: all.length - admitted.length - all.filter((s) => s.status === 429).length, admitted_accept_p99_ms: quantiles(admitted.map((s) => s.acceptMs!)).p99, refused_accept_p99_ms: quantiles(all.filter((s) => s.status === 429).map((s) => s.acceptMs!)).p99 };
  });
}

/** Accept latency per minute of sending, to place a slow stretch in time (a window's p99 hides when it was). */
function perMinute(samples: Sample[], t0: number) {
  const minutes: Sample[][] = [];
  for (const s of samples) (minutes[Math.floor((s.sentAt - t0) / 60_000)] ??= []).push(s);
  return Array.from(minutes, (m, k) => ({ minute: k + 1, requests: m?.length ?? 0, accept_ms: quantiles((m ?? []).flatMap((s) => (s.acceptMs === undefined ? [] : [s.acceptMs]))) }));
}

/** The reconciliation schedule's runs during the soak, in minutes since its first request, with what each covered. */
async function reconciliationRuns(db: pg.Pool, t0: number) {
  const { rows } = await db.query<{ started_at: Date; finished_at: Date; provider_items: number; ledger_movements: number; looked_up: number }>(
    `SELECT started_at, finished_at, provider_items, ledger_movements, looked_up FROM reconciliation_runs WHERE finished_at >= $1 ORDER BY started_at`,
    [new Date(t0)],
  );
  const minute = (d: Date) => Math.round((d.getTime() - t0) / 600) / 100;
  return rows.map((r) => ({ started_min: minute(r.started_at), finished_min: minute(r.finished_at), seconds: (r.finished_at.getTime() - r.started_at.getTime()) / 1000, provider_items: r.provider_items, ledger_movements: r.ledger_movements, looked_up: r.looked_up }));
}

function quantiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const q = (p: number) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!) : null);
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: sorted.length ? Math.round(sorted.at(-1)!) : null };
}

/**
 * Figures of one step. Settled per second is sustained throughput: settlements (of any request of the step)
 * that happened inside the step's sending window, over that window's length. For a soak window, `window`
 * names where it starts and the requests whose settlements count (every one of the run: earlier windows'
 * payouts settle in it too); latency and outcomes stay those of the window's own requests.
 */
function summarize(samples: Sample[], rate: number, seconds: number, syncDeadlineMs: number, decidedStatus: number, window?: { start: number; pool: Sample[] }) {
  const statuses: Record<string, number> = {};
  for (const s of samples) statuses[String(s.status)] = (statuses[String(s.status)] ?? 0) + 1;
  const windowStart = window?.start ?? samples[0]?.sentAt ?? 0;
  const windowEnd = windowStart + seconds * 1000;
  const settledInWindow = (window?.pool ?? samples).filter((s) => s.doneAt !== undefined && s.doneAt >= windowStart && s.doneAt < windowEnd).length;
  const settled = samples.filter((s) => s.doneAt !== undefined);
  const answered = samples.filter((s) => s.acceptMs !== undefined);
  return {
    offered_per_s: rate,
    requests: samples.length,
    statuses,
    failed_after_answer: samples.filter((s) => s.failedAfterAnswer).length,
    decided_in_time_share: samples.length ? samples.filter((s) => s.status === decidedStatus && (s.acceptMs ?? Infinity) <= syncDeadlineMs).length / samples.length : null,
    accept_ms: quantiles(answered.map((s) => s.acceptMs!)),
    send_lateness_ms_max: Math.round(Math.max(0, ...samples.map((s) => s.lateMs))),
    settled: settled.length,
    not_settled: samples.filter((s) => s.id && s.doneAt === undefined).length,
    outcomes: Object.fromEntries([...new Set(samples.map((s) => s.outcome ?? 'open'))].map((o) => [o, samples.filter((s) => (s.outcome ?? 'open') === o).length])),
    settled_in_window: settledInWindow,
    settled_per_s: settledInWindow / seconds,
    settled_per_s_until_drained: settled.length ? settled.length / ((Math.max(...settled.map((s) => s.doneAt!)) - windowStart) / 1000) : 0,
    request_to_settled_ms: quantiles(settled.map((s) => s.doneAt! - s.sentAt)),
  };
}

const run = { setup, platform: platformStep, reference: referenceStep, soak, overload }[job.kind] as (j: Job) => Promise<unknown>;
const cpuBefore = process.cpuUsage();
const result = await run(job);
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(`${JSON.stringify({ ...(result as object), load_generator_cpu_s: (cpu.user + cpu.system) / 1e6 })}\n`);
process.exit(0);
