import { randomBytes, randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createLogger } from '../../lib/logger';
import type { WebhookEvent } from '../../apps/sandbox-aggregator/objects';
import { createSandboxAggregator, type SandboxOptions } from '../../apps/sandbox-aggregator/server';
import { inject } from 'vitest';

export const WEBHOOK_SECRET = 'sandbox-test-secret-0123456789';

export interface ReceivedWebhook {
  rawBody: string;
  headers: IncomingHttpHeaders;
  event: WebhookEvent;
  /** What the receiver answered. */
  status: number;
}

/** A real HTTP receiver on a loopback port; answers 200 unless a responder says otherwise. */
export async function startReceiver() {
  const received: ReceivedWebhook[] = [];
  let responder: (hook: Omit<ReceivedWebhook, 'status'>, nth: number) => number = () => 200;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const hook = { rawBody, headers: req.headers, event: JSON.parse(rawBody) as WebhookEvent };
      const status = responder(hook, received.filter((r) => r.event.id === hook.event.id).length + 1);
      received.push({ ...hook, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/sandbox`,
    received,
    /** responder(hook, nth): nth counts deliveries of that event id, starting at 1. */
    respondWith(next: typeof responder) {
      responder = next;
    },
    forReference(reference: string): ReceivedWebhook[] {
      return received.filter((r) => r.event.data.object.reference === reference);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

export interface SandboxClientResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** A schema of its own in the test database, for one sandbox's state (start another sandbox on it to restart it). */
export function sandboxSchema(): string {
  return `sandbox_${randomBytes(6).toString('hex')}`;
}

/** The sandbox in-process on a loopback port, with fast test timings and a store of its own, plus a tiny JSON client. */
export async function startSandbox(options: Partial<SandboxOptions> & { webhookUrl: string }) {
  const app: FastifyInstance = await createSandboxAggregator({
    logger: createLogger('sandbox-test', 'silent'),
    databaseUrl: inject('databaseUrl'),
    schema: sandboxSchema(),
    webhookSecret: WEBHOOK_SECRET,
    callbackDelayMs: 30,
    webhookRetry: { attempts: 4, baseDelayMs: 20, maxDelayMs: 100, timeoutMs: 2_000 },
    ...options,
  });
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });

  async function call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<SandboxClientResponse<T>> {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal,
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  }

  return {
    app,
    baseUrl,
    call,
    get: <T = any>(path: string) => call<T>('GET', path),
    submitPayout: (body: unknown, key: string = randomUUID(), signal?: AbortSignal) => call('POST', '/v1/payouts', body, { 'idempotency-key': key }, signal),
    submitDeposit: (body: unknown, key: string = randomUUID()) => call('POST', '/v1/deposits', body, { 'idempotency-key': key }),
    setScenario: (reference: string, scenario: Record<string, unknown>) => call('PUT', `/sandbox/scenarios/${encodeURIComponent(reference)}`, scenario),
    events: (reference: string) => call('GET', `/sandbox/events?reference=${encodeURIComponent(reference)}`).then((r) => r.body.items as any[]),
    close: () => app.close(),
  };
}

export type Sandbox = Awaited<ReturnType<typeof startSandbox>>;

export const VALID_IBAN = 'DE89370400440532013000';

export function payoutBody(overrides: Record<string, unknown> = {}) {
  return {
    reference: `payout-${randomUUID()}`,
    amount: { minor_units: 12_50, currency: 'EUR' },
    destination: { method: 'bank_transfer', iban: VALID_IBAN },
    ...overrides,
  };
}

export function depositBody(overrides: Record<string, unknown> = {}) {
  return { reference: `deposit-${randomUUID()}`, amount: { minor_units: 50_00, currency: 'EUR' }, ...overrides };
}

export const wallet = (wallet_id: string) => ({ method: 'ewallet', wallet_id });

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
