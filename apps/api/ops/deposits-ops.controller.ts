import { Body, Controller, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Pool } from '../../../lib/db';
import { Roles } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import { depositIdSchema } from '../deposits/deposits.schemas';
import type { RouteDoc } from '../docs/openapi';
import { APPROVALS, DEPOSIT_CHARGEBACKS, PG_POOL } from '../tokens';
import { approvalBody, type Approvals } from './approvals.service';
import type { DepositChargebacks } from './deposit-chargebacks';
import { audited } from './ops.stores';

const chargebackBody = z.strictObject({ reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000) });
const chargebackResult = z.object({ deposit_id: z.string(), reversed: z.boolean(), detail: z.string() });

/** Staff chargebacks of deposits (a provider's notice that came out of band); under four eyes by default. */
@Controller('v1/ops/deposits')
@Roles('staff')
export class DepositsOpsController {
  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(APPROVALS) private readonly approvals: Approvals,
    @Inject(DEPOSIT_CHARGEBACKS) private readonly chargebacks: DepositChargebacks,
  ) {}

  @Post(':depositId/chargeback')
  @HttpCode(200)
  async chargeback(@Param('depositId') depositId: string, @Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const id = parseOrProblem(depositIdSchema, depositId, 'path');
    const { reason } = parseOrProblem(chargebackBody, body);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    return audited<unknown>(this.pool, { actor, action: 'deposit:chargeback', target: id, reason, request: { reason } }, async () => {
      await this.chargebacks.check(id);
      if (this.approvals.needsApproval('chargeback')) {
        const approval = await this.approvals.request('chargeback', id, { reason }, reason, actor, 'deposit:chargeback');
        void reply.status(202);
        return { result: approval };
      }
      const outcome = await this.chargebacks.apply(id, reason, actor);
      return { result: chargebackResult.parse({ deposit_id: id, ...outcome }), detail: outcome.detail };
    });
  }
}

export const depositsOpsRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/ops/deposits/:depositId/chargeback',
    summary: 'Charge a credited deposit back: the player gives it back once, what its balance cannot cover becomes its debt (repaid by later deposits; payouts declined until then). Under four eyes (the default) a request another staff member approves; audited',
    tag: 'ops',
    auth: ['staff'],
    body: chargebackBody,
    responses: {
      200: { description: 'Charged back (four eyes off for chargeback)', schema: chargebackResult },
      202: { description: 'An approval request, decided at POST /v1/ops/approvals/{approval_id}', schema: approvalBody },
      404: { description: 'DEPOSIT_NOT_FOUND' },
      409: { description: 'DEPOSIT_NOT_REVERSIBLE: not credited, or already reversed; APPROVAL_PENDING' },
    },
  },
];
