import type { Client } from '@temporalio/client';
import { selfCheckWorkflow } from '../../workflows';

/** Runs the self-check workflow and waits for its row; throws if the worker does not pick it up in time. */
export async function runSelfCheck(client: Client, taskQueue: string, timeoutMs = 90_000) {
  const checkId = `self-check-${new Date().toISOString()}`;
  const handle = await client.workflow.start(selfCheckWorkflow, {
    taskQueue,
    workflowId: checkId,
    args: [checkId],
    workflowExecutionTimeout: timeoutMs,
  });
  return handle.result();
}
