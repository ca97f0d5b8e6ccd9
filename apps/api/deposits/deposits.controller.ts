import { Body, Controller, Get, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertMayActOnAccount } from '../auth/auth';
import { readIdempotencyKey, sendAnswer } from '../sagas/idempotency';
import { parseOrProblem, ProblemError } from '../common/problem';
import { DEPOSITS_SERVICE, WORKFLOW_TASK_FAILURES } from '../tokens';
import type { WorkflowTaskFailureStore } from '../../../lib/workflow-task-failures';
import { workflowTaskFailureFor } from '../ops/workflow-task-failures';
import { createDepositBody, depositIdSchema } from './deposits.schemas';
import { toDepositBody, type DepositsService } from './deposits.service';

@Controller('v1/deposits')
export class DepositsController {
  constructor(
    @Inject(DEPOSITS_SERVICE) private readonly deposits: DepositsService,
    @Inject(WORKFLOW_TASK_FAILURES) private readonly taskFailures: WorkflowTaskFailureStore,
  ) {}

  /** 201 PENDING with checkout_url, 422 LIMIT_EXCEEDED or DEPOSIT_REFUSED, or 202 while the intent is pending; repeats replay the first answer. */
  @Post()
  async create(@Body() body: unknown, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const key = readIdempotencyKey(request);
    const input = parseOrProblem(createDepositBody, body);
    assertMayActOnAccount(request.principal, input.account_id);
    request.log = request.log.child({ idempotencyKey: key });
    const { answer, replayed, depositId } = await this.deposits.create(input, key, String(request.id));
    sendAnswer(reply, answer, replayed, `/v1/deposits/${depositId}`);
  }

  @Get(':depositId')
  async get(@Param('depositId') depositId: string, @Req() request: FastifyRequest) {
    const id = parseOrProblem(depositIdSchema, depositId, 'path');
    if (!request.principal) throw new ProblemError('UNAUTHENTICATED');
    const body = toDepositBody(await this.deposits.get(id, request.principal), request.principal.role);
    // Staff also see whether the saga's workflow task is failing (marked by the worker); others never do.
    return { ...body, ...(await workflowTaskFailureFor(this.taskFailures, id, request.principal.role)) };
  }
}
