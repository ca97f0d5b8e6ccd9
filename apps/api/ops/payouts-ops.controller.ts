import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Pool } from '../../../lib/db';
import { PAYOUT_POLL_IGNORED, PAYOUT_SAGA_TYPES, PAYOUT_STATUSES, pollProviderNowSignal, providerPollQuery, REVIEW_REJECTION_CODES, type ProviderPollAnswer } from '../../../contracts/payout';
import { Roles } from '../auth/auth';
import { parseOrProblem, ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { toPayoutBody, type PayoutsService } from '../payouts/payouts.service';
import { payoutBody, payoutIdSchema } from '../payouts/payouts.schemas';
import { APPROVALS, PAYOUT_STAFF_ACTIONS, PAYOUTS_SERVICE, PG_POOL, TEMPORAL_CLIENT, WORKFLOW_TASK_FAILURES } from '../tokens';
import type { Approvals } from './approvals.service';
import { approvalBody } from './approvals.service';
import type { PayoutStaffActions } from './payout-staff-actions';
import { staffViewOfMark, type WorkflowTaskFailureStore } from '../../../lib/workflow-task-failures';
import { workflowTaskFailureBody } from './workflow-task-failures';
import { appendAudit, audited, auditTrail, payoutRows, type AuditOutcome } from './ops.stores';
import { accountIdSchema } from '../accounts/accounts.schemas';
import { listPayoutRows, type Listed } from '../accounts/listings.store';
import { keyset, page } from '../accounts/listings.service';
import { cursorParam, fromParam, nextCursorBody, statusListParam, toParam } from '../common/pagination';
import { operatorFieldsBody } from '../common/operator-metadata';
import type { PayoutRow as ReadModelPayoutRow } from '../payouts/payout-saga-kind';

/** Marked sagas are few (a defect stops many at once, but an alert fires at the first): a bound, not a page. */
const MAX_MARKS_LISTED = 1_000;

const resolveBody = z.strictObject({
  outcome: z.enum(['settle', 'fail']),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
});
const pollBody = z.strictObject({ reason: z.string().trim().min(3).max(1000).optional() });
const reviewBody = z.strictObject({
  decision: z.enum(['approve', 'reject']),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
  reason_code: z
    .enum(REVIEW_REJECTION_CODES)
    .optional()
    .describe("a rejection's code, the payout's decline_code: what the player sees, so one of a few neutral codes; default review_rejected"),
});
const cancelBody = z.strictObject({ reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000) });
const listQuery = z.strictObject({
  stuck: z.enum(['true', 'false']).optional(),
  status: statusListParam(PAYOUT_STATUSES),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  source: z
    .enum(['visibility', 'read_model'])
    .optional()
    .describe(
      'visibility: running sagas (Temporal visibility, with those whose workflow task fails); read_model: every payout, closed ones too, newest first with a cursor (table payouts). Default: read_model when status names closed states only (SETTLED, DECLINED, FAILED, CANCELLED, RETURNED) or account, provider, from, to or cursor is given; visibility otherwise',
    ),
  account: accountIdSchema.optional().describe('read model: payouts of this account'),
  provider: z.string().regex(/^[a-z0-9-]{1,64}$/).optional().describe('read model: payouts now at this provider'),
  from: fromParam.describe('read model: payouts requested at or after this ISO 8601 instant'),
  to: toParam.describe('read model: payouts requested before this ISO 8601 instant (exclusive)'),
  cursor: cursorParam,
});

/** Statuses of payouts whose saga has decided (SETTLED may still be returned, but is paid): listed from the read model. */
const CLOSED_STATUSES: readonly string[] = ['SETTLED', 'DECLINED', 'FAILED', 'CANCELLED', 'RETURNED'];

function readsReadModel(query: z.output<typeof listQuery>): boolean {
  if (query.source) return query.source === 'read_model';
  if (query.account !== undefined || query.provider !== undefined || query.from !== undefined || query.to !== undefined || query.cursor !== undefined) return true;
  return query.status !== undefined && query.status.every((status) => CLOSED_STATUSES.includes(status));
}

const listedPayout = z.object({
  payout_id: z.string(),
  account_id: z.string().optional(),
  status: z.string().optional(),
  stuck: z.boolean().describe('waiting on its provider past the stuck threshold, or its workflow task failing'),
  workflow_task_failing: z.boolean(),
  workflow_task_failure: workflowTaskFailureBody.optional(),
  provider: z.string().optional(),
  amount_minor: z.number().optional(),
  currency: z.string().optional(),
  started_at: z.string().optional(),
  updated_at: z.string().optional().describe('read model: the last change of its status'),
  provider_payout_id: z.string().optional(),
  decline_code: z.string().optional(),
  failure_code: z.string().optional(),
  destination: z.object({ method: z.string(), last4: z.string() }).optional().describe('read model'),
  ...operatorFieldsBody,
});
const listedPayouts = z.object({
  items: z.array(listedPayout),
  source: z.enum(['visibility', 'read_model']).describe('where the items come from (see the source parameter)'),
  query: z.string().optional().describe('visibility: the list filter sent to Temporal (paste it into the Web UI)'),
  next_cursor: nextCursorBody.describe('read model: pass as `cursor` for the next page; null on the last (always null from visibility: one bounded page)'),
});
const auditEntry = z.object({ id: z.number(), at: z.string(), actor: z.string(), action: z.string(), target: z.string(), reason: z.string(), outcome: z.string(), detail: z.string().nullable() });

/**
 * Finance staff's tools for sagas a provider leaves hanging: find them (Temporal visibility, the same
 * search attributes the Web UI filters on, plus the sagas marked for a failing workflow task), resolve one
 * with a reason, or poll its provider now.
 * Every action, applied or refused, is written to the append-only staff audit log.
 */
@Controller('v1/ops/payouts')
@Roles('staff')
export class PayoutsOpsController {
  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(WORKFLOW_TASK_FAILURES) private readonly taskFailures: WorkflowTaskFailureStore,
    @Inject(PAYOUTS_SERVICE) private readonly payouts: PayoutsService,
    @Inject(APPROVALS) private readonly approvals: Approvals,
    @Inject(PAYOUT_STAFF_ACTIONS) private readonly staffActions: PayoutStaffActions,
  ) {}

  @Get()
  async list(@Query() query: unknown): Promise<z.infer<typeof listedPayouts>> {
    const parsed = parseOrProblem(listQuery, query ?? {}, 'query');
    if (readsReadModel(parsed)) return this.listReadModel(parsed);
    const { stuck, status, limit } = parsed;
    // A saga whose workflow task keeps failing cannot update its search attributes: it is listed from the
    // worker's mark (and the read model), first, as stuck; `stuck=false` leaves it out.
    const failing = await this.failingPayouts(status);
    const items: z.infer<typeof listedPayout>[] = stuck === 'false' ? [] : failing.items.slice(0, limit);
    const clauses = [`WorkflowType IN (${PAYOUT_SAGA_TYPES.map((type) => `'${type}'`).join(', ')})`, `ExecutionStatus = 'Running'`];
    if (stuck) clauses.push(`PayoutStuck = ${stuck}`);
    if (status) clauses.push(`PayoutStatus IN (${status.map((s) => `'${s}'`).join(', ')})`); // statuses from the enum, never free text
    if (items.length < limit) {
      // One page of what is asked for: the server's default page (1,000 executions) made every listing
      // read a thousand sagas in their return window, and it slowed with the load on Temporal.
      const pageSize = Math.min(1_000, limit - items.length + failing.ids.size);
      for await (const execution of this.temporal.workflow.list({ query: clauses.join(' AND '), pageSize })) {
        if (failing.ids.has(execution.workflowId)) continue;
        const attributes = execution.searchAttributes as Record<string, unknown[] | undefined>;
        items.push({
          payout_id: execution.workflowId,
          account_id: attributes.AccountId?.[0] as string | undefined,
          status: attributes.PayoutStatus?.[0] as string | undefined,
          stuck: attributes.PayoutStuck?.[0] === true,
          workflow_task_failing: false,
          provider: attributes.Provider?.[0] as string | undefined,
          amount_minor: attributes.AmountMinor?.[0] as number | undefined,
          currency: attributes.Currency?.[0] as string | undefined,
          started_at: execution.startTime.toISOString(),
        });
        if (items.length >= limit) break;
      }
    }
    return { items, source: 'visibility', query: clauses.join(' AND '), next_cursor: null };
  }

  /** Every payout the read model has (closed ones too, past Temporal's retention), newest first, a page at a time. */
  private async listReadModel(query: z.output<typeof listQuery>): Promise<z.infer<typeof listedPayouts>> {
    const listed = await listPayoutRows(this.pool, {
      accountId: query.account,
      statuses: query.status,
      provider: query.provider,
      ...(query.stuck ? { stuck: query.stuck === 'true' } : {}),
      from: query.from,
      to: query.to,
      after: keyset(query.cursor, 'ops_payouts'),
      limit: query.limit + 1,
    });
    return { ...page(listed, query.limit, 'ops_payouts', undefined, listedFromReadModel), source: 'read_model' };
  }

  /** Payouts marked for a failing workflow task, with what the read model knows of them (nothing before authorization). */
  private async failingPayouts(status: readonly string[] | undefined): Promise<{ items: z.infer<typeof listedPayout>[]; ids: Set<string> }> {
    const marks = await this.taskFailures.listByTypes(PAYOUT_SAGA_TYPES, MAX_MARKS_LISTED);
    const byId = await payoutRows(this.pool, marks.map((mark) => mark.workflowId));
    const items = marks
      .filter((mark) => !status || status.includes(byId.get(mark.workflowId)?.status ?? ''))
      .map((mark) => {
        const row = byId.get(mark.workflowId);
        return {
          payout_id: mark.workflowId,
          ...(row ? { account_id: row.account_id, status: row.status, provider: row.provider, amount_minor: row.amount_minor, currency: row.currency, started_at: row.requested_at.toISOString() } : {}),
          stuck: true,
          workflow_task_failing: true,
          workflow_task_failure: staffViewOfMark(mark),
        };
      });
    return { items, ids: new Set(marks.map((mark) => mark.workflowId)) };
  }

  /**
   * Settles or fails a payout still awaiting its provider (money posted or released exactly once). Under four
   * eyes (the default) this opens a request that another staff member approves at /v1/ops/approvals: 202.
   */
  @Post(':payoutId/resolve')
  @HttpCode(200)
  async resolve(@Param('payoutId') payoutId: string, @Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    const input = parseOrProblem(resolveBody, body);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    const action = `resolve:${input.outcome}`;
    return audited<unknown>(this.pool, { actor, action, target: id, reason: input.reason, request: input }, async () => {
      if (this.approvals.needsApproval('payout_resolve')) {
        await this.staffActions.checkResolvable(id);
        const approval = await this.approvals.request('payout_resolve', id, input, input.reason, actor, action);
        void reply.status(202);
        return { result: approval };
      }
      const view = await this.staffActions.resolve(id, input, actor);
      return { result: toPayoutBody(view, 'staff'), detail: `now ${view.status}` };
    });
  }

  /**
   * Reviews a payout held for review (PENDING_REVIEW): approve and it is submitted, reject and its hold is
   * voided (DECLINED with the reason code). A payout under dual approval takes a second staff member: this
   * opens the request they approve at /v1/ops/approvals (202).
   */
  @Post(':payoutId/review')
  @HttpCode(200)
  async review(@Param('payoutId') payoutId: string, @Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    const input = parseOrProblem(reviewBody, body);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    const action = `review:${input.decision}`;
    return audited<unknown>(this.pool, { actor, action, target: id, reason: input.reason, request: input }, async () => {
      const view = await this.staffActions.checkReviewable(id);
      if (view.review?.dualApproval) {
        const approval = await this.approvals.request('payout_review', id, input, input.reason, actor, action);
        void reply.status(202);
        return { result: approval };
      }
      const reviewed = await this.staffActions.review(id, input, actor);
      return { result: toPayoutBody(reviewed, 'staff'), detail: `now ${reviewed.status}` };
    });
  }

  /**
   * Staff cancel a payout before its submission (the hold is voided), with a reason: the one way to reverse
   * a withdrawal where players may not (REVERSE_WITHDRAWALS=forbidden). Audited, applied or refused.
   */
  @Post(':payoutId/cancel')
  @HttpCode(200)
  async cancel(@Param('payoutId') payoutId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    const { reason } = parseOrProblem(cancelBody, body);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    return audited<unknown>(this.pool, { actor, action: 'cancel', target: id, reason, request: { reason } }, async () => {
      const view = await this.payouts.cancel(id, request.principal!, reason);
      return { result: toPayoutBody(view, 'staff'), detail: `now ${view.status}` };
    });
  }

  /** Asks the saga to poll its provider now rather than at its next backoff step. */
  @Post(':payoutId/poll')
  @HttpCode(202)
  async poll(@Param('payoutId') payoutId: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    const { reason } = parseOrProblem(pollBody, body ?? {});
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    const saga = this.temporal.workflow.getHandle(id);
    const answer = await this.pollAnswer(saga);
    if (answer === 'finished') {
      await this.audit(actor, 'poll', id, reason ?? 'poll provider now', { reason }, 'refused', 'PAYOUT_NOT_FOUND: the saga has ended');
      throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${id}`);
    }
    if (answer === 'ignored') {
      await this.audit(actor, 'poll', id, reason ?? 'poll provider now', { reason }, 'refused', PAYOUT_POLL_IGNORED);
      throw new ProblemError(PAYOUT_POLL_IGNORED, 'This payout is settled and in its return window, and its saga started before such polls were answered there: it acts on the provider’s return notification only. Ask the provider to send it again (runbook).');
    }
    try {
      await this.temporal.connection.withDeadline(Date.now() + 5_000, () => saga.signal(pollProviderNowSignal));
    } catch (err) {
      await this.audit(actor, 'poll', id, reason ?? 'poll provider now', { reason }, 'error', String(err));
      if (err instanceof WorkflowNotFoundError) throw new ProblemError('PAYOUT_NOT_FOUND', `No running payout saga ${id}`);
      throw err;
    }
    await this.audit(actor, 'poll', id, reason ?? 'poll provider now', { reason }, 'applied', 'signalled');
    return { payout_id: id, poll: 'requested' };
  }

  /**
   * Whether the saga would act on a poll. Undecided (a worker of an earlier version, or none answering in time)
   * counts as acting: the signal waits in the saga's history for a worker, as it did before the question was asked.
   */
  private async pollAnswer(saga: WorkflowHandle): Promise<ProviderPollAnswer | 'unknown'> {
    try {
      return await this.temporal.connection.withDeadline(Date.now() + 5_000, () => saga.query(providerPollQuery));
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return 'finished';
      return 'unknown';
    }
  }

  @Get(':payoutId/audit')
  async auditTrail(@Param('payoutId') payoutId: string) {
    const id = parseOrProblem(payoutIdSchema, payoutId, 'path');
    return { items: await auditTrail(this.pool, id) };
  }

  private audit(actor: string, action: string, target: string, reason: string, request: unknown, outcome: AuditOutcome, detail: string): Promise<void> {
    return appendAudit(this.pool, { actor, action, target, reason, request, outcome, detail });
  }
}


export const payoutsOpsRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/payouts',
    query: listQuery,
    summary:
      'Payouts for staff. Running sagas from Temporal visibility, e.g. ?stuck=true for those waiting on their provider past the threshold or whose workflow task keeps failing (listed first, with the failure); or every payout from the read model, closed ones too (?status=SETTLED,DECLINED&account=&provider=&from=&to=, newest first, cursor pagination): see `source`',
    tag: 'ops',
    auth: ['staff'],
    responses: {
      200: { description: 'Matching payouts (source says from where)', schema: listedPayouts },
      400: { description: 'VALIDATION_FAILED: a bad filter, limit or cursor' },
      403: { description: 'Not staff' },
    },
  },
  {
    method: 'post',
    path: '/v1/ops/payouts/:payoutId/resolve',
    summary: 'Settle or fail a payout awaiting its provider, with a reason (audited). Under four eyes (FOUR_EYES_ACTIONS, the default) a request another staff member approves',
    tag: 'ops',
    auth: ['staff'],
    body: resolveBody,
    responses: {
      200: { description: 'Resolved (four eyes off for payout_resolve)', schema: payoutBody },
      202: { description: 'An approval request, decided at POST /v1/ops/approvals/{approval_id} by another staff member', schema: approvalBody },
      404: { description: 'PAYOUT_NOT_FOUND' },
      409: { description: 'PAYOUT_NOT_RESOLVABLE: not awaiting its provider (already decided); APPROVAL_PENDING: another request for it is open' },
    },
  },
  {
    method: 'post',
    path: '/v1/ops/payouts/:payoutId/review',
    summary: 'Review a payout held for review (PENDING_REVIEW): approve (it is submitted) or reject (its hold is voided, DECLINED); audited. Under dual approval a request a second staff member approves',
    tag: 'ops',
    auth: ['staff'],
    body: reviewBody,
    responses: {
      200: { description: 'Reviewed', schema: payoutBody },
      202: { description: 'Dual approval: a request decided at POST /v1/ops/approvals/{approval_id} by another staff member', schema: approvalBody },
      404: { description: 'PAYOUT_NOT_FOUND' },
      409: { description: 'PAYOUT_NOT_REVIEWABLE: not pending review (already reviewed, cancelled); APPROVAL_PENDING' },
    },
  },
  {
    method: 'post',
    path: '/v1/ops/payouts/:payoutId/cancel',
    summary: 'Cancel a payout before its submission to the provider, with a reason (audited): how a withdrawal is reversed where players may not',
    tag: 'ops',
    auth: ['staff'],
    body: cancelBody,
    responses: { 200: { description: 'Cancelled (its hold voided)', schema: payoutBody }, 404: { description: 'PAYOUT_NOT_FOUND' }, 409: { description: 'PAYOUT_NOT_CANCELLABLE: already submitted, or ended' } },
  },
  {
    method: 'post',
    path: '/v1/ops/payouts/:payoutId/poll',
    summary: 'Poll the provider for this payout now (audited)',
    tag: 'ops',
    auth: ['staff'],
    body: pollBody,
    responses: { 202: { description: 'Poll requested', schema: z.object({ payout_id: z.string(), poll: z.literal('requested') }) }, 404: { description: 'PAYOUT_NOT_FOUND' }, 409: { description: 'PAYOUT_POLL_IGNORED: settled, in its return window, and started before polls were answered there (it acts on the provider’s return notification only)' } },
  },
  {
    method: 'get',
    path: '/v1/ops/payouts/:payoutId/audit',
    summary: 'Staff audit trail of a payout',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Audit entries, oldest first', schema: z.object({ items: z.array(auditEntry) }) } },
  },
];

/** A read-model row as staff list it: the stored state, with the operator's fields; the saga's timeline is at GET /v1/payouts/{id}. */
function listedFromReadModel({ row, operator, workflowTaskFailing }: Listed<ReadModelPayoutRow>): z.infer<typeof listedPayout> {
  return {
    payout_id: row.payout_id,
    account_id: row.account_id,
    status: row.status,
    stuck: row.stuck || workflowTaskFailing,
    workflow_task_failing: workflowTaskFailing,
    provider: row.provider,
    amount_minor: row.amount_minor,
    currency: row.currency,
    started_at: row.requested_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    ...(row.provider_payout_id ? { provider_payout_id: row.provider_payout_id } : {}),
    ...(row.decline_code ? { decline_code: row.decline_code } : {}),
    ...(row.failure_code ? { failure_code: row.failure_code } : {}),
    destination: { method: row.destination_method, last4: row.destination_last4 },
    ...operator,
  };
}
