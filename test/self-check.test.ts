import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../lib/db';
import { selfCheckWorkflow } from '../workflows';
import { startTestWorker, temporalClient, testPool, uniqueId } from './support';

describe('a real worker runs a workflow whose activity writes to PostgreSQL', () => {
  let pool: Pool;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let temporal: Awaited<ReturnType<typeof temporalClient>>;

  beforeAll(async () => {
    pool = testPool();
    worker = await startTestWorker(pool);
    temporal = await temporalClient();
  });
  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await pool?.end();
  });

  it('writes the row once, under the workflow that wrote it', async () => {
    const checkId = uniqueId('check');
    const workflowId = uniqueId('wf');
    const result = await temporal.client.workflow.execute(selfCheckWorkflow, { taskQueue: worker.taskQueue, workflowId, args: [checkId] });

    expect(result).toMatchObject({ checkId, workflowId });
    const { rows } = await pool.query('SELECT check_id, workflow_id FROM platform_self_checks WHERE check_id = $1', [checkId]);
    expect(rows).toEqual([{ check_id: checkId, workflow_id: workflowId }]);
  });

  it('is idempotent by check id: a second workflow with the same id finds the first row', async () => {
    const checkId = uniqueId('check');
    const first = await temporal.client.workflow.execute(selfCheckWorkflow, { taskQueue: worker.taskQueue, workflowId: uniqueId('wf'), args: [checkId] });
    const second = await temporal.client.workflow.execute(selfCheckWorkflow, { taskQueue: worker.taskQueue, workflowId: uniqueId('wf'), args: [checkId] });

    expect(second).toEqual(first);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM platform_self_checks WHERE check_id = $1', [checkId]);
    expect(rows[0].n).toBe(1);
  });
});
