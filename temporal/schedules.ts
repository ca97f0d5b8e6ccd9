import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptionsStartWorkflowAction, type ScheduleSpec } from '@temporalio/client';
import type { Workflow } from '@temporalio/common';
import { RECONCILIATION_WORKFLOW_TYPE } from '../contracts/reconciliation';

export const RECONCILIATION_SCHEDULE_ID = 'reconciliation';

export interface ReconciliationScheduleOptions {
  taskQueue: string;
  intervalSeconds: number;
  /** Default `reconciliation`; tests use their own id so they never touch a real schedule. */
  scheduleId?: string;
}

/**
 * Creates the reconciliation schedule, or brings an existing one up to date (interval, task queue, overlap
 * policy), so every worker start may call it. Its paused state and history are kept. Overlap SKIP: a run
 * still going when the next is due makes the next one wait for the following interval; as windows start where
 * the last recorded run ended, nothing is left out.
 */
export async function ensureReconciliationSchedule(client: Client, opts: ReconciliationScheduleOptions): Promise<{ scheduleId: string; created: boolean }> {
  const scheduleId = opts.scheduleId ?? RECONCILIATION_SCHEDULE_ID;
  const spec: ScheduleSpec = { intervals: [{ every: opts.intervalSeconds * 1000 }] };
  const action: ScheduleOptionsStartWorkflowAction<Workflow> = {
    type: 'startWorkflow',
    workflowType: RECONCILIATION_WORKFLOW_TYPE,
    // Temporal appends the action time, so each run has its own id (and its own reconciliation_runs row).
    workflowId: scheduleId,
    taskQueue: opts.taskQueue,
    args: [{}],
  };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP } });
    return { scheduleId, created: true };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((current) => ({
    ...current,
    spec,
    action,
    policies: { ...current.policies, overlap: ScheduleOverlapPolicy.SKIP },
  }));
  return { scheduleId, created: false };
}
