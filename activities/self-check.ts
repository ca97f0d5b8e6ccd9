import { Context } from '@temporalio/activity';
import type { Pool } from '../lib/db';

export interface SelfCheckRow {
  checkId: string;
  workflowId: string;
  checkedAt: string;
}

export function createSelfCheckActivities(pool: Pool) {
  return {
    /** Idempotent by checkId: a retried or replayed activity finds the row it wrote the first time. */
    async recordSelfCheck(checkId: string): Promise<SelfCheckRow> {
      const { workflowExecution } = Context.current().info;
      if (!workflowExecution) throw new Error('recordSelfCheck runs only inside a workflow');
      const { rows } = await pool.query<{ check_id: string; workflow_id: string; checked_at: Date }>(
        `INSERT INTO platform_self_checks (check_id, workflow_id, run_id) VALUES ($1, $2, $3)
         ON CONFLICT (check_id) DO UPDATE SET check_id = EXCLUDED.check_id
         RETURNING check_id, workflow_id, checked_at`,
        [checkId, workflowExecution.workflowId, workflowExecution.runId],
      );
      const row = rows[0]!;
      return { checkId: row.check_id, workflowId: row.workflow_id, checkedAt: row.checked_at.toISOString() };
    },
  };
}
