import { Writable } from 'node:stream';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger';
import { initTracing } from '../../lib/tracing';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

// Installed before the stack so the API, the Temporal client and the worker all report here.
const spans = new InMemorySpanExporter();
initTracing('test', 'off', undefined, new SimpleSpanProcessor(spans));

describe('telemetry', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    // Tracing on (its spans go to the processor installed above): the worker runs the bundle with workflow spans.
    stack = await startSagaStack({ PAYOUT_RETURN_WINDOW_MS: '200', TRACING_EXPORTER: 'console' });
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('one trace runs from the API request through the workflow into its activities', async () => {
    const traceId = 'a1'.repeat(16);
    const accountId = await stack.fundedAccount(1_000);
    const res = await fetch(`${stack.apiUrl}/v1/payouts`, {
      method: 'POST',
      headers: { authorization: stack.service, 'content-type': 'application/json', 'idempotency-key': uniqueId('key'), traceparent: `00-${traceId}-${'b2'.repeat(8)}-01` },
      body: JSON.stringify(payoutRequest(accountId, 100)),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-trace-id')).toBe(traceId);
    const { payout_id } = (await res.json()) as { payout_id: string };
    await stack.waitForStatus(payout_id, ['SETTLED']);
    await stack.temporal.workflow.getHandle(payout_id).result();

    let names: string[] = [];
    for (let i = 0; i < 50; i++) {
      names = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId).map((s) => s.name);
      if (names.some((n) => n.startsWith('RunWorkflow'))) break;
      await sleep(100);
    }
    expect(names).toEqual(expect.arrayContaining(['POST /v1/payouts', 'RunWorkflow:payoutSaga', 'StartActivity:submitPayoutToProvider', 'RunActivity:submitPayoutToProvider']));
    expect(names.some((n) => n.includes('UpdateWithStart') || n.includes('StartWorkflow'))).toBe(true);
  });

  it('log lines inside a span carry its trace id', () => {
    const lines: string[] = [];
    const logger = createLogger('test', 'info', new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    trace.getTracer('test').startActiveSpan('work', (span) => {
      logger.info({ idempotencyKey: 'k-1' }, 'inside');
      span.end();
    });
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ msg: 'inside', idempotencyKey: 'k-1', trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });
  });

  it('/metrics exposes saga, idempotency and webhook figures', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const key = uniqueId('key');
    const first = await stack.postPayout(payoutRequest(accountId, 100, 'sandbox:duplicate_callback'), key);
    await stack.postPayout(payoutRequest(accountId, 100, 'sandbox:duplicate_callback'), key); // replay
    await stack.postPayout(payoutRequest(accountId, 101, 'sandbox:duplicate_callback'), key); // mismatch
    await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }); // unsigned
    await stack.waitForStatus(first.json.payout_id, ['SETTLED']);
    await sleep(500); // the duplicate delivery follows the first

    const text = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(text).toMatch(/payouts_by_status\{[^}]*status="SETTLED"[^}]*\} [1-9]/);
    expect(text).toMatch(/idempotent_replays_total\{[^}]*route="\/v1\/payouts"[^}]*\} [1-9]/);
    expect(text).toMatch(/idempotency_mismatches_total\{[^}]*\} [1-9]/);
    expect(text).toMatch(/webhook_signature_failures_total\{[^}]*provider="sandbox"[^}]*\} [1-9]/);
    expect(text).toMatch(/webhook_duplicates_total\{[^}]*provider="sandbox"[^}]*\} [1-9]/);
    expect(text).toMatch(/outbox_pending_events\{[^}]*\} \d+/);
    expect(text).toMatch(/reconciliation_mismatches\{[^}]*kind="missing_in_ledger"[^}]*\} \d+|# TYPE reconciliation_mismatches gauge/);
  });
});
