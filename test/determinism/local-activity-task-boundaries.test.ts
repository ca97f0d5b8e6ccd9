import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../activities';
import { workerSettings } from '../../apps/worker/create-worker';
import { ensureTemporalCli } from '../../temporal/cli';
import { payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';
import { HISTORIES_DIR, recordHistory } from '../replay/histories';
import { uniqueId } from '../support';
import { boundariesAfterLocalActivities, bundle, replay, splitTaskBefore, type JsonHistory } from './task-boundaries';

/**
 * Issue 9: under load the payout saga failed its workflow tasks with "[TMPRL1100] Non-deprecated patch
 * marker encountered for change no-timer-for-empty-reversal-window, but there is no corresponding
 * change command!". The saga's first task runs local activities (authorize, record, hold, record) and
 * then called patched(). Core writes a local activity's marker into whichever task completion comes
 * next; when that completion is sent before the workflow code has seen the result (sdk-core
 * managed_run.rs, prepare_complete_resp: a query answered while a local activity's result is pending
 * completes the task with the markers and forces a new task for the rest), the code after the activity,
 * and its patch marker, land in the *next* task. On replay the result is known one task earlier (core's lookahead), the code runs on,
 * and patched() there answers false because the marker belongs to a later task: a different command,
 * a failed task, on every attempt. These tests cut a real history at every such boundary.
 */

describe('payout saga: a task boundary after a local activity never changes the commands (issue 9)', () => {
  let stack: SagaStack;
  beforeAll(async () => {
    stack = await startSagaStack({}, { worker: false });
  });
  afterAll(async () => stack?.close());

  it('reproduces the error: a saga recorded before the fix, cut after its HELD record step, fails replay', async () => {
    const recorded = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, 'payout-settled.v2.json'), 'utf8')) as JsonHistory;
    expect(await replay(recorded, 'payout-settled')).toBeUndefined();
    const patchAt = recorded.events.findIndex((e) => (e.markerRecordedEventAttributes as { markerName?: string } | undefined)?.markerName === 'core_patch');
    expect(recorded.events[patchAt - 1]!.eventType).toBe('EVENT_TYPE_MARKER_RECORDED'); // the HELD record step's marker
    const error = await replay(splitTaskBefore(recorded, patchAt), 'payout-settled-split');
    expect(error).toContain('Non-deprecated patch marker encountered for change no-timer-for-empty-reversal-window, but there is no corresponding change command');
  });

  it('a saga whose local activity outlives the workflow task (task heartbeats) settles without a failed task, and replays cut at every local-activity boundary', async () => {
    const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
    const real = createActivities({ pool: stack.pool, ...workerSettings(stack.config) });
    // The first step (authorize, hold, HELD recorded) outlives 80 % of the 10 s workflow task timeout: core heartbeats the task.
    const activities = {
      ...real,
      admitPayout: async (input: Parameters<typeof real.admitPayout>[0]) => {
        await new Promise((resolve) => setTimeout(resolve, 8_500));
        return real.admitPayout(input);
      },
    };
    const worker = await Worker.create({ connection, namespace: inject('temporalNamespace'), taskQueue: stack.config.TEMPORAL_TASK_QUEUE, ...bundle(), activities });
    let payoutId = '';
    await worker.runUntil(async () => {
      const accountId = await stack.fundedAccount(10_000);
      const res = await stack.postPayout(payoutRequest(accountId, 1_000), uniqueId('key'));
      payoutId = res.json.payout_id;
      expect((await stack.waitForStatus(payoutId, ['SETTLED'], 60_000)).status).toBe('SETTLED');
      await stack.temporal.workflow.getHandle(payoutId).result();
    });
    await connection.close();
    await recordHistory(stack.temporal, 'payout-settled-after-task-heartbeat', payoutId);

    const json = execFileSync(ensureTemporalCli().path, ['workflow', 'show', '--workflow-id', payoutId, '--address', inject('temporalAddress'), '--namespace', inject('temporalNamespace'), '--output', 'json'], { encoding: 'utf8' });
    const history = JSON.parse(json) as JsonHistory;
    const types = history.events.map((e) => e.eventType);
    expect(types.filter((t) => t === 'EVENT_TYPE_WORKFLOW_TASK_FAILED' || t === 'EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT')).toEqual([]);
    // The heartbeat happened: the first task's local activities span more than one workflow task.
    const firstActivity = types.indexOf('EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    expect(types.slice(0, firstActivity).filter((t) => t === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED').length).toBeGreaterThan(1);
    expect(await replay(history, payoutId)).toBeUndefined();

    const cuts = boundariesAfterLocalActivities(history);
    expect(cuts.length).toBeGreaterThanOrEqual(3);
    const failures: string[] = [];
    for (const cut of cuts) {
      const error = await replay(splitTaskBefore(history, cut), `${payoutId}-cut-${cut}`);
      if (error) failures.push(`cut before event ${history.events[cut]!.eventId}: ${error.slice(0, 300)}`);
    }
    expect(failures).toEqual([]);
  });
});

describe('every recorded history of the current sagas replays cut at every local-activity boundary', () => {
  /** Histories recorded with the patch decisions taken at start (older ones reproduce the bug by design). */
  const current = fs
    .readdirSync(HISTORIES_DIR)
    .filter((file) => file.endsWith('.json'))
    .filter((file) => {
      const text = fs.readFileSync(path.join(HISTORIES_DIR, file), 'utf8');
      return [...text.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)].some((m) => Buffer.from(m[1]!, 'base64').toString('utf8').includes('patch-decisions-at-start'));
    });

  it('covers the payout and the deposit saga', () => {
    expect(current.some((file) => file.startsWith('payout-'))).toBe(true);
    expect(current.some((file) => file.startsWith('deposit-'))).toBe(true);
  });

  it.each(current)('%s', async (file) => {
    const history = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, file), 'utf8')) as JsonHistory;
    const failures: string[] = [];
    for (const cut of boundariesAfterLocalActivities(history)) {
      const error = await replay(splitTaskBefore(history, cut), `${file}-cut-${cut}`);
      if (error) failures.push(`cut before event ${history.events[cut]!.eventId}: ${error.slice(0, 300)}`);
    }
    expect(failures).toEqual([]);
  });
});
