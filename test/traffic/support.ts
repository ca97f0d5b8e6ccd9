import type { AddressInfo } from 'node:net';
import { recordContractViolation } from '../support/response-contract';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApiApp } from '../../apps/api/app';
import type { Config } from '../../lib/config';
import { createLogger } from '../../lib/logger';
import { signToken } from '../../lib/tokens';
import { signWebhook } from '../../lib/webhook-signature';
import type { SagaStack } from '../support/saga-stack';

/** Another API instance beside the stack's own: same PostgreSQL, Temporal and task queue, its own process state. */
export async function secondApi(stack: SagaStack, overrides: Partial<Config> = {}): Promise<{ url: string; app: NestFastifyApplication }> {
  const app = await createApiApp({ config: { ...stack.config, ...overrides }, pool: stack.pool, temporal: stack.temporal, logger: createLogger('api-test-2', 'silent'), onResponseContractViolation: recordContractViolation });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`, app };
}

export async function bearer(sub: string, role: 'player' | 'service' | 'staff', config: Config): Promise<string> {
  return `Bearer ${await signToken({ sub, role }, config.AUTH_JWT_SECRET)}`;
}

export interface Answer {
  status: number;
  code?: string;
  retryAfter: string | null;
  ms: number;
  json: any;
}

export async function send(url: string, method: string, authorization: string | undefined, body?: unknown, key?: string): Promise<Answer> {
  const started = performance.now();
  const headers: Record<string, string> = {};
  if (authorization) headers.authorization = authorization;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers['idempotency-key'] = key;
  const res = await fetch(url, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, code: json?.code, retryAfter: res.headers.get('retry-after'), ms: performance.now() - started, json };
}

/** A provider webhook signed as the sandbox signs it, about a reference nobody knows (acknowledged, changes nothing). */
export async function sendSignedWebhook(apiUrl: string, config: Config, eventId: string): Promise<Answer> {
  const body = JSON.stringify({
    id: eventId,
    type: 'payout.settled',
    created_at: new Date().toISOString(),
    data: { object: { id: `prov_${eventId}`, reference: `po_unknown_${eventId}`, status: 'settled' } },
  });
  const started = performance.now();
  const res = await fetch(`${apiUrl}/v1/webhooks/sandbox`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-signature': signWebhook(config.SANDBOX_WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000)) },
    body,
  });
  const json = (await res.json()) as any;
  return { status: res.status, code: json?.code, retryAfter: res.headers.get('retry-after'), ms: performance.now() - started, json };
}

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}
