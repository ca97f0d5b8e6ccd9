import { ScheduleNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureReconciliationSchedule, RECONCILIATION_SCHEDULE_ID } from '../../temporal/schedules';
import { temporalClient, uniqueId } from '../support';

describe('the reconciliation schedule', () => {
  let temporal: Awaited<ReturnType<typeof temporalClient>>;
  // Its own id and a task queue no worker polls: the test never touches a real schedule or runs a reconciliation.
  const scheduleId = uniqueId('reconciliation-schedule');
  const taskQueue = uniqueId('no-worker');
  const THIRTY_DAYS = 30 * 24 * 3600;

  beforeAll(async () => {
    temporal = await temporalClient();
  });
  afterAll(async () => {
    await temporal?.client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    await temporal?.close();
  });

  it('is created with an interval spec, overlap SKIP and the reconciliation workflow, then updated in place', async () => {
    expect(RECONCILIATION_SCHEDULE_ID).toBe('reconciliation');
    expect(await ensureReconciliationSchedule(temporal.client, { taskQueue, intervalSeconds: THIRTY_DAYS, scheduleId })).toEqual({ scheduleId, created: true });
    const handle = temporal.client.schedule.getHandle(scheduleId);
    const created = await handle.describe();
    expect(created.spec.intervals).toMatchObject([{ every: THIRTY_DAYS * 1000 }]);
    expect(created.policies.overlap).toBe('SKIP');
    expect(created.action).toMatchObject({ type: 'startWorkflow', workflowType: 'reconciliationWorkflow', taskQueue, workflowId: scheduleId, args: [{}] });
    expect(created.state.paused).toBe(false);

    // Idempotent: a second call (every worker start makes one) updates instead of failing.
    expect(await ensureReconciliationSchedule(temporal.client, { taskQueue, intervalSeconds: THIRTY_DAYS, scheduleId })).toEqual({ scheduleId, created: false });
    // And a changed interval is applied, the schedule's state kept.
    await handle.pause('staff paused it');
    expect(await ensureReconciliationSchedule(temporal.client, { taskQueue, intervalSeconds: THIRTY_DAYS * 2, scheduleId })).toEqual({ scheduleId, created: false });
    const updated = await handle.describe();
    expect(updated.spec.intervals).toMatchObject([{ every: THIRTY_DAYS * 2000 }]);
    expect(updated.policies.overlap).toBe('SKIP');
    expect(updated.state.paused).toBe(true);
    expect(updated.info.recentActions).toEqual([]);

    await handle.delete();
    await expect(handle.describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
  });
});
