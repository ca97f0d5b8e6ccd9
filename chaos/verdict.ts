/**
 * The chaos run's verdict, computed from outside once the platform has settled: what the clients were told,
 * against the platform's read model and ledger, the sandbox's own record of what it was asked to pay, and what
 * the outbox delivered to the run's receiver. Every difference is a failure naming the id and what differs.
 */
import { spawnSync } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import type pg from 'pg';
import { DEFAULT_SANDBOX_SCHEMA } from '../apps/sandbox-aggregator/database';
import { RECONCILIATION_SCHEDULE_ID } from '../temporal/schedules';
import { repoRoot } from '../lib/config';
import { sleep } from '../lib/wait';
import type { Request } from './workload';

export interface Failure {
  check: string;
  id: string;
  detail: string;
}

/** Ledger movements each final payout state implies, in order. */
const PAYOUT_MOVEMENTS: Record<string, string[]> = {
  SETTLED: ['hold', 'post'],
  FAILED: ['hold', 'void'],
  CANCELLED: ['hold', 'void'],
  RETURNED: ['hold', 'post', 'refund'],
  DECLINED: [],
};
const PAYOUT_FINAL = new Set(['FAILED', 'DECLINED', 'CANCELLED', 'RETURNED']);

/** The state a request should end in, given what the clients were told. */
export function expectedState(request: Request): string {
  return request.cancel?.status === 200 ? 'CANCELLED' : request.expected;
}

function accepted(request: Request): boolean {
  return request.answer?.status === 201 || request.answer?.status === 202;
}

/** Accepted requests not yet where they will stay (a payout expected RETURNED passes through SETTLED). */
export async function stillOpen(db: pg.Pool, requests: Request[]): Promise<Request[]> {
  const acceptedRequests = requests.filter(accepted);
  const states = await currentStates(db, acceptedRequests);
  return acceptedRequests.filter((r) => {
    const state = states.get(r.id);
    if (!state) return true;
    if (r.kind === 'deposit') return state !== 'CREDITED' && state !== 'FAILED';
    return state !== expectedState(r) && !PAYOUT_FINAL.has(state);
  });
}

async function currentStates(db: pg.Pool, requests: Request[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ id: string; status: string }>(
    'SELECT payout_id AS id, status FROM payouts WHERE payout_id = ANY($1) UNION ALL SELECT deposit_id, status FROM deposits WHERE deposit_id = ANY($1)',
    [requests.map((r) => r.id)],
  );
  return new Map(rows.map((row) => [row.id, row.status]));
}

export interface Balances {
  /** What each account's ledger balance is, from the platform's API. */
  balance(accountId: string): Promise<{ available: number; held: number; posted: number }>;
  /** What each account was funded with before the run (credited deposits). */
  funded: Map<string, number>;
}

/**
 * Every request that got 201/202 has exactly one saga's worth of effects and the final state its scenario
 * implies; no payout reached the provider twice; the ledger moved exactly what the final states imply.
 */
export async function checkMoney(db: pg.Pool, requests: Request[], balances: Balances, provider: pg.Pool = db): Promise<{ failures: Failure[]; outcomes: Record<string, Record<string, number>> }> {
  const failures: Failure[] = [];
  const fail = (check: string, id: string, detail: string) => failures.push({ check, id, detail });
  const outcomes: Record<string, Record<string, number>> = {};
  const ids = requests.map((r) => r.id);
  const accounts = [...new Set(requests.map((r) => r.accountId))];

  const states = await currentStates(db, requests);
  const movements = await db.query<{ id: string; kinds: string[]; amounts: string[] }>(
    `SELECT coalesce(metadata->>'payout_id', metadata->>'deposit_id') AS id, array_agg(kind ORDER BY id) AS kinds, array_agg(amount::text ORDER BY id) AS amounts
     FROM ledger_transfers WHERE coalesce(metadata->>'payout_id', metadata->>'deposit_id') = ANY($1) GROUP BY 1`,
    [ids],
  );
  const movedBy = new Map(movements.rows.map((row) => [row.id, row]));
  // The sandbox's own record: what it was asked to pay or collect, by the platform's id (its reference).
  const submissions = await provider.query<{ reference: string; n: number; amounts: string[]; currencies: string[] }>(
    `SELECT p.id AS reference, count(r.*)::int AS n, array_agg(r.object->'amount'->>'minor_units') AS amounts, array_agg(r.object->'amount'->>'currency') AS currencies
     FROM unnest($1::text[]) AS p(id) JOIN ${DEFAULT_SANDBOX_SCHEMA}.resources r ON r.reference = p.id OR r.reference LIKE p.id || ':%'
     GROUP BY p.id`,
    [ids],
  );
  const submittedFor = new Map(submissions.rows.map((row) => [row.reference, row]));

  for (const request of requests) {
    const state = states.get(request.id);
    const label = `${request.kind}/${request.scenario}`;
    const outcome = state ?? (accepted(request) ? 'LOST' : `not accepted (${request.answer?.code ?? request.answer?.status ?? 'no answer'})`);
    const byOutcome = (outcomes[label] ??= {});
    byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
    if (accepted(request) && !state) {
      fail('lost', request.id, `answered ${request.answer!.status} but the platform has no such ${request.kind}`);
      continue;
    }
    if (!state) continue; // refused before anything was written (e.g. 429, 422), and nothing was
    const moved = movedBy.get(request.id);
    const kinds = moved?.kinds ?? [];
    const submitted = submittedFor.get(request.id);
    if (submitted && submitted.n > 1) fail('submitted twice', request.id, `${submitted.n} provider submissions on the sandbox's record`);
    if (submitted && submitted.amounts.some((a, i) => Number(a) !== request.amountMinor || submitted.currencies[i] !== 'EUR')) {
      fail('provider record differs', request.id, `the sandbox holds ${submitted.amounts.join(', ')} ${submitted.currencies.join(', ')}; the client asked ${request.amountMinor} EUR`);
    }
    if (request.kind === 'payout') {
      const want = accepted(request) ? expectedState(request) : state;
      const wantMoves = PAYOUT_MOVEMENTS[state];
      if (!wantMoves) fail('final state', request.id, `${label}: not final (${state}), expected ${want}`);
      else if (state !== want) fail('final state', request.id, `${label}: ${state}, expected ${want}`);
      if (!wantMoves) {
        // Not final: its movements so far are not judged.
      } else if (kinds.join(',') !== wantMoves.join(',')) fail('ledger movements', request.id, `${state} with ledger movements [${kinds.join(', ')}], expected [${wantMoves.join(', ')}]`);
      if (moved?.amounts.some((a) => Number(a) !== request.amountMinor)) fail('ledger amount', request.id, `movements of ${moved.amounts.join(', ')}; the client asked ${request.amountMinor}`);
      const providerDecided = state === 'SETTLED' || state === 'RETURNED' || (state === 'FAILED' && request.scenario !== 'reject');
      if (providerDecided && !submitted) fail('not submitted', request.id, `${state} without a provider submission on the sandbox's record`);
    } else {
      if (accepted(request) && state !== request.expected) fail('final state', request.id, `${label}: ${state}, expected ${request.expected}`);
      const wantMoves = state === 'CREDITED' ? ['transfer'] : [];
      if (kinds.join(',') !== wantMoves.join(',')) fail('ledger movements', request.id, `${state} with ledger movements [${kinds.join(', ')}], expected [${wantMoves.join(', ')}]`);
    }
  }

  // Balances: what each account was funded with, plus the deposits credited, minus the payouts that stayed paid.
  for (const accountId of accounts) {
    let expected = balances.funded.get(accountId) ?? 0;
    for (const r of requests.filter((q) => q.accountId === accountId)) {
      const state = states.get(r.id);
      if (r.kind === 'deposit' && state === 'CREDITED') expected += r.amountMinor;
      if (r.kind === 'payout' && state === 'SETTLED') expected -= r.amountMinor;
    }
    const balance = await balances.balance(accountId);
    if (balance.held !== 0 || balance.posted !== expected) fail('balance', accountId, `posted ${balance.posted}, held ${balance.held}; the final states imply posted ${expected}, held 0`);
  }
  return { failures, outcomes };
}

export interface ReceivedEvent {
  eventId: string;
  arrival: number;
  /** The delivered event as the receiver parsed it. */
  payload: Record<string, unknown>;
}

/**
 * Every ledger transfer of the run has its outbox event, and the receiver got each one, in each account's order.
 * `orderFrom`: only arrivals from that index on are held to the database's order (the failover drill: what region A
 * delivered before it was lost follows A's order, and B makes some of those events again later in its own).
 */
export async function checkOutbox(db: pg.Pool, since: Date, received: ReceivedEvent[], orderFrom = 0): Promise<{ failures: Failure[]; events: number; deliveries: number }> {
  const failures: Failure[] = [];
  const orphans = await db.query<{ id: string }>(
    `SELECT t.id::text FROM ledger_transfers t LEFT JOIN outbox_events e ON e.transfer_id = t.id WHERE t.created_at >= $1 AND e.id IS NULL`,
    [since],
  );
  for (const row of orphans.rows) failures.push({ check: 'outbox event', id: `transfer ${row.id}`, detail: 'a ledger transfer without its outbox event' });
  const events = await db.query<{ seq: string; event_id: string; account_id: string }>('SELECT id::text AS seq, event_id::text, account_id FROM outbox_events WHERE created_at >= $1 ORDER BY id', [since]);
  const delivered = new Set(received.map((r) => r.eventId));
  const firstArrival = new Map<string, number>();
  for (const r of received) if (r.arrival >= orderFrom && !firstArrival.has(r.eventId)) firstArrival.set(r.eventId, r.arrival);
  const byAccount = new Map<string, { seq: number; arrival: number; eventId: string }[]>();
  for (const e of events.rows) {
    if (!delivered.has(e.event_id)) {
      failures.push({ check: 'outbox delivery', id: e.event_id, detail: `event ${e.seq} of ${e.account_id} never reached the receiver` });
      continue;
    }
    const arrival = firstArrival.get(e.event_id);
    if (arrival === undefined) continue; // delivered before `orderFrom` only
    byAccount.set(e.account_id, [...(byAccount.get(e.account_id) ?? []), { seq: Number(e.seq), arrival, eventId: e.event_id }]);
  }
  for (const [accountId, list] of byAccount) {
    const inArrival = [...list].sort((a, b) => a.arrival - b.arrival);
    for (let i = 1; i < inArrival.length; i++) {
      if (inArrival[i]!.seq < inArrival[i - 1]!.seq) {
        failures.push({ check: 'outbox order', id: inArrival[i]!.eventId, detail: `${accountId}: event ${inArrival[i - 1]!.seq} arrived before ${inArrival[i]!.seq}` });
        break;
      }
    }
  }
  return { failures, events: events.rows.length, deliveries: received.length };
}

export interface Platform {
  temporalAddress: string;
  namespace: string;
  apiUrl: string;
  staffToken: string;
}

/** Triggers the reconciliation schedule once the run has settled and waits for that run's result. */
export async function reconcile(platform: Platform): Promise<{ run_id?: string; status: string; detail?: unknown }> {
  const connection = await Connection.connect({ address: platform.temporalAddress });
  try {
    const client = new Client({ connection, namespace: platform.namespace });
    const before = await latestReconciliation(platform);
    await client.schedule.getHandle(RECONCILIATION_SCHEDULE_ID).trigger();
    for (let i = 0; i < 120; i++) {
      await sleep(1_000);
      const latest = await latestReconciliation(platform);
      if (latest && latest.run_id !== before?.run_id) return { run_id: latest.run_id, status: latest.status, detail: { by_kind: latest.by_kind, mismatches: latest.mismatches, invariant_violations: latest.invariant_violations } };
    }
    return { status: 'no run within 2 minutes' };
  } finally {
    await connection.close();
  }
}

async function latestReconciliation(platform: Platform): Promise<any> {
  const res = await fetch(`${platform.apiUrl}/v1/ops/reconciliation/latest`, { headers: { authorization: `Bearer ${platform.staffToken}` } });
  return res.ok ? res.json() : undefined;
}

/** `npm run ledger:check` against `databaseUrl`: its exit code, and a failure when it is not 0. */
export function runLedgerCheck(databaseUrl: string): { exit: number | null; failure?: Failure } {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/ledger-check.ts'], { cwd: repoRoot, env: { ...process.env, DATABASE_URL: databaseUrl }, encoding: 'utf8' });
  if (run.status === 0) return { exit: 0 };
  return { exit: run.status, failure: { check: 'ledger:check', id: 'ledger', detail: `exit ${run.status}: ${(run.stdout + run.stderr).trim().slice(0, 600)}` } };
}

/** checkOutbox, again every 2 s for up to a minute while it fails: the publisher may still be catching up. */
export async function checkOutboxSettled(db: pg.Pool, since: Date, received: ReceivedEvent[], orderFrom = 0): ReturnType<typeof checkOutbox> {
  const started = Date.now();
  let outbox = await checkOutbox(db, since, received, orderFrom);
  while (outbox.failures.length > 0 && Date.now() - started < 60_000) {
    await sleep(2_000);
    outbox = await checkOutbox(db, since, received, orderFrom);
  }
  return outbox;
}
