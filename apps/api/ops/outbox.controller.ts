import { Body, Controller, Get, HttpCode, Inject, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { endpointIdSchema, eventTypePatternSchema } from '../../../lib/outbox-webhooks';
import { Roles } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { CONFIG, PG_POOL } from '../tokens';
import { OutboxOps } from './outbox-ops.service';

const reason = z.string().trim().min(3, 'say why (at least 3 characters)').max(1000);
const endpointChange = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'an http(s) URL' }).describe('Where the events are POSTed'),
  event_types: z.array(eventTypePatternSchema).max(50).default([]).describe('Types (deposit.credited) or families (payout.*) this endpoint gets; empty: all. Applies to events fanned out from now on'),
  enabled: z.boolean().default(true).describe('false: nothing is sent (events written meanwhile go out once it is enabled again)'),
  from: z.enum(['beginning', 'now']).default('beginning').describe('A new endpoint only: every event kept in the outbox, or events written from now on'),
  reason,
});
const rotation = z.strictObject({
  reason,
  keep_previous_until: z.iso.datetime({ offset: true }).optional().describe('Until when the current secret keeps signing beside the new one (default: 24 hours from now)'),
});
const resolution = z.strictObject({ reason });
const deadLetterQuery = z.strictObject({
  endpoint: endpointIdSchema.optional(),
  account_id: z.string().min(1).max(255).optional(),
  state: z.enum(['open', 'replayed', 'skipped', 'all']).default('open').describe('open (default): neither replayed nor skipped, holding the account\'s later events'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
const eventSeqParam = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const endpointBody = z.object({
  id: z.string(),
  url: z.string(),
  enabled: z.boolean(),
  event_types: z.array(z.string()),
  source: z.enum(['config', 'api']).describe('config: from OUTBOX_ENDPOINTS (applied again when that entry changes); api: added by staff'),
  secret: z
    .object({
      fingerprint: z.string().describe('Tells secrets apart without revealing them'),
      rotated_at: z.string().nullable(),
      previous: z.object({ fingerprint: z.string(), until: z.string(), active: z.boolean().describe('still signing beside the current one') }).nullable(),
    })
    .nullable()
    .describe('Never the secret itself; null for an endpoint served before endpoints had secrets'),
  changed_by: z.string().nullable(),
  change_reason: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  pending: z.number().int().describe('Deliveries still to go (held ones included)'),
  dead_letters: z.number().int(),
  held_events: z.number().int().describe('Deliveries waiting behind a dead letter of their account'),
});
const endpointList = z.object({ items: z.array(endpointBody) });
const endpointAnswer = z.object({ endpoint: endpointBody });
const endpointWithSecret = z.object({ endpoint: endpointBody, secret: z.string().describe('The signing secret (whsec_...), shown this once: give it to the receiver') });
const deadLetterBody = z.object({
  endpoint: z.string(),
  event_seq: z.number().int(),
  event_id: z.string().describe('The webhook-id the receiver sees'),
  event_type: z.string(),
  account_id: z.string(),
  attempts: z.number().int(),
  last_error: z.string().nullable(),
  first_failed_at: z.string().nullable(),
  dead_at: z.string(),
  state: z.enum(['open', 'replayed', 'skipped']),
  resolved_at: z.string().nullable(),
  resolved_by: z.string().nullable(),
  resolution_reason: z.string().nullable(),
  held_events: z.number().int().describe("The account's later events for this endpoint waiting behind it"),
});
const deadLetterList = z.object({ items: z.array(deadLetterBody) });

const actorOf = (request: FastifyRequest) => `${request.principal!.role}:${request.principal!.sub}`;

/**
 * The outbox for staff: endpoints (each with its URL, secret, event filter and switch; a new one's secret is
 * shown once) and dead letters. A dead letter holds its account's later events for its endpoint until it is
 * replayed (sent again, then the rest follow) or skipped (given up, with a reason; the rest follow). Audited.
 */
@Controller('v1/ops/outbox')
@Roles('staff')
export class OutboxController {
  private readonly ops: OutboxOps;

  constructor(@Inject(PG_POOL) pool: Pool, @Inject(CONFIG) config: Config) {
    this.ops = new OutboxOps(pool, config.DESTINATION_KEYS);
  }

  @Get('endpoints')
  async endpoints(): Promise<z.infer<typeof endpointList>> {
    return { items: await this.ops.endpoints() };
  }

  @Get('endpoints/:id')
  async endpoint(@Param('id') id: string): Promise<z.infer<typeof endpointAnswer>> {
    return { endpoint: await this.ops.endpoint(parseOrProblem(endpointIdSchema, id, 'path')) };
  }

  @Put('endpoints/:id')
  async put(@Param('id') id: string, @Body() body: unknown, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const endpointId = parseOrProblem(endpointIdSchema, id, 'path');
    const input = parseOrProblem(endpointChange, body);
    const { endpoint, created, secret } = await this.ops.putEndpoint(endpointId, input, actorOf(request));
    void reply.status(created ? 201 : 200);
    return created ? endpointWithSecret.parse({ endpoint, secret }) : { endpoint };
  }

  @Post('endpoints/:id/rotate-secret')
  @HttpCode(200)
  async rotate(@Param('id') id: string, @Body() body: unknown, @Req() request: FastifyRequest): Promise<z.infer<typeof endpointWithSecret>> {
    return this.ops.rotateSecret(parseOrProblem(endpointIdSchema, id, 'path'), parseOrProblem(rotation, body), actorOf(request));
  }

  @Get('dead-letters')
  async deadLetters(@Query() query: unknown): Promise<z.infer<typeof deadLetterList>> {
    const q = parseOrProblem(deadLetterQuery, query ?? {}, 'query');
    return { items: await this.ops.deadLetters({ endpoint: q.endpoint, accountId: q.account_id, state: q.state, limit: q.limit }) };
  }

  @Post('dead-letters/:endpoint/:eventSeq/replay')
  @HttpCode(200)
  async replay(@Param('endpoint') endpoint: string, @Param('eventSeq') eventSeq: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const input = parseOrProblem(resolution, body);
    return this.ops.replay(parseOrProblem(endpointIdSchema, endpoint, 'path'), parseOrProblem(eventSeqParam, eventSeq, 'path'), input.reason, actorOf(request));
  }

  @Post('dead-letters/:endpoint/:eventSeq/skip')
  @HttpCode(200)
  async skip(@Param('endpoint') endpoint: string, @Param('eventSeq') eventSeq: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    const input = parseOrProblem(resolution, body);
    return this.ops.skip(parseOrProblem(endpointIdSchema, endpoint, 'path'), parseOrProblem(eventSeqParam, eventSeq, 'path'), input.reason, actorOf(request));
  }
}

const refusals = {
  400: { description: 'VALIDATION_FAILED' },
  401: { description: 'UNAUTHENTICATED' },
  403: { description: 'FORBIDDEN: staff only' },
};

export const outboxRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/outbox/endpoints',
    summary: 'Outbox endpoints: URL, event filter, switch, secret fingerprints (never a secret), what is pending, dead and held',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Every endpoint', schema: endpointList }, ...refusals },
  },
  {
    method: 'get',
    path: '/v1/ops/outbox/endpoints/:id',
    summary: 'One outbox endpoint',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'The endpoint', schema: endpointAnswer }, ...refusals, 404: { description: 'NOT_FOUND' } },
  },
  {
    method: 'put',
    path: '/v1/ops/outbox/endpoints/:id',
    summary: 'Create an outbox endpoint (its signing secret is generated and shown in this answer only) or change one (URL, event filter, enabled); audited',
    tag: 'ops',
    auth: ['staff'],
    body: endpointChange,
    responses: {
      200: { description: 'Changed', schema: endpointAnswer },
      201: { description: 'Created, with its secret (shown once)', schema: endpointWithSecret },
      ...refusals,
      409: { description: 'OUTBOX_ENDPOINT_NO_SECRET: served before endpoints had secrets; rotate its secret before enabling it' },
    },
  },
  {
    method: 'post',
    path: '/v1/ops/outbox/endpoints/:id/rotate-secret',
    summary: 'A new generated signing secret (shown in this answer only); the current one keeps signing beside it until keep_previous_until (default 24 hours); audited',
    tag: 'ops',
    auth: ['staff'],
    body: rotation,
    responses: { 200: { description: 'Rotated', schema: endpointWithSecret }, ...refusals, 404: { description: 'NOT_FOUND' } },
  },
  {
    method: 'get',
    path: '/v1/ops/outbox/dead-letters',
    query: deadLetterQuery,
    summary: "Dead letters, oldest first (by default the open ones: each holds its account's later events for its endpoint)",
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Dead letters', schema: deadLetterList }, ...refusals },
  },
  {
    method: 'post',
    path: '/v1/ops/outbox/dead-letters/:endpoint/:eventSeq/replay',
    summary: "Deliver an open dead letter again (fresh retry window); the account's later events follow once it is delivered; audited",
    tag: 'ops',
    auth: ['staff'],
    body: resolution,
    responses: {
      200: { description: 'Replayed', schema: deadLetterBody },
      ...refusals,
      404: { description: 'NOT_FOUND' },
      409: { description: 'DEAD_LETTER_RESOLVED: already replayed or skipped' },
    },
  },
  {
    method: 'post',
    path: '/v1/ops/outbox/dead-letters/:endpoint/:eventSeq/skip',
    summary: "Give an open dead letter up for good, with a reason; the account's later events go on; audited",
    tag: 'ops',
    auth: ['staff'],
    body: resolution,
    responses: {
      200: { description: 'Skipped', schema: deadLetterBody },
      ...refusals,
      404: { description: 'NOT_FOUND' },
      409: { description: 'DEAD_LETTER_RESOLVED: already replayed or skipped' },
    },
  },
];
