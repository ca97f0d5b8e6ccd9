import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { Logger } from '../../lib/logger';
import { SandboxEngine } from './engine';
import { isValidIban, snapshot } from './objects';
import { OutageSwitch } from './outage';
import { acceptedErrorOf, DEFAULT_SCENARIO, scenarioFromMetadata, scenarioFromDestination, supportsDeposits, supportsPayouts, type ScenarioParse } from './scenarios';
import { Scheduler } from './scheduler';
import {
  checkoutActionSchema,
  checkoutQuerySchema,
  depositRequestSchema,
  describeIssues,
  eventsQuerySchema,
  idempotencyKeySchema,
  idParamsSchema,
  outageRequestSchema,
  payoutRequestSchema,
  referenceParamsSchema,
  referenceQuerySchema,
  resolveDepositSchema,
  resolvePayoutSchema,
  reverseDepositSchema,
  scenarioSchema,
  settlementReportQuerySchema,
  type Scenario,
} from './schemas';
import { createSandboxPool, DEFAULT_SANDBOX_SCHEMA, ensureSandboxSchema } from './database';
import { DuplicateReference, fingerprintOf, inUnit, SandboxStore, type ProducedResponse, type StoredResponse, type Unit } from './store';
import { DEFAULT_WEBHOOK_RETRY, WebhookDispatcher, type WebhookRetryPolicy } from './webhooks';

export type SandboxMethod = 'bank_transfer' | 'card' | 'ewallet';
export const SANDBOX_METHODS: readonly SandboxMethod[] = ['bank_transfer', 'card', 'ewallet'];

export interface SandboxOptions {
  logger: Logger;
  /** PostgreSQL that keeps the sandbox's state (SANDBOX_DATABASE_URL, or the platform's database). */
  databaseUrl: string;
  /** Its schema there; each instance sharing one database needs its own. */
  schema?: string;
  webhookSecret: string;
  webhookUrl: string;
  /** Delay before a scripted outcome happens, unless the scenario says otherwise. Default 1000 ms. */
  callbackDelayMs?: number;
  webhookRetry?: WebhookRetryPolicy;
  now?: () => Date;
  /**
   * When set (SANDBOX_API_TOKEN), every route but /health and the player's checkout page (which is guarded by
   * its per-deposit secret) needs `Authorization: Bearer <apiToken>`.
   */
  apiToken?: string;
  /**
   * What this instance pays out to (SANDBOX_METHODS); undefined: every method. A payout to another method is
   * refused with 422 unsupported_method and nothing is written.
   */
  supportedMethods?: readonly SandboxMethod[];
  /**
   * Currencies it accepts (SANDBOX_CURRENCIES); undefined: any. A payout or deposit in another is refused with
   * 422 unsupported_currency and nothing is written.
   */
  supportedCurrencies?: readonly string[];
  /** How long a request is held during a `timeout` outage before its 503 (the server closing ends it sooner). Default 30 s. */
  outageHoldMs?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route needs no API token. */
    public?: boolean;
  }
}

const PUBLIC = { config: { public: true } };

/** Constant-time equality of two secrets of any length (compared as SHA-256 digests). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export const DEFAULT_CALLBACK_DELAY_MS = 1_000;
/** How long the `slow` scenario holds the submission response back when it names no delay_ms. */
export const DEFAULT_SLOW_DELAY_MS = 3_000;
/** How long a `timeout` outage holds each request before answering 503: longer than any sane client timeout. */
export const DEFAULT_OUTAGE_HOLD_MS = 30_000;

/** A 4xx/5xx answer in the sandbox's error shape: `{ error: { code, message, ... }, ...extra }`. */
class SandboxHttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly extra: { error?: Record<string, unknown>; body?: Record<string, unknown> } = {},
  ) {
    super(message);
  }

  toResponse(): ProducedResponse & { remember: false } {
    return { statusCode: this.statusCode, body: errorBody(this.code, this.message, this.extra), remember: false };
  }
}

function errorBody(code: string, message: string, extra: { error?: Record<string, unknown>; body?: Record<string, unknown> } = {}) {
  return { error: { code, message, ...extra.error }, ...extra.body };
}

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw new SandboxHttpError(400, 'invalid_request', `${what}: ${describeIssues(result.error)}`);
  return result.data;
}

function idempotencyKeyOf(request: FastifyRequest): string {
  const raw = request.headers['idempotency-key'];
  if (raw === undefined) throw new SandboxHttpError(400, 'missing_idempotency_key', 'the Idempotency-Key header is required');
  const result = idempotencyKeySchema.safeParse(raw);
  if (!result.success) throw new SandboxHttpError(400, 'invalid_idempotency_key', 'Idempotency-Key must be 1-255 printable ASCII characters');
  return result.data;
}

function scenarioOrThrow(parsed: ScenarioParse): Scenario | undefined {
  if (!parsed.ok) throw new SandboxHttpError(400, 'invalid_scenario', parsed.message);
  return parsed.scenario;
}

/**
 * A stand-in payment aggregator, run as its own process so the platform talks to it over HTTP
 * exactly as it would to a real one.
 */
export async function createSandboxAggregator(opts: SandboxOptions): Promise<FastifyInstance> {
  const logger = opts.logger;
  const now = opts.now ?? (() => new Date());
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    // The sandbox logs its own business events; per-request access lines would only be noise.
    logController: new LogController({ disableRequestLogging: true }),
  });

  const schema = opts.schema ?? DEFAULT_SANDBOX_SCHEMA;
  const pool = createSandboxPool(opts.databaseUrl, schema);
  try {
    await ensureSandboxSchema(pool, schema);
  } catch (err) {
    await pool.end();
    throw err;
  }
  const store = new SandboxStore(pool);
  const scheduler = new Scheduler(logger);
  const outage = new OutageSwitch(scheduler);
  const webhooks = new WebhookDispatcher({
    pool,
    url: opts.webhookUrl,
    secret: opts.webhookSecret,
    retry: { ...DEFAULT_WEBHOOK_RETRY, ...opts.webhookRetry },
    logger,
    scheduler,
    now,
    // A provider that is down sends nothing: deliveries wait for the outage to end.
    paused: () => outage.active !== undefined,
  });
  outage.onEnd(() => {
    logger.info('sandbox outage over');
    webhooks.resumePaused();
  });
  const methods = opts.supportedMethods ? [...opts.supportedMethods] : undefined;
  const currencies = opts.supportedCurrencies ? [...opts.supportedCurrencies] : undefined;
  const outageHoldMs = opts.outageHoldMs ?? DEFAULT_OUTAGE_HOLD_MS;
  const engine = new SandboxEngine({ store, scheduler, webhooks, logger, now, callbackDelayMs: opts.callbackDelayMs ?? DEFAULT_CALLBACK_DELAY_MS });

  // Before in-flight requests drain: held-back `slow` responses are released and no timer outlives the app.
  app.addHook('preClose', async () => {
    scheduler.close();
    webhooks.close();
  });
  app.addHook('onClose', async () => {
    await pool.end();
  });
  // What was due when the sandbox last stopped: scripted outcomes and webhooks still to send.
  const resumed = { steps: await engine.resume(), deliveries: await webhooks.resume() };
  if (resumed.steps + resumed.deliveries > 0) logger.info(resumed, 'sandbox resumed what was still due');

  // JSON only: anything else is 415 rather than a string that fails validation.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof SandboxHttpError) return reply.code(error.statusCode).send(error.toResponse().body);
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error, url: request.url }, 'sandbox request failed');
    const code =
      error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? 'unsupported_media_type'
        : error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'payload_too_large'
          : error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || error instanceof SyntaxError
            ? 'invalid_json'
            : status >= 500
              ? 'internal_error'
              : 'bad_request';
    return reply.code(status).send(errorBody(code, status >= 500 ? 'internal error' : error.message));
  });
  // The outage switch, before the token check: a provider that is down answers nothing else. Only the provider
  // API (/v1/...) is down; /health reports it (below), the /sandbox/* controls and the checkout page keep working.
  app.addHook('onRequest', async (request) => {
    if (!isProviderApi(request.url)) return;
    const mode = outage.active;
    if (mode === undefined) return;
    // Held until the hold is over or the server closes (a client with a shorter timeout has given up by then).
    if (mode === 'timeout') await scheduler.sleep(outageHoldMs);
    throw new SandboxHttpError(503, 'outage', 'the aggregator is down (simulated outage)');
  });
  if (opts.apiToken) {
    const expected = `Bearer ${opts.apiToken}`;
    app.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config.public) return;
      const given = request.headers.authorization;
      if (typeof given === 'string' && sameSecret(given, expected)) return;
      void reply.header('www-authenticate', 'Bearer');
      throw new SandboxHttpError(401, 'unauthorized', 'send Authorization: Bearer <SANDBOX_API_TOKEN>');
    });
  }

  app.setNotFoundHandler((request, reply) => reply.code(404).send(errorBody('not_found', `no route ${request.method} ${request.url}`)));

  /** Runs a submission under its Idempotency-Key (scoped per resource kind) and answers, replayed or fresh. */
  async function idempotent(kind: 'payout' | 'deposit', key: string, reference: string, rawBody: unknown, reply: FastifyReply, produce: (unit: Unit) => Promise<ProducedResponse>) {
    const result = await store.idempotency.execute(
      `${kind}:${key}`,
      fingerprintOf(rawBody),
      async (unit) => {
        try {
          return await produce(unit);
        } catch (err) {
          if (err instanceof DuplicateReference) return duplicateReference(err).toResponse();
          if (err instanceof SandboxHttpError) return err.toResponse();
          throw err;
        }
      },
      (ms) => scheduler.sleep(ms),
      // accept_then_error: whatever happened (created, replayed, a duplicate reference), its error is answered instead.
      async () => {
        const status = await store.takeAcceptedError(`${kind}:${reference}`);
        return status === undefined ? undefined : acceptedErrorResponse(status);
      },
    );
    if (result.outcome === 'mismatch') {
      throw new SandboxHttpError(422, 'idempotency_mismatch', 'this Idempotency-Key was already used with a different request body');
    }
    if (result.outcome === 'replayed' && !result.substituted) reply.header('idempotent-replayed', 'true');
    return reply.code(result.response.statusCode).send(result.response.body);
  }

  /** A payout or deposit in a currency this instance does not take, or a payout to a method it does not pay to: 422, nothing written. */
  function refuseUnsupported(currency: string, method?: SandboxMethod): void {
    if (method !== undefined && methods && !methods.includes(method)) {
      throw new SandboxHttpError(422, 'unsupported_method', `this aggregator does not pay out by ${method} (it does: ${methods.join(', ') || 'none'})`);
    }
    if (currencies && !currencies.includes(currency)) {
      throw new SandboxHttpError(422, 'unsupported_currency', `this aggregator does not take ${currency} (it does: ${currencies.join(', ') || 'none'})`);
    }
  }

  function duplicateReference(err: DuplicateReference): SandboxHttpError {
    return new SandboxHttpError(409, 'duplicate_reference', err.message, { error: { existing_id: err.existing.id }, body: { [err.existing.object]: err.existing } });
  }

  /** error_then_ok: the first fail_attempts submissions under one key answer 503 and create nothing. */
  async function failTransiently(unit: Unit, kind: string, key: string, scenario: Scenario): Promise<void> {
    if (scenario.scenario !== 'error_then_ok') return;
    if (await store.countTransientFailure(unit, `${kind}:${key}`, scenario.fail_attempts ?? 1)) {
      throw new SandboxHttpError(503, 'temporarily_unavailable', 'the aggregator is temporarily unavailable, retry with the same Idempotency-Key');
    }
  }

  function holdOf(scenario: Scenario): number {
    return scenario.scenario === 'slow' ? (scenario.delay_ms ?? DEFAULT_SLOW_DELAY_MS) : 0;
  }

  const capabilities = { methods: methods ?? [...SANDBOX_METHODS], currencies: currencies ?? '*' };
  app.get('/health', PUBLIC, async (_request, reply) => {
    const mode = outage.active;
    if (mode !== undefined) return reply.code(503).send({ status: 'outage', service: 'sandbox-aggregator', outage: mode, ...capabilities });
    return { status: 'ok', service: 'sandbox-aggregator', ...capabilities };
  });

  // ---- payouts ----

  app.post('/v1/payouts', async (request, reply) => {
    const key = idempotencyKeyOf(request);
    const body = parse(payoutRequestSchema, request.body, 'body');
    refuseUnsupported(body.amount.currency, body.destination.method);
    return idempotent('payout', key, body.reference, request.body, reply, async (unit) => {
      const existing = await store.byReference('payout', body.reference, unit.tx);
      if (existing) throw new DuplicateReference(existing);
      // An IBAN cannot carry a magic value, so metadata.sandbox_scenario works for payouts too.
      const scenario =
        (await store.scenario(body.reference, unit.tx)) ??
        scenarioOrThrow(scenarioFromDestination(body.destination)) ??
        scenarioOrThrow(scenarioFromMetadata(body.metadata)) ??
        DEFAULT_SCENARIO;
      if (!supportsPayouts(scenario)) throw new SandboxHttpError(400, 'invalid_scenario', 'reverse_after_ms is for deposits only');
      await failTransiently(unit, 'payout', key, scenario);
      if (scenario.scenario === 'reject') {
        return { statusCode: 422, body: errorBody('invalid_destination', 'the destination was refused by the provider'), remember: true };
      }
      if (body.destination.method === 'bank_transfer' && !isValidIban(body.destination.iban)) {
        return { statusCode: 422, body: errorBody('invalid_destination', 'the IBAN is not valid'), remember: true };
      }
      const payout = await engine.createPayout(unit, body, scenario);
      const acceptedError = acceptedErrorOf(scenario);
      if (acceptedError) await store.armAcceptedError(unit, `payout:${body.reference}`, acceptedError.status, acceptedError.errorAttempts);
      return { statusCode: 201, body: snapshot(payout), remember: true, holdMs: holdOf(scenario) };
    });
  });

  app.get('/v1/payouts/:id', async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const payout = await store.payout(id);
    if (!payout) throw new SandboxHttpError(404, 'not_found', `no payout ${id}`);
    return payout;
  });

  app.get('/v1/payouts', async (request) => {
    const { reference } = parse(referenceQuerySchema, request.query, 'query');
    const payout = await store.byReference('payout', reference);
    if (!payout) throw new SandboxHttpError(404, 'not_found', `no payout with reference ${reference}`);
    return payout;
  });

  // ---- deposits ----

  app.post('/v1/deposits', async (request, reply) => {
    const key = idempotencyKeyOf(request);
    const body = parse(depositRequestSchema, request.body, 'body');
    refuseUnsupported(body.amount.currency);
    return idempotent('deposit', key, body.reference, request.body, reply, async (unit) => {
      const existing = await store.byReference('deposit', body.reference, unit.tx);
      if (existing) throw new DuplicateReference(existing);
      const scenario = (await store.scenario(body.reference, unit.tx)) ?? scenarioOrThrow(scenarioFromMetadata(body.metadata)) ?? DEFAULT_SCENARIO;
      if (!supportsDeposits(scenario)) throw new SandboxHttpError(400, 'invalid_scenario', `${scenario.scenario} is for payouts only`);
      await failTransiently(unit, 'deposit', key, scenario);
      if (scenario.scenario === 'reject') {
        return { statusCode: 422, body: errorBody('payment_refused', 'the deposit was refused by the provider'), remember: true };
      }
      const deposit = await engine.createDeposit(unit, body, scenario, `${request.protocol}://${request.host}`);
      return { statusCode: 201, body: snapshot(deposit), remember: true, holdMs: holdOf(scenario) };
    });
  });

  app.get('/v1/deposits/:id', async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const deposit = await store.deposit(id);
    if (!deposit) throw new SandboxHttpError(404, 'not_found', `no deposit ${id}`);
    return deposit;
  });

  app.get('/v1/deposits', async (request) => {
    const { reference } = parse(referenceQuerySchema, request.query, 'query');
    const deposit = await store.byReference('deposit', reference);
    if (!deposit) throw new SandboxHttpError(404, 'not_found', `no deposit with reference ${reference}`);
    return deposit;
  });

  // ---- reconciliation ----

  app.get('/v1/reports/settlements', async (request) => {
    const query = parse(settlementReportQuerySchema, request.query, 'query');
    const until = query.until ? new Date(query.until) : now();
    return { since: new Date(query.since).toISOString(), until: until.toISOString(), items: await engine.settlementReport(new Date(query.since), until) };
  });

  // ---- control endpoints for tests and demos ----

  app.put('/sandbox/scenarios/:reference', async (request) => {
    const { reference } = parse(referenceParamsSchema, request.params, 'path');
    const scenario = parse(scenarioSchema, request.body, 'body');
    const { applied, refused } = await inUnit(pool, async (unit) => {
      await store.setScenario(unit, reference, scenario);
      return engine.rescript(unit, reference, scenario);
    });
    logger.info({ reference, scenario: scenario.scenario, applied_to: applied }, 'sandbox scenario registered');
    return { reference, scenario, applied_to: applied, ...(refused.length > 0 ? { not_applied: refused } : {}) };
  });

  app.get('/sandbox/scenarios/:reference', async (request) => {
    const { reference } = parse(referenceParamsSchema, request.params, 'path');
    const scenario = await store.scenario(reference);
    if (!scenario) throw new SandboxHttpError(404, 'not_found', `no scenario registered for ${reference}`);
    return { reference, scenario };
  });

  app.delete('/sandbox/scenarios/:reference', async (request, reply) => {
    const { reference } = parse(referenceParamsSchema, request.params, 'path');
    await store.deleteScenario(reference);
    return reply.code(204).send();
  });

  app.post('/sandbox/payouts/:id/resolve', async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const command = parse(resolvePayoutSchema, request.body, 'body');
    const result = await inUnit(pool, (unit) => engine.resolvePayout(unit, id, command));
    if (!result) throw new SandboxHttpError(404, 'not_found', `no payout ${id}`);
    if (!result.ok) throw new SandboxHttpError(409, 'invalid_transition', result.message, { body: { payout: result.object } });
    return result.object;
  });

  app.post('/sandbox/deposits/:id/resolve', async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const command = parse(resolveDepositSchema, request.body, 'body');
    const result = await inUnit(pool, (unit) => engine.resolveDeposit(unit, id, command));
    if (!result) throw new SandboxHttpError(404, 'not_found', `no deposit ${id}`);
    if (!result.ok) throw new SandboxHttpError(409, 'invalid_transition', result.message, { body: { deposit: result.object } });
    return result.object;
  });

  // A chargeback: succeeded → reversed (409 from any other status; 200 and nothing sent when already reversed).
  app.post('/sandbox/deposits/:id/reverse', async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const command = parse(reverseDepositSchema, request.body ?? {}, 'body');
    const result = await inUnit(pool, (unit) => engine.reverseDeposit(unit, id, command));
    if (!result) throw new SandboxHttpError(404, 'not_found', `no deposit ${id}`);
    if (!result.ok) throw new SandboxHttpError(409, 'invalid_transition', result.message, { body: { deposit: result.object } });
    return result.object;
  });

  /** The deposit a checkout_url names, if its secret matches; 404 otherwise (a wrong secret reveals nothing). */
  async function checkoutDeposit(id: string, secret: string) {
    const checkout = await store.depositCheckout(id);
    if (!checkout || !sameSecret(secret, checkout.secret)) throw new SandboxHttpError(404, 'not_found', `no checkout ${id}`);
    return checkout.deposit;
  }

  // The page a deposit's checkout_url points at: the player "pays" or declines here (demos and manual tests).
  // It is public (a browser carries no API token); the per-deposit secret in checkout_url guards it and its action.
  app.get('/sandbox/checkout/:id', PUBLIC, async (request, reply) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const { secret } = parse(checkoutQuerySchema, request.query, 'query');
    const deposit = await checkoutDeposit(id, secret);
    const amount = `${deposit.amount.minor_units} ${deposit.amount.currency} (minor units)`;
    const buttons =
      deposit.status === 'pending'
        ? `<button onclick="resolve('succeed')">Pay</button> <button onclick="resolve('fail')">Decline</button>`
        : `<p>This deposit is <strong>${deposit.status}</strong>.</p>`;
    void reply.type('text/html; charset=utf-8').send(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox checkout ${escapeHtml(id)}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>Sandbox checkout</h1>
<p>Deposit <code>${escapeHtml(id)}</code> for <strong>${escapeHtml(amount)}</strong>, reference <code>${escapeHtml(deposit.reference)}</code>.</p>
${buttons}
<script>
async function resolve(outcome) {
  await fetch(${JSON.stringify(`/sandbox/checkout/${id}`).replace(/</g, '\\u003c')}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome, secret: ${JSON.stringify(secret)} }) });
  location.reload();
}
</script>
</body></html>`);
  });

  // The checkout page's Pay / Decline: resolves only the deposit its secret belongs to.
  app.post('/sandbox/checkout/:id', PUBLIC, async (request) => {
    const { id } = parse(idParamsSchema, request.params, 'path');
    const { secret, outcome } = parse(checkoutActionSchema, request.body, 'body');
    const deposit = await checkoutDeposit(id, secret);
    const result = (await inUnit(pool, (unit) => engine.resolveDeposit(unit, deposit.id, parse(resolveDepositSchema, { outcome }, 'body'))))!;
    if (!result.ok) throw new SandboxHttpError(409, 'invalid_transition', result.message, { body: { deposit: result.object } });
    return result.object;
  });

  // The outage simulation (see outage.ts): in this process's memory only, like the switch it is.
  app.get('/sandbox/outage', async () => outage.view());

  app.post('/sandbox/outage', async (request) => {
    const command = parse(outageRequestSchema, request.body, 'body');
    const view = outage.set(command.mode, command.duration_ms);
    logger.info({ ...view, duration_ms: command.duration_ms }, command.mode === 'off' ? 'sandbox outage switched off' : 'sandbox outage on');
    return view;
  });

  app.get('/sandbox/events', async (request) => {
    const { reference } = parse(eventsQuerySchema, request.query, 'query');
    return { items: await webhooks.list(reference) };
  });

  return app;
}

/** The provider API proper (/v1/...), which a simulated outage takes down. */
function isProviderApi(url: string): boolean {
  const path = url.split('?', 1)[0]!;
  return path === '/v1' || path.startsWith('/v1/');
}

/** accept_then_error's answer: the payout exists, the response says otherwise. */
function acceptedErrorResponse(statusCode: number): StoredResponse {
  return statusCode >= 500
    ? { statusCode, body: errorBody('internal_error', 'internal error') }
    : { statusCode, body: errorBody('invalid_request', 'the request could not be processed') };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
