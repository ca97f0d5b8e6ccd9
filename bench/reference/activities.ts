import type { Client } from '@temporalio/client';

/** The no-op steps of the reference saga; the provider call only arranges its callback (a signal) later. */
export function createReferenceActivities(client: Client, callbackDelayMs: number) {
  return {
    async step(_name: string): Promise<void> {},
    async submitToProvider(workflowId: string): Promise<void> {
      // Like the sandbox aggregator: answers at once, calls back after its delay.
      setTimeout(() => void client.workflow.getHandle(workflowId).signal('providerCallback').catch(() => undefined), callbackDelayMs);
    },
  };
}

export type ReferenceActivities = ReturnType<typeof createReferenceActivities>;
