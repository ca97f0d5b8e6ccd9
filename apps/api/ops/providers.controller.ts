import { Body, Controller, Get, Inject, Param, Put, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config } from '../../../lib/config';
import { inTransaction, type Pool } from '../../../lib/db';
import { providerConnections } from '../../../lib/providers';
import { Roles } from '../auth/auth';
import { parseOrProblem, ProblemError } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { CONFIG, PG_POOL } from '../tokens';
import { appendAudit } from './ops.stores';
import { listProviderControls, setProviderControl } from './providers.store';

const providerChange = z.strictObject({
  enabled: z.boolean().describe('false: no new payout is routed to this provider (payouts already there stay and are followed to the end)'),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
});
const providerBody = z.object({
  name: z.string(),
  methods: z.array(z.string()),
  currencies: z.array(z.string()).describe('ISO 4217 codes it accepts'),
  enabled: z.boolean(),
  reason: z.string().optional(),
  changed_by: z.string().optional(),
  changed_at: z.string().optional(),
});
const providersBody = z.object({ providers: z.array(providerBody), routes: z.array(z.object({ rule: z.string(), providers: z.array(z.string()) })) });

/**
 * The payment providers and the routes to them (PAYOUT_ROUTES). Staff switch a provider off for new payouts
 * (an outage the breaker has not seen, a provider's maintenance window) and on again; each change is audited.
 * Each worker reads the switches within a second.
 */
@Controller('v1/ops/providers')
@Roles('staff')
export class ProvidersController {
  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  @Get()
  async list() {
    const controls = await listProviderControls(this.pool);
    return providersBody.parse({
      providers: providerConnections(this.config).map((c) => {
        const control = controls.get(c.name);
        return {
          name: c.name,
          methods: [...c.methods],
          currencies: [...c.currencies],
          enabled: control?.enabled ?? true,
          ...(control ? { reason: control.reason, changed_by: control.actor, changed_at: control.updated_at.toISOString() } : {}),
        };
      }),
      routes: this.config.PAYOUT_ROUTES.map((r) => ({ rule: r.text, providers: r.providers })),
    });
  }

  @Put(':name')
  async set(@Param('name') name: string, @Body() body: unknown, @Req() request: FastifyRequest) {
    if (!providerConnections(this.config).some((c) => c.name === name)) throw new ProblemError('NOT_FOUND', `No provider ${name}`);
    const input = parseOrProblem(providerChange, body);
    const actor = `${request.principal!.role}:${request.principal!.sub}`;
    await inTransaction(this.pool, async (db) => {
      await setProviderControl(db, name, input.enabled, input.reason, actor);
      await appendAudit(db, { actor, action: input.enabled ? 'provider:enable' : 'provider:disable', target: `provider:${name}`, reason: input.reason, request: input, outcome: 'applied', detail: `${name} ${input.enabled ? 'enabled' : 'disabled'} for new payouts` });
    });
    const { providers } = await this.list();
    return providers.find((p) => p.name === name)!;
  }
}

export const providersRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/providers',
    summary: 'The payment providers (what each accepts, whether staff switched it off) and the payout routes to them',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'Providers and routes', schema: providersBody } },
  },
  {
    method: 'put',
    path: '/v1/ops/providers/:name',
    summary: 'Switch a provider off (or on) for new payouts; audited. Payouts already submitted there are followed to the end.',
    tag: 'ops',
    auth: ['staff'],
    body: providerChange,
    responses: { 200: { description: 'The provider now', schema: providerBody }, 404: { description: 'NOT_FOUND: no such provider' } },
  },
];
