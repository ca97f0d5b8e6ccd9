import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { recordSelfCheck } = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 5 },
});

/** Proves the chain Temporal -> worker -> PostgreSQL: one activity writes one row. */
export async function selfCheckWorkflow(checkId: string) {
  return recordSelfCheck(checkId);
}
