import { Writable } from 'node:stream';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../lib/logger';
import { installTemporalRuntime } from '../../lib/temporal-runtime';

// This file installs the SDK runtime itself (not test/support's) to read what the worker logs.
const lines: Record<string, unknown>[] = [];
const capture = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});
installTemporalRuntime(createLogger('worker', 'info', capture), 'WARN');

describe('a failed workflow task is logged loudly (issue 9)', () => {
  it('a workflow task that fails on a live worker is an ERROR line with alert workflow_task_failed and its failure', async () => {
    const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
    const taskQueue = `task-failure-${randomUUID()}`;
    // No activities registered: the saga's first local activity fails its workflow task, on every attempt.
    const worker = await Worker.create({ connection, namespace: inject('temporalNamespace'), taskQueue, workflowBundle: { codePath: inject('workflowBundlePath') }, activities: {} });
    const clientConnection = await Connection.connect({ address: inject('temporalAddress') });
    const client = new Client({ connection: clientConnection, namespace: inject('temporalNamespace') });
    const workflowId = `po_task_failure_${randomUUID()}`;
    const timings = { submitDelayMs: 0, pollInitialMs: 1_000, pollMaxMs: 1_000, stuckAfterMs: 60_000, returnWindowMs: 1_000, continueAsNewAfterEvents: 10_000 };
    const input = { payoutId: workflowId, accountId: 'player-x', amount: { minor_units: 100, currency: 'EUR' }, destination: { method: 'ewallet', last4: '0001' }, provider: 'sandbox', fingerprint: 'f', requestedAt: new Date().toISOString(), timings };
    await worker.runUntil(async () => {
      await client.workflow.start('payoutSaga', { taskQueue, workflowId, args: [input] });
      for (const giveUpAt = Date.now() + 20_000; Date.now() < giveUpAt && !lines.some((l) => l.alert === 'workflow_task_failed'); ) await new Promise((resolve) => setTimeout(resolve, 200));
      await client.workflow.getHandle(workflowId).terminate('test over');
    });
    await clientConnection.close();
    await connection.close();
    const alert = lines.find((l) => l.alert === 'workflow_task_failed');
    expect(alert).toMatchObject({ level: 'error', sdk: 'temporal', nondeterminism: false });
    expect(String(alert!.failure)).toMatch(/Local activity of type '\w+' not registered/);
  });
});
