import { Body, Controller, Get, HttpCode, Inject, Param, Post, Put, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Ledger } from '../../../ledger';
import { defaultLimits, LIMIT_FIELDS, readLimitOverrides, setLimitOverrides, type LimitField } from '../../../lib/account-limits';
import type { Config } from '../../../lib/config';
import { inTransaction, type Pool } from '../../../lib/db';
import { moneyLimits } from '../../../lib/limits';
import { moneySchema } from '../common/money';
import { accountIdSchema } from '../accounts/accounts.schemas';
import { Roles } from '../auth/auth';
import { parseOrProblem, ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { APPROVALS, CONFIG, LEDGER, PG_POOL } from '../tokens';
import { approvalBody, type Approvals } from './approvals.service';
import { accountStatus, appendAudit, setAccountStatus } from './ops.stores';

const statusChange = z.strictObject({ reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000) });
const AMOUNT_LIMITS = ['payout_max', 'payout_daily_max', 'deposit_max', 'deposit_daily_max', 'max_balance'] as const satisfies readonly LimitField[];
const limitsChange = z
  .strictObject({
    ...Object.fromEntries(AMOUNT_LIMITS.map((field) => [field, moneySchema.nullable().optional()])),
    payout_hourly_max_count: z.number().int().min(1).max(100_000).nullable().optional(),
    reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
  })
  .describe('The limits to set for this account (in its currency; null: back to the default); the others stay as they are')
  .refine((body) => LIMIT_FIELDS.some((field) => (body as Record<string, unknown>)[field] !== undefined), { message: 'name at least one limit' });
const limitValue = z.union([moneySchema, z.number().int()]);
const limitsBody = z.object({
  account_id: z.string(),
  currency: z.string(),
  limits: z.object(Object.fromEntries(LIMIT_FIELDS.map((field) => [field, z.object({ value: limitValue, source: z.enum(['account', 'default']) })]))),
  reason: z.string().optional(),
  changed_by: z.string().optional(),
  changed_at: z.string().optional(),
});
const statusBody = z.object({ account_id: z.string(), status: z.enum(['active', 'frozen']), reason: z.string(), changed_by: z.string(), changed_at: z.string() });

/**
 * Finance staff freeze an account (its new payouts are declined at authorization with ACCOUNT_NOT_ACTIVE)
 * and unfreeze it. Payouts already held or submitted go on. Every change is audited.
 */
@Controller('v1/ops/accounts')
@Roles('staff')
export class AccountsOpsController {
  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(LEDGER) private readonly ledger: Ledger,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(APPROVALS) private readonly approvals: Approvals,
  ) {}

  /** The limits that apply to the account: the defaults, or what staff set for it. */
  @Get(':accountId/limits')
  async limits(@Param('accountId') accountId: string) {
    const account = await this.playerAccount(parseOrProblem(accountIdSchema, accountId, 'path'));
    return this.limitsView(account.id, account.currency);
  }

  /** Sets some of the account's limits (null: back to the default), in its currency; audited. */
  @Put(':accountId/limits')
  async setLimits(@Param('accountId') accountId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    const input = parseOrProblem(limitsChange, body) as Partial<Record<LimitField, { minor_units: number; currency: string } | number | null>> & { reason: string };
    const account = await this.playerAccount(id);
    const changes: Partial<Record<LimitField, number | null>> = {};
    for (const field of LIMIT_FIELDS) {
      const value = input[field];
      if (value === undefined) continue;
      if (value !== null && typeof value === 'object' && value.currency !== account.currency) throw new ProblemError('CURRENCY_MISMATCH', `Account ${id} holds ${account.currency}; ${field} is in ${value.currency}`);
      changes[field] = value === null ? null : typeof value === 'object' ? value.minor_units : value;
    }
    // The limits as they would be: a per-payout or per-deposit limit above its daily total makes no sense.
    const after = { ...defaultLimits(moneyLimits(this.config), account.currency), ...(await readLimitOverrides(this.pool, id))?.values };
    for (const [field, value] of Object.entries(changes) as [LimitField, number | null][]) after[field] = value ?? defaultLimits(moneyLimits(this.config), account.currency)[field];
    for (const [single, daily] of [['payout_max', 'payout_daily_max'], ['deposit_max', 'deposit_daily_max']] as const) {
      if (after[single] > after[daily]) throw new ProblemError('VALIDATION_FAILED', `${single} (${after[single]}) would exceed ${daily} (${after[daily]}) in minor units of ${account.currency}`);
    }
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    await inTransaction(this.pool, async (db) => {
      await setLimitOverrides(db, id, changes, actor, input.reason);
      await appendAudit(db, { actor, action: 'account:limits', target: id, reason: input.reason, request: input, outcome: 'applied', detail: JSON.stringify(changes) });
    });
    return this.limitsView(id, account.currency);
  }

  private async playerAccount(id: string) {
    const account = await this.ledger.getAccount(id);
    if (!account || account.kind !== 'player') throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${id}`);
    return account;
  }

  private async limitsView(accountId: string, currency: string) {
    const defaults = defaultLimits(moneyLimits(this.config), currency);
    const overrides = await readLimitOverrides(this.pool, accountId);
    const limits = Object.fromEntries(
      LIMIT_FIELDS.map((field) => {
        const own = overrides?.values[field];
        const value = own ?? defaults[field];
        return [field, { value: field === 'payout_hourly_max_count' ? value : { minor_units: value, currency }, source: own === undefined ? 'default' : 'account' }];
      }),
    );
    return limitsBody.parse({
      account_id: accountId,
      currency,
      limits,
      ...(overrides ? { reason: overrides.reason, changed_by: overrides.changedBy, changed_at: overrides.changedAt.toISOString() } : {}),
    });
  }

  @Post(':accountId/freeze')
  @HttpCode(200)
  freeze(@Param('accountId') accountId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    return this.change(accountId, 'frozen', body, request);
  }

  /** Releases a freeze; under four eyes (the default) a request another staff member approves (202). */
  @Post(':accountId/unfreeze')
  @HttpCode(200)
  async unfreeze(@Param('accountId') accountId: string, @Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    if (!this.approvals.needsApproval('account_unfreeze')) return this.change(accountId, 'active', body, request);
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    const { reason } = parseOrProblem(statusChange, body);
    if (!(await this.ledger.getAccount(id))) throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${id}`);
    const current = await accountStatus(this.pool, id);
    // Not frozen: nothing to release, nothing to approve.
    if (current?.status !== 'frozen') return statusBody.parse({ account_id: id, status: 'active', reason: current?.reason ?? 'never frozen', changed_by: current?.changed_by ?? 'nobody', changed_at: (current?.changed_at ?? new Date(0)).toISOString() });
    // The freeze it releases: a re-freeze before the approval makes the request stale (refused when approved).
    const approval = await this.approvals.request('account_unfreeze', id, { reason, frozen_at: current.changed_at.toISOString() }, reason, `${request.principal!.role}:${request.principal!.sub}`, 'account:unfreeze');
    void reply.status(202);
    return approval;
  }

  private async change(accountId: string, status: 'active' | 'frozen', body: unknown, request: FastifyRequest) {
    const id = parseOrProblem(accountIdSchema, accountId, 'path');
    const { reason } = parseOrProblem(statusChange, body);
    if (!(await this.ledger.getAccount(id))) throw new ProblemError('ACCOUNT_NOT_FOUND', `No account ${id}`);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    const row = await inTransaction(this.pool, async (db) => {
      const changed = await setAccountStatus(db, id, status, reason, actor);
      await appendAudit(db, { actor, action: status === 'frozen' ? 'account:freeze' : 'account:unfreeze', target: id, reason, request: { reason }, outcome: 'applied', detail: `now ${status}` });
      return changed;
    });
    return statusBody.parse({ ...row, changed_at: row.changed_at.toISOString() });
  }
}

export const accountsOpsRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/accounts/:accountId/limits',
    summary: "The money limits that apply to an account: the global defaults in its currency, or what staff set for it",
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Each limit with its source', schema: limitsBody }, 404: { description: 'ACCOUNT_NOT_FOUND' } },
  },
  {
    method: 'put',
    path: '/v1/ops/accounts/:accountId/limits',
    summary: "Set some of an account's limits, overriding the defaults for it (null: back to the default); audited",
    tag: 'ops',
    auth: ['staff'],
    body: limitsChange,
    responses: { 200: { description: 'The limits now', schema: limitsBody }, 404: { description: 'ACCOUNT_NOT_FOUND' }, 422: { description: 'CURRENCY_MISMATCH: an amount not in the account\'s currency' } },
  },
  ...(['freeze', 'unfreeze'] as const).map(
    (action): RouteDoc => ({
      method: 'post',
      path: `/v1/ops/accounts/:accountId/${action}`,
      summary:
        action === 'freeze'
          ? 'Freeze an account: its new payouts are declined (ACCOUNT_NOT_ACTIVE); audited'
          : 'Unfreeze an account; audited. Under four eyes (FOUR_EYES_ACTIONS, the default) a request another staff member approves',
      tag: 'ops',
      auth: ['staff'],
      body: statusChange,
      responses:
        action === 'unfreeze'
          ? { 200: { description: 'The account status', schema: statusBody }, 202: { description: 'An approval request, decided at POST /v1/ops/approvals/{approval_id}', schema: approvalBody }, 404: { description: 'ACCOUNT_NOT_FOUND' } }
          : { 200: { description: 'The account status', schema: statusBody }, 404: { description: 'ACCOUNT_NOT_FOUND' } },
    }),
  ),
];
