import { z } from 'zod';
import type { Principal } from '../auth/auth';
import { staffViewOfMark, type WorkflowTaskFailureStore } from '../../../lib/workflow-task-failures';

/** A saga's failing workflow task as staff see it (GET /v1/payouts/{id}, /v1/deposits/{id}, /v1/ops/payouts). */
export const workflowTaskFailureBody = z
  .object({
    kind: z.enum(['nondeterminism', 'workflow_error']),
    detail: z.string().describe('the failure as the worker reported it (internal text)'),
    run_id: z.string(),
    failing_since: z.string(),
    last_failed_at: z.string(),
    attempt: z.number().int().optional().describe("the retried task's attempt at the last check"),
    checked_at: z.string().optional(),
  })
  .describe('staff only: the saga is stopped because its workflow task keeps failing (a defect in workflow code); cleared once the task is healthy again');

/**
 * What a saga's view adds for its reader: for staff, the mark of a failing workflow task (and `stuck`);
 * for players and services nothing, so no internal wording reaches them.
 */
export async function workflowTaskFailureFor(store: WorkflowTaskFailureStore, workflowId: string, reader: Principal['role']): Promise<{ stuck?: true; workflow_task_failure?: z.infer<typeof workflowTaskFailureBody> }> {
  if (reader !== 'staff') return {};
  const mark = await store.find(workflowId);
  return mark ? { stuck: true, workflow_task_failure: staffViewOfMark(mark) } : {};
}
