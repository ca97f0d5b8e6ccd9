import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { sleep } from '../lib/wait';
import { uniqueId } from './support';
import { payoutRequest, startSagaStack, type SagaStack } from './payouts/stack';

describe('probe3', () => {
  let stack: SagaStack;
  beforeAll(async () => { stack = await startSagaStack(); });
  afterAll(async () => { await stack?.close(); });
  it('in_progress record + saga history gone (retention) => second saga for the same key', async () => {
    const acct = await stack.fundedAccount(1_000);
    const key = uniqueId('k');
    const body = payoutRequest(acct, 300);
    const first = await stack.postPayout(body, key);
    const id = first.json.payout_id;
    await stack.waitForStatus(id, ['SETTLED']);
    await sleep(2500);
    const desc1 = await stack.temporal.workflow.getHandle(id).describe();
    console.log('first run', desc1.runId, desc1.status.name);
    await stack.pool.query('UPDATE idempotency_records SET response_status = NULL, response_body = NULL, completed_at = NULL WHERE resource_id = $1', [id]);
    await stack.temporal.workflowService.deleteWorkflowExecution({ namespace: stack.config.TEMPORAL_NAMESPACE, workflowExecution: { workflowId: id, runId: desc1.runId } });
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      try { await stack.temporal.workflow.getHandle(id).describe(); await sleep(300); } catch (e) { gone = e instanceof WorkflowNotFoundError; if (!gone) throw e; }
    }
    console.log('deleted:', gone);
    const g = await fetch(`${stack.apiUrl}/v1/payouts/${id}`, { headers: { authorization: stack.service } });
    console.log('GET after retention:', g.status);
    const retry = await stack.postPayout(body, key);
    console.log('retry', retry.status, retry.headers.get('idempotent-replayed'), retry.text.slice(0, 80));
    await sleep(3000);
    const desc2 = await stack.temporal.workflow.getHandle(id).describe();
    console.log('second run', desc2.runId, desc2.status.name, 'new run:', desc2.runId !== desc1.runId);
    const hist = await stack.temporal.workflow.getHandle(id).fetchHistory();
    const acts = hist.events!.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
    const markers = hist.events!.filter((e) => e.markerRecordedEventAttributes).length;
    console.log('second run activities:', acts.join(','), 'local-activity markers', markers);
    console.log('transfers', JSON.stringify(await stack.transfersOf(id)), 'balance', JSON.stringify(await stack.ledger.getBalance(acct)));
  });
});
