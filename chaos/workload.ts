/**
 * The chaos run's clients: players' apps posting payouts (every sandbox scenario), deposits and cancels, open
 * loop, each retrying with the same Idempotency-Key after a timeout, a reset connection, a 5xx or a 429 (honouring
 * Retry-After), as the README tells an app to. Everything they were told is kept for the verdict.
 */
import { randomUUID } from 'node:crypto';
import { resourceIdFor } from '../apps/api/sagas/idempotency';
import { sleep, waitUntil } from '../lib/wait';

/** What a scenario is expected to end as, when nothing cancelled it. */
export interface PayoutScenario {
  name: string;
  /** The e-wallet id that selects it at the sandbox (its magic values). */
  walletId: string;
  expected: 'SETTLED' | 'FAILED' | 'RETURNED';
}

export const PAYOUT_SCENARIOS: PayoutScenario[] = [
  { name: 'settle', walletId: 'wallet-chaos', expected: 'SETTLED' },
  { name: 'settle', walletId: 'wallet-chaos', expected: 'SETTLED' },
  { name: 'fail', walletId: 'sandbox:fail', expected: 'FAILED' },
  { name: 'slow', walletId: 'sandbox:slow:2500', expected: 'SETTLED' },
  // Longer than the worker's 10 s HTTP timeout: the submission is retried and must find the first one.
  { name: 'slow_past_timeout', walletId: 'sandbox:slow:12000', expected: 'SETTLED' },
  { name: 'error_then_ok', walletId: 'sandbox:error_then_ok:2', expected: 'SETTLED' },
  { name: 'duplicate_callback', walletId: 'sandbox:duplicate_callback', expected: 'SETTLED' },
  { name: 'duplicate_callback_distinct_id', walletId: 'sandbox:duplicate_callback:distinct', expected: 'SETTLED' },
  { name: 'out_of_order', walletId: 'sandbox:out_of_order', expected: 'RETURNED' },
  { name: 'return_after_settlement', walletId: 'sandbox:return_after_settlement', expected: 'RETURNED' },
  { name: 'never_callback', walletId: 'sandbox:never_callback', expected: 'SETTLED' },
  { name: 'reject', walletId: 'sandbox:reject', expected: 'FAILED' },
];

export interface Attempt {
  at: number;
  ms: number;
  status: number | 'timeout' | 'network';
  code?: string;
}

export interface Request {
  kind: 'payout' | 'deposit';
  /** The resource id the platform derives from account and key (what a retry must find again). */
  id: string;
  accountId: string;
  key: string;
  amountMinor: number;
  scenario: string;
  expected: string;
  sentAt: number;
  attempts: Attempt[];
  /** The last answer: 201/202 (accepted), another 4xx, or none after every retry. */
  answer?: { status: number; at: number; code?: string };
  cancel?: { status: number; code?: string };
  /** The harness itself failed on this request (never the platform's answer). */
  harnessError?: string;
}

export interface ClientOptions {
  /** Every API instance: each attempt goes to the next one, as through a round-robin load balancer. */
  apiUrls: string[];
  token: string;
  /** Per attempt; a client that waits longer than the sync deadline (3 s) and a bit. */
  attemptTimeoutMs: number;
  /** Total time a client keeps retrying one request. */
  giveUpAfterMs: number;
}

const RETRYABLE = (status: number) => status >= 500 || status === 429 || status === 408;
let nextApi = 0;

/** One logical request: attempts with the same key until an answer binds (2xx or a 4xx that is not 429). */
export async function send(opts: ClientOptions, method: string, route: string, body: unknown, key: string | undefined, attempts: Attempt[]): Promise<{ status: number; json: any } | undefined> {
  const started = Date.now();
  for (let n = 0; ; n++) {
    const at = Date.now();
    let retryAfterMs = 0;
    try {
      const headers: Record<string, string> = { authorization: `Bearer ${opts.token}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (key) headers['idempotency-key'] = key;
      const apiUrl = opts.apiUrls[nextApi++ % opts.apiUrls.length]!;
      const res = await fetch(`${apiUrl}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(opts.attemptTimeoutMs) });
      const text = await res.text();
      const json = text ? JSON.parse(text) : undefined;
      attempts.push({ at, ms: Date.now() - at, status: res.status, ...(json?.code ? { code: json.code } : {}) });
      if (!RETRYABLE(res.status)) return { status: res.status, json };
      retryAfterMs = Number(res.headers.get('retry-after') ?? 0) * 1000;
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      attempts.push({ at, ms: Date.now() - at, status: timedOut ? 'timeout' : 'network' });
    }
    if (Date.now() - started > opts.giveUpAfterMs) return undefined;
    // Exponential backoff with full jitter, at least what Retry-After asked for.
    await sleep(Math.max(retryAfterMs, Math.random() * Math.min(8_000, 250 * 2 ** n)));
  }
}

export function newPayout(accountId: string, scenario: PayoutScenario, amountMinor: number): Request {
  const key = randomUUID();
  return { kind: 'payout', id: resourceIdFor('po', accountId, key), accountId, key, amountMinor, scenario: scenario.name, expected: scenario.expected, sentAt: Date.now(), attempts: [] };
}

export function newDeposit(accountId: string, fails: boolean, amountMinor: number): Request {
  const key = randomUUID();
  return { kind: 'deposit', id: resourceIdFor('dp', accountId, key), accountId, key, amountMinor, scenario: fails ? 'fail' : 'settle', expected: fails ? 'FAILED' : 'CREDITED', sentAt: Date.now(), attempts: [] };
}

export function payoutBody(request: Request, walletId: string) {
  return { account_id: request.accountId, amount: { minor_units: request.amountMinor, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: walletId } };
}

export function depositBody(request: Request) {
  return { account_id: request.accountId, amount: { minor_units: request.amountMinor, currency: 'EUR' } };
}

/** Registers a scenario at the sandbox's control endpoint, retried while the sandbox restarts. */
export async function scriptSandbox(sandboxUrl: string, reference: string, scenario: Record<string, unknown>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${sandboxUrl}/sandbox/scenarios/${reference}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(scenario), signal: AbortSignal.timeout(5_000) });
      if (res.ok) return;
    } catch {
      // restarting: try again
    }
    if (attempt > 120) throw new Error(`the sandbox refused the scenario for ${reference} for a minute`);
    await sleep(500);
  }
}

/** Requests accepted (201/202) and attempts that had to be retried, each second from t0: the runs' timelines. */
export function perSecond(requests: Request[], t0: number) {
  const seconds = new Map<number, { second: number; accepted: number; retried: number }>();
  const at = (ms: number) => {
    const second = Math.max(0, Math.floor((ms - t0) / 1000));
    if (!seconds.has(second)) seconds.set(second, { second, accepted: 0, retried: 0 });
    return seconds.get(second)!;
  };
  for (const r of requests) {
    if (r.answer && (r.answer.status === 201 || r.answer.status === 202)) at(r.answer.at).accepted += 1;
    for (const a of r.attempts) if (typeof a.status !== 'number' || a.status >= 500 || a.status === 429) at(a.at).retried += 1;
  }
  return [...seconds.values()].sort((a, b) => a.second - b.second);
}

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

/**
 * Creates each account and funds it with one deposit of `minor` (8 at a time), then waits until every deposit
 * is credited (`credited` reads the platform's state). Answers account → what it was funded with.
 */
export async function fundAccounts(client: ClientOptions, accounts: string[], minor: number, credited: (deposits: Request[]) => Promise<boolean>): Promise<Map<string, number>> {
  const funding: Request[] = [];
  for (let i = 0; i < accounts.length; i += 8) {
    await Promise.all(
      accounts.slice(i, i + 8).map(async (accountId) => {
        const created = await send(client, 'POST', '/v1/accounts', { account_id: accountId, currency: 'EUR' }, undefined, []);
        if (created?.status !== 201 && created?.status !== 200) throw new Error(`account ${accountId}: ${created?.status}`);
        const deposit = newDeposit(accountId, false, minor);
        const answer = await send(client, 'POST', '/v1/deposits', depositBody(deposit), deposit.key, deposit.attempts);
        if (answer?.status !== 201 && answer?.status !== 202) throw new Error(`funding ${accountId}: ${answer?.status}`);
        deposit.answer = { status: answer.status, at: Date.now() };
        funding.push(deposit);
      }),
    );
  }
  await waitUntil('funding deposits credited', () => credited(funding), 120_000, 500);
  return new Map(funding.map((d) => [d.accountId, minor]));
}
