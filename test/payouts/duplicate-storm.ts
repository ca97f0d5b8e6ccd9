import { expect } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { sleep } from '../../lib/wait';
import type { SagaStack } from '../support/saga-stack';

type Answer = Awaited<ReturnType<SagaStack['postPayout']>>;

/** What a duplicate storm needs to know about payouts or deposits. */
export interface StormKind {
  prefix: 'po' | 'dp';
  post(stack: SagaStack, body: unknown, key: string): Promise<Answer>;
  /** The ledger transfer a request's saga writes first (payout: its hold; deposit: its credit), by kind. */
  transferKinds(stack: SagaStack, resourceId: string): Promise<string[]>;
}

/** Sends `bodies` at once with one key; all requests leave together. */
export async function storm(stack: SagaStack, kind: StormKind, key: string, bodies: unknown[]): Promise<Answer[]> {
  return Promise.all(bodies.map((body) => kind.post(stack, body, key)));
}

/**
 * The exact outcome of a storm of identical requests: one status and one body for all, all but one marked
 * replayed, one idempotency record, one saga.
 */
export async function expectOneAnswer(stack: SagaStack, kind: StormKind, accountId: string, key: string, answers: Answer[], status: number): Promise<string> {
  const summary = answers.map((a) => `${a.status} ${a.status >= 500 ? a.text : ''}`.trim());
  expect(new Set(summary), 'every answer has the same status').toEqual(new Set([String(status)]));
  expect(new Set(answers.map((a) => a.text)).size, 'every answer has the same body').toBe(1);
  expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true'), 'all but one are replays').toHaveLength(answers.length - 1);
  expect(answers.filter((a) => a.headers.get('idempotent-replayed') === null)).toHaveLength(1);
  const resourceId = resourceIdFor(kind.prefix, accountId, key);
  expect(answers[0]!.json[kind.prefix === 'po' ? 'payout_id' : 'deposit_id']).toBe(resourceId);

  const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
  expect(records.rows[0].n, 'one idempotency record').toBe(1);
  expect(await executionsOf(stack, resourceId), 'one saga').toBe(1);
  return resourceId;
}

/** Runs of a workflow id in visibility (which may lag a moment behind a start: wait for it). */
async function executionsOf(stack: SagaStack, workflowId: string): Promise<number> {
  let count = 0;
  for (const giveUpAt = Date.now() + 5_000; ; await sleep(100)) {
    count = 0;
    for await (const _ of stack.temporal.workflow.list({ query: `WorkflowId = '${workflowId}'` })) count++;
    if (count > 0 || Date.now() > giveUpAt) return count;
  }
}
