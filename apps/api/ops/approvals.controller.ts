import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { Roles } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { APPROVALS } from '../tokens';
import { approvalBody, type Approvals } from './approvals.service';

const approvalIdSchema = z.coerce.number().int().positive();
const decisionBody = z.strictObject({
  decision: z.enum(['approve', 'reject']),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
});
const listQuery = z.strictObject({
  status: z.enum(['pending', 'approving', 'approved', 'rejected', 'failed']).optional().describe('default: the open ones (pending, approving)'),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** Four eyes: the requests waiting for a second staff member, and their decision. */
@Controller('v1/ops/approvals')
@Roles('staff')
export class ApprovalsController {
  constructor(@Inject(APPROVALS) private readonly approvals: Approvals) {}

  @Get()
  async list(@Query() query: unknown) {
    return { items: await this.approvals.list(parseOrProblem(listQuery, query ?? {}, 'query')) };
  }

  /** Approve (the action takes effect now, as the requester's, approved by this staff member) or reject. */
  @Post(':approvalId')
  @HttpCode(200)
  async decide(@Param('approvalId') approvalId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const id = parseOrProblem(approvalIdSchema, approvalId, 'path');
    const { decision, reason } = parseOrProblem(decisionBody, body);
    const { approval, result } = await this.approvals.decide(id, decision, reason, `${request.principal!.role}:${request.principal!.sub}`);
    return { ...approval, ...(result === undefined ? {} : { result }) };
  }
}

export const approvalRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/approvals',
    query: listQuery,
    summary: 'Four-eyes requests waiting for a second staff member (or ?status=approved, rejected, failed)',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Requests, oldest first', schema: z.object({ items: z.array(approvalBody) }) } },
  },
  {
    method: 'post',
    path: '/v1/ops/approvals/:approvalId',
    summary: "Approve (it takes effect now) or reject another staff member's request; audited",
    tag: 'ops',
    auth: ['staff'],
    body: decisionBody,
    responses: {
      200: { description: 'Decided; an approved request carries the result of its action', schema: approvalBody.extend({ result: z.unknown().optional() }) },
      403: { description: 'APPROVER_IS_REQUESTER' },
      404: { description: 'APPROVAL_NOT_FOUND' },
      409: { description: 'APPROVAL_DECIDED, or the action was refused when applied (e.g. PAYOUT_NOT_RESOLVABLE): the request ends failed' },
    },
  },
];
