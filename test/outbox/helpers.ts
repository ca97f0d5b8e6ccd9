import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, expect } from 'vitest';
import type { Ledger } from '../../ledger';
import { createOutboxPublisher, type OutboxPublisher, type OutboxPublisherOptions } from '../../apps/outbox-publisher/publisher';
import type { Pool } from '../../lib/db';
import { DestinationKeyRing, DEV_DESTINATION_KEYS } from '../../lib/destination-vault';
import { createLogger } from '../../lib/logger';
import { urlEndpointId, type ConfiguredEndpoint } from '../../lib/outbox-webhooks';
import { uniqueId } from '../support';

/** OUTBOX_WEBHOOK_SECRET of the tests (Standard Webhooks form). */
export const OUTBOX_SECRET = `whsec_${Buffer.from('outbox-test-secret-0123456789').toString('base64')}`;
/** DESTINATION_KEYS of the tests (testConfig's default): seals the endpoints' secrets. */
export const TEST_KEY_RING = DestinationKeyRing.parse(DEV_DESTINATION_KEYS);

export interface ReceivedEvent {
  /** Arrival index at this receiver (0-based), in order of complete request bodies. */
  index: number;
  at: number;
  eventId: string;
  eventType: string;
  accountId: string;
  body: string;
  headers: IncomingHttpHeaders;
  /** Webhook.verify (the standardwebhooks library) passed with the receiver's first secret. */
  signatureOk: boolean;
  /** Per secret the receiver was given, in order: whether Webhook.verify passed with it. */
  verifiedWith: boolean[];
  /** What the receiver answered (0: no answer, the connection was dropped). */
  status: number;
}

export type Responder = (event: ReceivedEvent, nth: number) => number | { status: number; delayMs?: number };

/**
 * A real HTTP receiver on a loopback port that verifies each delivery as an operator's would, with the
 * standardwebhooks library's Webhook.verify, against each of `secrets`. Its URL has a unique path, so it is a
 * new outbox endpoint (`id`: the id that URL gets as a bare OUTBOX_ENDPOINTS entry).
 */
export async function startReceiver(secrets: string | string[] = OUTBOX_SECRET) {
  let verifiers = [secrets].flat().map((s) => new Webhook(s));
  const received: ReceivedEvent[] = [];
  let responder: Responder = () => 200;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const eventId = String(req.headers['webhook-id']);
      const parsed = JSON.parse(body) as { account_id: string; type: string };
      const verifiedWith = verifiers.map((v) => {
        try {
          v.verify(body, req.headers as Record<string, string>);
          return true;
        } catch {
          return false;
        }
      });
      const event: ReceivedEvent = {
        index: received.length,
        at: Date.now(),
        eventId,
        eventType: parsed.type,
        accountId: parsed.account_id,
        body,
        headers: req.headers,
        signatureOk: verifiedWith[0]!,
        verifiedWith,
        status: 0,
      };
      received.push(event);
      const nth = received.filter((r) => r.eventId === eventId).length;
      const answer = responder(event, nth);
      const { status, delayMs = 0 } = typeof answer === 'number' ? { status: answer } : answer;
      const reply = () => {
        event.status = status;
        res.writeHead(status, { 'content-type': 'application/json' }).end(status < 300 ? '{"ok":true}' : '{"error":"test receiver refused"}');
      };
      if (delayMs > 0) setTimeout(reply, delayMs);
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/outbox/${randomUUID()}`;
  return {
    url,
    id: urlEndpointId(url),
    received,
    respondWith(next: Responder) {
      responder = next;
    },
    /** The secrets later deliveries are verified against (e.g. the one a new endpoint was given). */
    verifyWith(next: string[]) {
      verifiers = next.map((s) => new Webhook(s));
    },
    /** Answered 2xx. */
    accepted(): ReceivedEvent[] {
      return received.filter((r) => r.status >= 200 && r.status < 300);
    },
    distinctIds(): Set<string> {
      return new Set(received.map((r) => r.eventId));
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

const servedInThisFile = new Set<string>();

/**
 * Switches off the endpoints this file's publishers served (call it in afterAll): their receivers are gone,
 * and the API's /metrics (other files' too) counts what every enabled endpoint still has to get.
 */
export async function retireTestEndpoints(pool: Pool): Promise<void> {
  await pool.query('UPDATE outbox_endpoints SET enabled = false WHERE name = ANY($1::text[])', [[...servedInThisFile]]);
  servedInThisFile.clear();
}

/** An OUTBOX_ENDPOINTS entry as the setting's parser gives it (a bare URL: every type, the default secret). */
export function endpointEntry(url: string, extra: Partial<ConfiguredEndpoint> = {}): ConfiguredEndpoint {
  return { id: urlEndpointId(url), url, event_types: [], enabled: true, from: 'beginning', ...extra };
}

/**
 * A publisher scoped to the test's accounts and endpoints (other test files write ledger events and add
 * endpoints in the same database). Endpoints given as URLs are bare OUTBOX_ENDPOINTS entries.
 */
export function testPublisher(pool: Pool, endpoints: (string | ConfiguredEndpoint)[], accountIds: string[], overrides: Partial<OutboxPublisherOptions> = {}) {
  const entries = endpoints.map((e) => (typeof e === 'string' ? endpointEntry(e) : e));
  for (const id of [...entries.map((e) => e.id), ...(overrides.endpointIds ?? [])]) servedInThisFile.add(id);
  return createOutboxPublisher({
    pool,
    endpoints: entries,
    endpointIds: entries.map((e) => e.id),
    defaultSecret: OUTBOX_SECRET,
    keyRing: TEST_KEY_RING,
    batchSize: 10,
    pollIntervalMs: 20,
    retryWindowMs: 60_000,
    backoffBaseMs: 50,
    backoffMaxMs: 5_000,
    logger: createLogger('outbox-test', 'silent'),
    accountIds,
    ...overrides,
  });
}

export interface OutboxRow {
  id: number;
  event_id: string;
  event_type: string;
  schema_version: number;
  account_id: string;
  idempotency_key: string;
  transfer_id: number;
  payload: Record<string, any>;
  body: string;
}

export async function outboxEventsOf(pool: Pool, accountIds: string[]): Promise<OutboxRow[]> {
  const { rows } = await pool.query<OutboxRow>(
    `SELECT id, event_id::text, event_type, schema_version, account_id, idempotency_key, transfer_id, payload, payload::text AS body
       FROM outbox_events WHERE account_id = ANY($1::text[]) ORDER BY id`,
    [accountIds],
  );
  return rows;
}

/** Event ids per account, in outbox order. */
export function orderByAccount(rows: { account_id: string; event_id: string }[]): Map<string, string[]> {
  const byAccount = new Map<string, string[]>();
  for (const r of rows) byAccount.set(r.account_id, [...(byAccount.get(r.account_id) ?? []), r.event_id]);
  return byAccount;
}

/** Per account, the order in which event ids first arrived. */
export function firstArrivalOrder(received: ReceivedEvent[]): Map<string, string[]> {
  const seen = new Set<string>();
  const byAccount = new Map<string, string[]>();
  for (const r of received) {
    if (seen.has(r.eventId)) continue;
    seen.add(r.eventId);
    byAccount.set(r.accountId, [...(byAccount.get(r.accountId) ?? []), r.eventId]);
  }
  return byAccount;
}

export interface Players {
  players: string[];
  funding: string;
  clearing: string;
}

/** Players funded from an operator account of their own, and a clearing account for payouts and deposits. */
export async function createPlayers(ledger: Ledger, count: number, fundEach: number, currency = 'EUR'): Promise<Players> {
  const funding = uniqueId('outbox-funding');
  const clearing = uniqueId('outbox-clearing');
  expect((await ledger.createAccount({ accountId: funding, currency, kind: 'operator_funding' })).result).toBe('ok');
  expect((await ledger.createAccount({ accountId: clearing, currency, kind: 'provider_clearing' })).result).toBe('ok');
  const players: string[] = [];
  for (let i = 0; i < count; i++) {
    const player = uniqueId('outbox-player');
    expect((await ledger.createAccount({ accountId: player, currency, kind: 'player' })).result).toBe('ok');
    if (fundEach > 0) {
      const funded = await ledger.transfer({ idempotencyKey: uniqueId('fund'), debitAccountId: funding, creditAccountId: player, amount: fundEach, currency });
      expect(funded.result).toBe('ok');
    }
    players.push(player);
  }
  return { players, funding, clearing };
}

/**
 * A payout-like run for one player, `rounds` times: hold → post (every other one: void), sometimes a
 * refund, and a deposit credit. Sequential per player, so the player's events have a known order.
 */
export async function sagaLikeRun(ledger: Ledger, player: string, clearing: string, rounds: number, currency = 'EUR'): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const payoutId = uniqueId('payout');
    const hold = await ledger.hold({
      idempotencyKey: `${payoutId}:hold`,
      debitAccountId: player,
      creditAccountId: clearing,
      amount: 10,
      currency,
      metadata: { payout_id: payoutId, step: 'hold' },
    });
    if (hold.result !== 'ok') throw new Error(`hold: ${hold.result}`);
    if (i % 2 === 0) {
      const post = await ledger.post({ idempotencyKey: `${payoutId}:post`, pendingId: hold.transfer.id, metadata: { payout_id: payoutId, step: 'post' } });
      if (post.result !== 'ok') throw new Error(`post: ${post.result}`);
      if (i % 4 === 0) {
        const refund = await ledger.refund({ idempotencyKey: `${payoutId}:refund`, transferId: post.transfer.id, metadata: { payout_id: payoutId, step: 'refund' } });
        if (refund.result !== 'ok') throw new Error(`refund: ${refund.result}`);
      }
    } else {
      const voided = await ledger.void({ idempotencyKey: `${payoutId}:void`, pendingId: hold.transfer.id, metadata: { payout_id: payoutId, step: 'void' } });
      if (voided.result !== 'ok') throw new Error(`void: ${voided.result}`);
    }
    const depositId = uniqueId('deposit');
    const credit = await ledger.transfer({
      idempotencyKey: `${depositId}:credit`,
      debitAccountId: clearing,
      creditAccountId: player,
      amount: 5,
      currency,
      metadata: { deposit_id: depositId, step: 'credit' },
    });
    if (credit.result !== 'ok') throw new Error(`credit: ${credit.result}`);
  }
}

/** Events one sagaLikeRun of `rounds` writes. */
export function eventsPerRun(rounds: number): number {
  let n = 0;
  for (let i = 0; i < rounds; i++) n += 3 + (i % 4 === 0 ? 1 : 0);
  return n;
}

/**
 * Receivers and publishers a test starts, stopped after it (newest first): `receiver()` starts one
 * (startReceiver), `started(publisher)` starts a publisher.
 */
export function stoppedAfterEach() {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return {
    /** With no secrets given, the receiver verifies with OUTBOX_SECRET (startReceiver's default). */
    async receiver(secrets?: string[]): Promise<Receiver> {
      const r = await (secrets ? startReceiver(secrets) : startReceiver());
      cleanups.push(() => r.close());
      return r;
    },
    started(publisher: OutboxPublisher): OutboxPublisher {
      publisher.start();
      cleanups.push(() => publisher.stop());
      return publisher;
    },
  };
}
