import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory, Reflector } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { LogController } from 'fastify';
import { context, type Span } from '@opentelemetry/api';
import { startServerSpan } from '../../lib/tracing';
import type { Client } from '@temporalio/client';
import type { Config } from '../../lib/config';
import type { Pool } from '../../lib/db';
import { createDestinationVault } from '../../lib/destination-vault';
import type { Logger } from '../../lib/logger';
import { createLedger, type Ledger } from '../../ledger';
import { AccountsController, accountRoutes } from './accounts/accounts.controller';
import { AccountListingsController } from './accounts/listings.controller';
import { listingRoutes } from './accounts/listings.docs';
import { AuthGuard, tokenRules } from './auth/auth';
import { AccountsOpsController, accountsOpsRoutes } from './ops/accounts-ops.controller';
import { ProvidersController, providersRoutes } from './ops/providers.controller';
import { OutboxController, outboxRoutes } from './ops/outbox.controller';
import { PayoutsOpsController, payoutsOpsRoutes } from './ops/payouts-ops.controller';
import { ReconciliationController, reconciliationRoutes } from './ops/reconciliation.controller';
import { IncidentsController, incidentRoutes } from './ops/incidents.controller';
import { reconciliationSummary } from '../../lib/reconciliation-runs';
import { outboxLag } from '../outbox-publisher/publisher';
import { WebhooksController, webhookRoutes } from './webhooks/webhooks.controller';
import { PayoutsController } from './payouts/payouts.controller';
import { payoutRoutes } from './payouts/payouts.docs';
import { PayoutsService } from './payouts/payouts.service';
import { DepositsController } from './deposits/deposits.controller';
import { depositRoutes } from './deposits/deposits.docs';
import { DepositsService } from './deposits/deposits.service';
import { MeController, meRoutes } from './auth/me.controller';
import { ProblemError } from './common/problem';
import { ProblemFilter } from './common/problem.filter';
import { buildOpenApiDocument, type RouteDoc } from './docs/openapi';
import { checkResponsesAgainstDocs, type ContractViolation } from './docs/response-contract';
import { HealthController } from './health/health.controller';
import { healthRoutes } from './health/health.docs';
import { ApiMetrics } from './metrics/metrics';
import { MetricsController } from './metrics/metrics.controller';
import { APPROVALS, DEPOSIT_CHARGEBACKS, PAYOUT_STAFF_ACTIONS, CONFIG, DEPOSITS_SERVICE, LEDGER, METRICS, PAYOUTS_SERVICE, PG_POOL, IDEMPOTENT_START, SAGA_CALLS, TEMPORAL_CLIENT, TRAFFIC, WEBHOOK_INTAKE, WORKFLOW_TASK_FAILURES } from './tokens';
import { WebhookEventStore } from './webhooks/webhook-events.store';
import { WebhookIntake } from './webhooks/webhook-intake.service';
import { WorkflowTaskFailureStore } from '../../lib/workflow-task-failures';
import { IdempotentStart } from './sagas/idempotent-start';
import { SagaCalls } from './sagas/saga-calls';
import { ApprovalsController, approvalRoutes } from './ops/approvals.controller';
import { Approvals } from './ops/approvals.service';
import { PayoutStaffActions } from './ops/payout-staff-actions';
import { DepositChargebacks } from './ops/deposit-chargebacks';
import { DepositsOpsController, depositsOpsRoutes } from './ops/deposits-ops.controller';
import { TrafficControl } from './traffic/traffic-control';
import { TrafficGuard } from './traffic/traffic.guard';
import { ModeController, modeRoutes } from './traffic/mode.controller';

export interface ApiDeps {
  config: Config;
  pool: Pool;
  temporal: Client;
  logger: Logger;
  /** Called with each answer that disagrees with its documented response schema; when absent, answers are not checked (the tests set it). */
  onResponseContractViolation?: (violation: ContractViolation) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's server span (lib/tracing.ts). */
    span?: Span;
    /** The exact bytes received, for webhook signatures and request fingerprints. */
    rawBody?: Buffer;
  }
}

export const API_VERSION = '1.0.0';
/** A client's correlation id: letters, digits, `.`, `_`, `-`, at most 64 (a UUID, ULID or `req-123`). */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Method and URL of every route the application serves (for the OpenAPI coverage test). */
const servedRoutes = new WeakMap<NestFastifyApplication, { method: string; url: string }[]>();
export function routesOf(app: NestFastifyApplication): { method: string; url: string }[] {
  return servedRoutes.get(app) ?? [];
}

export const ROUTE_DOCS: RouteDoc[] = [...healthRoutes, ...meRoutes, ...accountRoutes, ...listingRoutes, ...payoutRoutes, ...depositRoutes, ...webhookRoutes, ...payoutsOpsRoutes, ...accountsOpsRoutes, ...reconciliationRoutes, ...incidentRoutes, ...approvalRoutes, ...depositsOpsRoutes, ...modeRoutes, ...providersRoutes, ...outboxRoutes];

@Module({})
class ApiModule {
  static register(deps: ApiDeps, metrics: ApiMetrics, traffic: TrafficControl): DynamicModule {
    return {
      module: ApiModule,
      controllers: [HealthController, MetricsController, MeController, AccountsController, AccountListingsController, PayoutsController, DepositsController, WebhooksController, PayoutsOpsController, AccountsOpsController, ReconciliationController, IncidentsController, ApprovalsController, DepositsOpsController, ModeController, ProvidersController, OutboxController],
      providers: [
        { provide: CONFIG, useValue: deps.config },
        { provide: PG_POOL, useValue: deps.pool },
        { provide: TEMPORAL_CLIENT, useValue: deps.temporal },
        { provide: METRICS, useValue: metrics },
        { provide: TRAFFIC, useValue: traffic },
        { provide: LEDGER, useValue: createLedger(deps.pool) },
        { provide: WORKFLOW_TASK_FAILURES, useValue: new WorkflowTaskFailureStore(deps.pool) },
        { provide: WEBHOOK_INTAKE, useValue: new WebhookIntake(deps.config, new WebhookEventStore(deps.pool), deps.temporal, metrics, traffic) },
        { provide: SAGA_CALLS, useValue: new SagaCalls(deps.temporal, deps.logger, (operation) => metrics.sagaUnavailable.inc({ operation })) },
        { provide: PAYOUT_STAFF_ACTIONS, useFactory: (calls: SagaCalls) => new PayoutStaffActions(calls), inject: [SAGA_CALLS] },
        { provide: DEPOSIT_CHARGEBACKS, useFactory: (calls: SagaCalls) => new DepositChargebacks(deps.config, deps.pool, calls), inject: [SAGA_CALLS] },
        {
          provide: APPROVALS,
          useFactory: (payouts: PayoutStaffActions, chargebacks: DepositChargebacks) => new Approvals(deps.config, deps.pool, payouts, chargebacks),
          inject: [PAYOUT_STAFF_ACTIONS, DEPOSIT_CHARGEBACKS],
        },
        {
          provide: IDEMPOTENT_START,
          useFactory: (ledger: Ledger, calls: SagaCalls) => new IdempotentStart(deps.config, calls, ledger, deps.pool, deps.logger, traffic),
          inject: [LEDGER, SAGA_CALLS],
        },
        {
          provide: PAYOUTS_SERVICE,
          useFactory: (starts: IdempotentStart, calls: SagaCalls) => new PayoutsService(deps.config, starts, calls, deps.pool, createDestinationVault(deps.config.DESTINATION_KEYS)),
          inject: [IDEMPOTENT_START, SAGA_CALLS],
        },
        {
          provide: DEPOSITS_SERVICE,
          useFactory: (starts: IdempotentStart, calls: SagaCalls) => new DepositsService(deps.config, starts, calls, deps.pool),
          inject: [IDEMPOTENT_START, SAGA_CALLS],
        },
        {
          provide: APP_GUARD,
          useFactory: (reflector: Reflector) =>
            new AuthGuard(reflector, deps.config.AUTH_JWT_SECRET, tokenRules(deps.config)),
          inject: [Reflector],
        },
        // After authentication (guards run in this order): read-only mode, then the per-subject rate limit.
        { provide: APP_GUARD, useFactory: (reflector: Reflector) => new TrafficGuard(reflector, traffic), inject: [Reflector] },
      ],
    };
  }
}

/** Builds the API (not listening yet), so main.ts and tests run exactly the same application. */
export async function createApiApp(deps: ApiDeps): Promise<NestFastifyApplication> {
  const metrics = new ApiMetrics(deps.pool);
  // PostgreSQL is probed by ApiMetrics itself; Temporal as the API sees it (alert TemporalUnreachable).
  metrics.addDependency('temporal', () =>
    deps.temporal.connection.withDeadline(Date.now() + 2_000, () => deps.temporal.workflowService.describeNamespace({ namespace: deps.config.TEMPORAL_NAMESPACE })),
  );
  metrics.addGauge('reconciliation_mismatches', 'Mismatches found by the latest scheduled reconciliation run, by kind', ['kind']);
  metrics.addGauge('reconciliation_last_run_timestamp_seconds', 'When the latest scheduled reconciliation run finished', []);
  metrics.addGauge('outbox_pending_events', 'Ledger events not yet delivered to every enabled outbox endpoint', []);
  metrics.addGauge('outbox_oldest_pending_age_seconds', 'Age of the oldest undelivered ledger event (outbox lag)', []);
  metrics.addGauge('outbox_dead_letters', 'Ledger events given up on after OUTBOX_RETRY_WINDOW, neither replayed nor skipped by staff', []);
  metrics.addGauge('outbox_held_events', 'Ledger events waiting behind a dead letter of their account (until staff replay or skip it)', []);
  metrics.addScrapeSource(async (set) => {
    // Over the enabled endpoints in the database (the publisher serves them; the API need not know OUTBOX_ENDPOINTS).
    const lag = await outboxLag(deps.pool);
    set('outbox_pending_events', {}, lag.pending_events);
    set('outbox_oldest_pending_age_seconds', {}, lag.oldest_pending_age_seconds);
    set('outbox_dead_letters', {}, lag.dead_letters);
    set('outbox_held_events', {}, lag.held_events);
  });
  metrics.addScrapeSource(async (set) => {
    const summary = await reconciliationSummary(deps.pool);
    for (const [kind, n] of Object.entries(summary.open_by_kind)) set('reconciliation_mismatches', { kind }, n);
    if (summary.last_run_at) set('reconciliation_last_run_timestamp_seconds', {}, Date.parse(summary.last_run_at) / 1000);
  });
  const adapter = new FastifyAdapter({
    loggerInstance: deps.logger,
    bodyLimit: deps.config.API_BODY_LIMIT_BYTES,
    // The request id is always ours: a client's X-Request-Id never becomes it (see clientRequestId below).
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    // One access-log line per request comes from our onResponse hook (with route template and timing).
    logController: new LogController({ disableRequestLogging: true }),
  });
  const traffic = new TrafficControl(deps.config, deps.pool, deps.logger, metrics);
  const app = await NestFactory.create<NestFastifyApplication>(ApiModule.register(deps, metrics, traffic), adapter, {
    logger: ['error', 'warn'],
    bodyParser: false,
  });
  const fastify = app.getHttpAdapter().getInstance();
  const routes: { method: string; url: string }[] = [];
  servedRoutes.set(app, routes);
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url });
  });

  // Only JSON bodies are accepted (anything else is 415); the raw bytes are kept for signatures.
  fastify.removeAllContentTypeParsers();
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    request.rawBody = body as Buffer;
    // Nest rewraps Fastify's own parse errors as plain 400s; a ProblemError keeps the precise code.
    parseJson(request, (body as Buffer).toString('utf8'), (err, value) =>
      err ? done(Object.assign(new ProblemError('MALFORMED_JSON', err.message), { statusCode: 400 }), undefined) : done(null, value),
    );
  });

  // A client's own X-Request-Id, when it has the strict shape, is kept apart from ours: logged as
  // clientRequestId and echoed as X-Client-Request-Id, so it can neither forge log fields nor pose as another request.
  fastify.addHook('onRequest', (request, reply, done) => {
    const clientRequestId = request.headers['x-request-id'];
    if (typeof clientRequestId === 'string' && CLIENT_REQUEST_ID.test(clientRequestId)) {
      request.log = request.log.child({ clientRequestId });
      void reply.header('x-client-request-id', clientRequestId);
    }
    done();
  });

  // One server span per request, continuing the caller's traceparent; the Temporal client carries it on.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const { span, ctx } = startServerSpan(`${request.method} ${request.routeOptions.url ?? 'unmatched'}`, request.headers);
    request.span = span;
    context.with(ctx, done);
  });
  fastify.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', String(request.id));
    const traceId = request.span?.spanContext().traceId;
    if (traceId) void reply.header('x-trace-id', traceId);
  });
  fastify.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpDuration.observe({ method: request.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    request.log.info({ method: request.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    if (reply.getHeader('idempotent-replayed') === 'true') metrics.idempotentReplays.inc({ route });
    request.span?.setAttribute('http.status_code', reply.statusCode);
    request.span?.end();
  });
  fastify.addHook('onSend', async (request, reply, payload) => {
    if (String(reply.getHeader('content-type') ?? '').startsWith('application/problem+json') && typeof payload === 'string') {
      try {
        const code = (JSON.parse(payload) as { code?: string }).code ?? 'UNKNOWN';
        metrics.problems.inc({ code });
        const route = request.routeOptions.url ?? 'unmatched';
        if (code === 'IDEMPOTENCY_MISMATCH') metrics.idempotencyMismatches.inc({ route });
        if (code === 'WEBHOOK_SIGNATURE_INVALID') metrics.webhookSignatureFailures.inc({ provider: String((request.params as { provider?: string }).provider ?? 'unknown') });
      } catch {
        // not JSON: nothing to count
      }
    }
    return payload;
  });

  if (deps.onResponseContractViolation) checkResponsesAgainstDocs(fastify, ROUTE_DOCS, deps.onResponseContractViolation);
  await app.register(fastifySwagger, { mode: 'static', specification: { document: buildOpenApiDocument(ROUTE_DOCS, API_VERSION) as never } });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  // Nest routes both handler errors and Fastify's own (body parsing, limits) through this filter.
  app.useGlobalFilters(new ProblemFilter());
  app.enableShutdownHooks();
  await traffic.modes.start(deps.config.PLATFORM_MODE_REFRESH_MS);
  fastify.addHook('onClose', async () => traffic.modes.stop());
  fastify.addHook('onClose', async () => app.get<SagaCalls>(SAGA_CALLS).settle());
  await app.init();
  return app;
}
