import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertMayActOnAccount, Roles } from '../auth/auth';
import { readIdempotencyKey, sendAnswer } from '../sagas/idempotency';
import { parseOrProblem, ProblemError } from '../common/problem';
import { PAYOUTS_SERVICE, WORKFLOW_TASK_FAILURES } from '../tokens';
import type { WorkflowTaskFailureStore } from '../../../lib/workflow-task-failures';
import { workflowTaskFailureFor } from '../ops/workflow-task-failures';
import { cancelPayoutBody, createPayoutBody, payoutIdSchema } from './payouts.schemas';
import { toPayoutBody, type PayoutsService } from './payouts.service';

@Controller('v1/payouts')
export class PayoutsController {
  constructor(
    @Inject(PAYOUTS_SERVICE) private readonly payouts: PayoutsService,
    @Inject(WORKFLOW_TASK_FAILURES) private readonly taskFailures: WorkflowTaskFailureStore,
  ) {}

  /** 201 held, 422 declined (e.g. INSUFFICIENT_FUNDS), or 202 while the decision is pending; repeats replay the first answer. */
  @Post()
  async create(@Body() body: unknown, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const key = readIdempotencyKey(request);
    const input = parseOrProblem(createPayoutBody, body);
    assertMayActOnAccount(request.principal, input.account_id);
    request.log = request.log.child({ idempotencyKey: key });
    const { answer, replayed, payoutId } = await this.payouts.create(input, key, String(request.id));
    sendAnswer(reply, answer, replayed, `/v1/payouts/${payoutId}`);
  }

  @Get(':payoutId')
  async get(@Param('payoutId') payoutId: string, @Req() request: FastifyRequest) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    if (!request.principal) throw new ProblemError('UNAUTHENTICATED');
    const body = toPayoutBody(await this.payouts.get(id, request.principal), request.principal.role);
    // Staff also see whether the saga's workflow task is failing (marked by the worker); others never do.
    return { ...body, ...(await workflowTaskFailureFor(this.taskFailures, id, request.principal.role)) };
  }

  /**
   * A player's cancel before submission (the hold is voided); 409 PAYOUT_NOT_CANCELLABLE after, 403
   * REVERSE_WITHDRAWAL_FORBIDDEN where reverse withdrawals are forbidden. Staff cancel at the audited ops route.
   */
  @Post(':payoutId/cancel')
  @HttpCode(200)
  @Roles('player', 'service')
  async cancel(@Param('payoutId') payoutId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    const { reason } = parseOrProblem(cancelPayoutBody, body ?? {});
    if (!request.principal) throw new ProblemError('UNAUTHENTICATED');
    return toPayoutBody(await this.payouts.cancel(id, request.principal, reason), request.principal.role);
  }
}
