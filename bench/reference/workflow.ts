/**
 * The payout saga's shape with the bare Temporal SDK and no-op steps: 4 local activities, the answer
 * through update-with-start, one normal activity (the provider call), a signal (the provider callback),
 * 2 local activities. What the platform's saga costs above this is the platform's own.
 */
import { condition, defineSignal, defineUpdate, proxyActivities, proxyLocalActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { ReferenceActivities } from './activities';

export const decisionUpdate = defineUpdate<string>('decision');
export const providerCallback = defineSignal('providerCallback');

const local = proxyLocalActivities<ReferenceActivities>({ startToCloseTimeout: '10s' });
const remote = proxyActivities<ReferenceActivities>({ startToCloseTimeout: '30s' });

/** Returns the workflow time at which it "settled". */
export async function referenceSaga(): Promise<number> {
  let decided = false;
  let calledBack = false;
  setHandler(decisionUpdate, async () => {
    await condition(() => decided);
    return 'HELD';
  });
  setHandler(providerCallback, () => {
    calledBack = true;
  });
  await local.step('check account');
  await local.step('check limits');
  await local.step('hold');
  await local.step('record held');
  decided = true;
  await remote.submitToProvider(workflowInfo().workflowId);
  await condition(() => calledBack);
  await local.step('post');
  await local.step('record settled');
  return Date.now();
}
