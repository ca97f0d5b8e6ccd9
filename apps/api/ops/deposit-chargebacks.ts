import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { DEPOSIT_REVERSAL_TYPE, depositReversalWorkflowId, type DepositReversalInput } from '../../../contracts/deposit';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { ProblemError } from '../common/problem';
import type { SagaCalls } from '../sagas/saga-calls';

/** Staff charge a deposit back (the provider told them out of band): through the same reversal saga as a provider's webhook. */
export class DepositChargebacks {
  constructor(
    private readonly config: Config,
    private readonly pool: Pool,
    private readonly sagas: SagaCalls,
  ) {}

  /** A deposit that can be charged back: credited, not yet reversed (404, 409 otherwise). */
  async check(depositId: string): Promise<void> {
    const { rows } = await this.pool.query<{ status: string }>('SELECT status FROM deposits WHERE deposit_id = $1', [depositId]);
    if (!rows[0]) throw new ProblemError('DEPOSIT_NOT_FOUND', `No deposit ${depositId}`);
    if (rows[0].status !== 'CREDITED') throw new ProblemError('DEPOSIT_NOT_REVERSIBLE', `Deposit is ${rows[0].status}; only a credited deposit can be charged back`);
  }

  /** Starts (or joins) the deposit's reversal saga and waits for its outcome. */
  async apply(depositId: string, reason: string, requestedBy: string, approvedBy?: string): Promise<{ reversed: boolean; detail: string }> {
    const input: DepositReversalInput = { depositId, reason, source: 'staff', requestedBy, ...(approvedBy ? { approvedBy } : {}) };
    const workflowId = depositReversalWorkflowId(depositId);
    await this.sagas
      .bounded(() => this.sagas.workflows.start(DEPOSIT_REVERSAL_TYPE, { workflowId, taskQueue: this.config.TEMPORAL_TASK_QUEUE, args: [input], workflowIdConflictPolicy: 'USE_EXISTING', workflowIdReusePolicy: 'ALLOW_DUPLICATE' }))
      .catch((err: unknown) => {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      });
    const outcome = await this.sagas.bounded(() => this.sagas.handle(workflowId).result() as Promise<{ reversed: boolean; detail: string }>, 30_000);
    if (!outcome.reversed) throw new ProblemError('DEPOSIT_NOT_REVERSIBLE', outcome.detail);
    return outcome;
  }
}
