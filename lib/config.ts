import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DestinationKeyRing, destinationKeyRingSchema, DEV_DESTINATION_KEYS } from './destination-vault';
import { APPROVAL_ACTIONS } from '../contracts/approvals';
import { parseLimitRates, parseThreshold } from './limits';
import { CURRENCY_CODES } from '../ledger/currency';
import { PAYOUT_METHODS } from '../contracts/payout';
import { checkRoutes, parseRoutes, providerConnections } from './providers';
import { JWT_ALGORITHMS, parseRoleMap, SECRET_ALGORITHM } from './auth-claims';
import { configuredEndpointsSchema, durationSchema, parseSigningSecret } from './outbox-webhooks';

/**
 * Every setting of the platform: one env var, one documented default, one zod rule.
 * The README's configuration table is checked against this list by a test, so the two cannot drift.
 */
export const DEV_JWT_SECRET = 'dev-only-secret-change-me-0123456789abcdef';
export const DEV_SANDBOX_WEBHOOK_SECRET = 'dev-only-sandbox-webhook-secret';
export const DEV_SANDBOX_B_WEBHOOK_SECRET = 'dev-only-sandbox-b-webhook-secret';
/** The former plain dev default of OUTBOX_WEBHOOK_SECRET in whsec_ form (the two sign alike). */
export const DEV_OUTBOX_WEBHOOK_SECRET = `whsec_${Buffer.from('dev-only-outbox-webhook-secret').toString('base64')}`;

const port = z.coerce.number().int().min(1).max(65535);
const url = z.string().url();
const durationMs = z.coerce.number().int().min(1);
const methodList = z
  .string()
  .transform((text) => text.split(',').map((m) => m.trim()).filter((m) => m !== ''))
  .pipe(z.array(z.enum(PAYOUT_METHODS)).min(1));
/** `*`: every currency the ledger knows. */
const currencyList = z
  .string()
  .transform((text) => (text.trim() === '*' ? [...CURRENCY_CODES] : text.split(',').map((c) => c.trim()).filter((c) => c !== '')))
  .pipe(z.array(z.enum(CURRENCY_CODES as unknown as [string, ...string[]])).min(1));
const threshold = z.string().transform((text, ctx) => {
  const parsed = parseThreshold(text);
  if ('threshold' in parsed) return parsed.threshold;
  for (const message of parsed.problems) ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
});

interface Setting<T extends z.ZodType> {
  schema: T;
  /** Default as the README prints it; `undefined` means "unset unless given". */
  default: string | undefined;
  description: string;
  /** A bad value is not echoed in the configuration error. */
  secret?: boolean;
  /** The setting's earlier name, still read when the new one is not set. */
  formerly?: string;
}

function setting<T extends z.ZodType>(schema: T, def: string | undefined, description: string, opts: { secret?: boolean; formerly?: string } = {}): Setting<T> {
  return { schema, default: def, description: opts.formerly ? `${description} Formerly \`${opts.formerly}\`, still read.` : description, ...opts };
}

export const settings = {
  NODE_ENV: setting(z.enum(['development', 'test', 'production']), 'development', 'Runtime mode; `production` refuses the dev secrets.'),
  LOG_LEVEL: setting(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), 'info', 'pino log level.'),
  DATA_DIR: setting(z.string().min(1), '.data', 'Folder for embedded Postgres data, Temporal dev server SQLite file and launcher state.'),

  API_HOST: setting(z.string().min(1), '127.0.0.1', 'Address the API listens on.'),
  API_PORT: setting(port, '3000', 'Port of the HTTP API (OpenAPI docs at /docs).'),
  API_INSTANCES: setting(z.coerce.number().int().min(1).max(32).optional(), undefined, 'API processes the launcher starts, on consecutive ports from API_PORT (put a load balancer in front); unset: 1, or 2 with `--cluster`.'),
  API_BODY_LIMIT_BYTES: setting(z.coerce.number().int().min(1024), '65536', 'Largest accepted request body; larger gets 413.'),
  AUTH_JWT_ISSUER: setting(z.string().min(1).optional(), undefined, 'When set, bearer tokens must carry this `iss` (and `npm run token` signs with it).'),
  AUTH_JWT_AUDIENCE: setting(z.string().min(1).optional(), undefined, 'When set, bearer tokens must carry this `aud`.'),
  AUTH_JWT_SECRET: setting(z.string().min(32), DEV_JWT_SECRET, 'HS256 secret for bearer JWTs (at least 32 characters). Must be changed in production.'),
  AUTH_MAX_TOKEN_LIFETIME_SECONDS: setting(z.coerce.number().int().min(60).max(2_592_000), '86400', 'Longest accepted bearer-token lifetime (`exp` − `iat`); tokens without `iat`, or issued in the future, are refused.'),
  AUTH_JWT_ALGORITHMS: setting(
    z
      .string()
      .transform((text) => text.split(',').map((a) => a.trim()).filter((a) => a !== ''))
      .pipe(z.array(z.enum(JWT_ALGORITHMS)).min(1)),
    'HS256,RS256,ES256',
    `Signature algorithms a bearer token may use (comma-separated; \`none\` never): HS256 is checked with AUTH_JWT_SECRET, the others (${JWT_ALGORITHMS.filter((a) => a !== SECRET_ALGORITHM).join(', ')}) only against the keys at AUTH_JWKS_URL; the token's \`alg\` picks which. Leave HS256 out to accept only the identity provider's tokens (then AUTH_JWT_SECRET is never used).`,
  ),
  AUTH_JWKS_URL: setting(url.optional(), undefined, 'JWKS URL of the operator\'s identity provider (e.g. Keycloak `https://<host>/realms/<realm>/protocol/openid-connect/certs`, Auth0 `https://<tenant>/.well-known/jwks.json`, Okta `https://<org>/oauth2/default/v1/keys`): asymmetric tokens are verified against its keys, fetched again when a token names an unknown `kid` so rotated keys work. Must be https in production (unless loopback).'),
  AUTH_JWKS_COOLDOWN_MS: setting(z.coerce.number().int().min(0), '30000', 'After fetching the JWKS, how long a token with an unknown `kid` is refused without fetching it again (bounds what forged kids cost the identity provider).'),
  AUTH_JWKS_CACHE_MAX_AGE_MS: setting(z.coerce.number().int().min(1000), '600000', 'How long fetched JWKS keys are used before they are fetched again: a key the identity provider removes is still accepted for at most this long.'),
  AUTH_JWKS_TIMEOUT_MS: setting(durationMs, '5000', 'Timeout of a JWKS fetch; while the identity provider cannot be reached, tokens whose key is not cached are answered 503 SERVICE_UNAVAILABLE.'),
  AUTH_SUBJECT_CLAIM: setting(z.string().min(1).max(200), 'sub', 'Claim holding the token\'s subject (a player token\'s account id). Nested claims by dots (`ext.account_id`); a claim whose name has dots (`https://example.com/account_id`) is found as it is.'),
  AUTH_ROLE_CLAIM: setting(z.string().min(1).max(200), 'role', 'Claim holding the role: a string (space-separated values, as in `scope`) or an array of strings, nested by dots as IdPs put them (Keycloak `realm_access.roles`, Auth0 `https://<namespace>/roles`, Okta `groups`).'),
  AUTH_ROLE_MAP: setting(
    z.string().transform((text, ctx) => {
      const parsed = parseRoleMap(text);
      if ('map' in parsed) return parsed.map;
      for (const message of parsed.problems) ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }),
    '',
    'Identity-provider roles or groups and the platform role each grants, as `idp-value:role` (role player, service or staff), comma-separated: `payments-admin:staff,finance:staff,payments-backend:service,customer:player`. The first entry the token carries wins. Empty: the values `player`, `service`, `staff` themselves, that one first. Set: only the values it lists grant a role.',
  ),

  DESTINATION_KEYS: setting(
    destinationKeyRingSchema,
    DEV_DESTINATION_KEYS,
    'Key ring encrypting payout destinations at rest: `id:base64key` entries (32-byte keys, e.g. `openssl rand -base64 32`), comma-separated, the first one current; older ones still open rows not yet re-wrapped (`npm run destinations:rewrap`). Must be changed in production.',
    { secret: true },
  ),

  DATABASE_URL: setting(url.optional(), undefined, 'PostgreSQL connection string. Unset: the launcher runs embedded PostgreSQL.'),
  PG_PORT: setting(port, '5433', 'Port of the embedded PostgreSQL.'),
  PG_DATABASE: setting(z.string().regex(/^[a-z_][a-z0-9_]*$/), 'payouts', 'Database name created in the embedded PostgreSQL.'),
  PG_POOL_MAX: setting(z.coerce.number().int().min(1).max(200), '10', 'Connections per process in the pg pool.'),

  TEMPORAL_ADDRESS: setting(z.string().regex(/^[^\s:]+:\d+$/, 'host:port'), '127.0.0.1:7233', 'Temporal frontend (gRPC) address.'),
  TEMPORAL_NAMESPACE: setting(z.string().min(1), 'default', 'Temporal namespace.'),
  TEMPORAL_TASK_QUEUE: setting(z.string().min(1), 'payouts', 'Task queue of the payout worker.'),
  TEMPORAL_BACKGROUND_TASK_QUEUE: setting(z.string().min(1).optional(), undefined, 'Unset: TEMPORAL_TASK_QUEUE + `-background`. Task queue of background work (reconciliation runs, scheduled status polls of silent providers), served by a small pool of its own in each worker so it never takes the money path\'s slots.'),
  WORKER_BACKGROUND_SLOTS: setting(z.coerce.number().int().min(1).max(100), '2', 'Background activities and workflow tasks each worker runs at once (TEMPORAL_BACKGROUND_TASK_QUEUE).'),
  TEMPORAL_HISTORY_SHARDS: setting(z.coerce.number().int().min(1).max(16384), '4', 'History shards of the Temporal server that `npm start -- --cluster` runs (on PostgreSQL); fixed when its database is first set up. Production clusters use 512 or more.'),
  TEMPORAL_UI_PORT: setting(port, '8233', 'Port of the Temporal Web UI served by the dev server.'),
  TEMPORAL_CLI: setting(z.string().min(1).optional(), undefined, 'Path to a `temporal` binary to use instead of the one on PATH or the cached build.'),
  TEMPORAL_EMBEDDED: setting(z.enum(['true', 'false']).transform((v) => v === 'true'), 'true', 'Launcher starts the Temporal dev server; `false` uses the server at TEMPORAL_ADDRESS.'),

  SANDBOX_EMBEDDED: setting(z.enum(['true', 'false']).transform((v) => v === 'true'), 'true', 'Launcher starts the two sandbox aggregators (providers `sandbox` and `sandbox-b`); `false`: SANDBOX_URL and SANDBOX_B_URL are providers running elsewhere (a sandbox shared by two regions, a provider\'s test environment).'),
  SANDBOX_HOST: setting(z.string().min(1), '127.0.0.1', 'Address the sandbox aggregator listens on.'),
  SANDBOX_PORT: setting(port, '4010', 'Port of the sandbox aggregator.'),
  SANDBOX_URL: setting(url, 'http://127.0.0.1:4010', 'Where the worker reaches the aggregator.'),
  SANDBOX_WEBHOOK_SECRET: setting(z.string().min(16), DEV_SANDBOX_WEBHOOK_SECRET, 'HMAC secret of the sandbox aggregator\'s signed webhooks. Must be changed in production.'),
  SANDBOX_WEBHOOK_URL: setting(url, 'http://127.0.0.1:3000/v1/webhooks/sandbox', 'Where the sandbox aggregator sends its webhooks.'),
  SANDBOX_API_TOKEN: setting(z.string().min(32).optional(), undefined, 'Bearer token the sandbox aggregator requires on its API and control endpoints, and the worker sends. Unset: no token (development and tests only; the sandbox refuses to start without one in production).'),

  SANDBOX_SCHEMA: setting(z.string().regex(/^[a-z_][a-z0-9_]*$/), 'sandbox_aggregator', 'Schema the sandbox aggregator process keeps its state in (each instance its own; the launcher gives `sandbox-b` `sandbox_aggregator_b`).'),
  SANDBOX_METHODS: setting(methodList, 'bank_transfer,card,ewallet', 'Payout destination methods provider `sandbox` accepts (comma-separated): routing sends it nothing else, and the sandbox refuses anything else.'),
  SANDBOX_CURRENCIES: setting(currencyList, '*', 'Currencies provider `sandbox` accepts (comma-separated ISO 4217 codes, or `*` for every currency the ledger knows).'),
  SANDBOX_B_PORT: setting(port, '4011', 'Port of the second sandbox aggregator, provider `sandbox-b`.'),
  SANDBOX_B_URL: setting(url, 'http://127.0.0.1:4011', 'Where the worker reaches provider `sandbox-b`.'),
  SANDBOX_B_WEBHOOK_SECRET: setting(z.string().min(16), DEV_SANDBOX_B_WEBHOOK_SECRET, 'HMAC secret of provider `sandbox-b`\'s signed webhooks (its own: a `sandbox` webhook is refused on its route). Must be changed in production.'),
  SANDBOX_B_WEBHOOK_URL: setting(url, 'http://127.0.0.1:3000/v1/webhooks/sandbox-b', 'Where provider `sandbox-b` sends its webhooks.'),
  SANDBOX_B_API_TOKEN: setting(z.string().min(32).optional(), undefined, 'Bearer token of provider `sandbox-b` (as SANDBOX_API_TOKEN is for `sandbox`).'),
  SANDBOX_B_METHODS: setting(methodList, 'card,ewallet', 'Payout destination methods provider `sandbox-b` accepts.'),
  SANDBOX_B_CURRENCIES: setting(currencyList, 'EUR,GBP,USD', 'Currencies provider `sandbox-b` accepts.'),
  PAYOUT_ROUTES: setting(
    z.string().transform((text, ctx) => {
      const parsed = parseRoutes(text);
      if ('rules' in parsed) return parsed.rules;
      for (const message of parsed.problems) ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }),
    'card,ewallet -> sandbox-b, sandbox; * -> sandbox, sandbox-b',
    'Which providers a payout goes to, in order of preference (the later ones are its fallbacks): rules separated by `;`, the first that matches wins. A rule is `<conditions> -> <provider>, <provider>...`; conditions are `*`, destination methods (`card,ewallet`), `currency=EUR,GBP`, `amount<=500` or `amount>500` (EUR-equivalent major units, converted with LIMIT_CURRENCY_RATES), separated by spaces. A provider that does not accept the payout\'s method or currency is skipped. Checked at start: every rule names known providers, and every method and currency some provider accepts has a route.',
  ),
  PROVIDER_FAILOVER_AFTER_MS: setting(durationMs, '120000', 'A submission its provider leaves unanswered (unreachable, 5xx) this long is checked with that provider: only if it has no such payout, or failed it, does the payout move to the next provider of its route (under a new key). Otherwise it keeps waiting on the first.'),
  PROVIDER_BREAKER_ERROR_PERCENT: setting(z.coerce.number().int().min(1).max(100), '50', 'Percentage of a provider\'s submissions failing (unreachable, 5xx, timeout; not refusals) within PROVIDER_BREAKER_WINDOW_MS above which its circuit breaker opens: new payouts are routed to its fallbacks.'),
  PROVIDER_BREAKER_MIN_CALLS: setting(z.coerce.number().int().min(1), '5', 'Calls within the window before the breaker judges a provider.'),
  PROVIDER_BREAKER_WINDOW_MS: setting(durationMs, '30000', 'Rolling window of the breaker\'s failure rate.'),
  PROVIDER_BREAKER_RESET_MS: setting(durationMs, '15000', 'How long an open breaker waits before it lets one call through as a trial (routing tries a harmless `GET /health` first); answered, the provider gets new payouts again.'),

  CHAOS_BREAK: setting(
    z.enum(['submission-key']).optional(),
    undefined,
    'Test only, refused in production: a deliberately broken build for the chaos run to catch. submission-key: every retried provider submission is sent as a new payout (its own key and reference).',
  ),
  SANDBOX_DATABASE_URL: setting(url.optional(), undefined, 'PostgreSQL where the sandbox aggregator keeps its state (schema sandbox_aggregator). Unset: the platform\'s database.'),
  SANDBOX_CALLBACK_DELAY_MS: setting(z.coerce.number().int().min(0), '1000', 'How long the sandbox aggregator waits before resolving a payout or deposit and calling back.'),
  WEBHOOK_TOLERANCE_SECONDS: setting(z.coerce.number().int().min(1).max(3600), '300', 'Largest accepted age (or clock skew) of a webhook signature timestamp.'),

  SAGA_SYNC_DEADLINE_MS: setting(durationMs, '3000', 'How long POST /v1/payouts and /v1/deposits wait for the saga\'s first decision (funds held, checkout created) before answering 202.', { formerly: 'PAYOUT_SYNC_DEADLINE_MS' }),
  FOUR_EYES_ACTIONS: setting(
    z
      .string()
      .transform((text) => (text.trim() === 'none' ? [] : text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')))
      .pipe(z.array(z.enum(APPROVAL_ACTIONS))),
    APPROVAL_ACTIONS.join(','),
    `Manual money actions that need a second staff member's approval before they take effect (comma-separated; \`none\`: staff act alone): ${APPROVAL_ACTIONS.join(', ')}. Requests are listed at GET /v1/ops/approvals.`,
  ),
  REVERSE_WITHDRAWALS: setting(
    z.enum(['forbidden', 'allowed']),
    'forbidden',
    'Whether a player (or the operator\'s backend on its behalf) may cancel its own payout before submission. `forbidden`, the regulated-market rule (UK Gambling Commission, 2020): their cancel is 403 REVERSE_WITHDRAWAL_FORBIDDEN and the payout goes on; staff still cancel, with a reason, at POST /v1/ops/payouts/{id}/cancel (audited).',
  ),
  PAYOUT_REVIEW_ABOVE: setting(
    threshold,
    '2000',
    'A payout above this is held and waits for a staff review (PENDING_REVIEW) before it is submitted: EUR-equivalent major units (converted with LIMIT_CURRENCY_RATES), optionally followed by amounts per currency in its own major units (`2000,GBP:1700`); `none`: no reviews.',
  ),
  PAYOUT_DUAL_APPROVAL_ABOVE: setting(threshold, '5000', 'Above this a review\'s decision takes two different staff members (under four eyes: FOUR_EYES_ACTIONS has payout_review); same format as PAYOUT_REVIEW_ABOVE.'),
  PAYOUT_REVIEW_SLA_MS: setting(durationMs, '86400000', 'A payout waiting for review longer than this is marked stuck (PayoutStuck) for staff; it keeps waiting.'),
  PAYOUT_LIMIT_BREACH: setting(z.enum(['decline', 'review']), 'decline', 'A payout over the daily amount or the hourly count: `decline` it (LIMIT_EXCEEDED, VELOCITY_LIMIT_EXCEEDED), or send it to staff review.'),
  PAYOUT_SUBMIT_DELAY_MS: setting(z.coerce.number().int().min(0), '0', 'Reversal window after the hold, before submission, in which a payout can be cancelled.'),
  PROVIDER_POLL_INITIAL_MS: setting(durationMs, '30000', 'First provider status poll of a payout or deposit when no callback came; doubles each time.', { formerly: 'PAYOUT_POLL_INITIAL_MS' }),
  PROVIDER_POLL_MAX_MS: setting(durationMs, '600000', 'Longest interval between provider status polls.', { formerly: 'PAYOUT_POLL_MAX_MS' }),
  PROVIDER_STUCK_AFTER_MS: setting(durationMs, '3600000', 'A payout or deposit waiting on its provider longer than this is marked stuck (search attribute PayoutStuck) for staff.', { formerly: 'PAYOUT_STUCK_AFTER_MS' }),
  SAGA_CONTINUE_AS_NEW_AFTER_EVENTS: setting(z.coerce.number().int().min(50), '10000', 'A saga awaiting its provider continues as a new run past this many history events (bounded history).', { formerly: 'PAYOUT_CONTINUE_AS_NEW_AFTER_EVENTS' }),
  PAYOUT_RETURN_WINDOW_MS: setting(durationMs, '604800000', 'How long a settled payout saga stays open to refund a provider return.'),
  PAYOUT_MAX_AMOUNT: setting(z.coerce.number().positive(), '10000', 'Largest single payout, in EUR-equivalent major units (converted per currency with LIMIT_CURRENCY_RATES).'),
  PAYOUT_DAILY_MAX_AMOUNT: setting(z.coerce.number().positive(), '50000', 'Largest total of one account\'s payouts in 24 hours, in EUR-equivalent major units.'),
  PAYOUT_HOURLY_MAX_COUNT: setting(z.coerce.number().int().positive(), '20', 'Most payouts one account may request in an hour (velocity limit).'),
  DEPOSIT_MAX_AMOUNT: setting(z.coerce.number().positive(), '10000', 'Largest single deposit, in EUR-equivalent major units; a larger request is refused (422 LIMIT_EXCEEDED) and writes nothing.'),
  DEPOSIT_DAILY_MAX_AMOUNT: setting(z.coerce.number().positive(), '50000', 'Largest total of one account\'s deposits in 24 hours, in EUR-equivalent major units; the saga refuses more (LIMIT_EXCEEDED).'),
  ACCOUNT_MAX_BALANCE: setting(z.coerce.number().positive(), '1000000', 'Largest balance a deposit may bring an account to (deposits not yet credited included), in EUR-equivalent major units.'),
  LIMIT_CURRENCY_RATES: setting(
    z.string().transform((text, ctx) => {
      const parsed = parseLimitRates(text);
      if ('rates' in parsed) return parsed.rates;
      for (const message of parsed.problems) ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }),
    '',
    'Major units of a currency worth about one EUR, as `CUR:rate,...` (e.g. `JPY:160,BHD:0.41`), over built-in defaults for every currency (lib/limits.ts): converts the EUR-equivalent limits.',
  ),

  OUTBOX_ENDPOINTS: setting(
    configuredEndpointsSchema,
    '',
    'Operator endpoints that receive ledger events as Standard Webhooks, applied when the outbox publisher starts (staff change them at /v1/ops/outbox/endpoints): a JSON array of `{"id", "url", "secret"?, "event_types"?, "enabled"?, "from"?, "keep_previous_until"?}` (`secret` a `whsec_` secret, default OUTBOX_WEBHOOK_SECRET; `event_types` like `["payout.*", "deposit.credited"]`, empty for all; `from` `beginning` or `now`), or comma-separated URLs (id `url-<hash>`, every type, OUTBOX_WEBHOOK_SECRET). Empty: only the endpoints staff add.',
    { secret: true },
  ),
  OUTBOX_WEBHOOK_SECRET: setting(
    z.string().transform((text, ctx) => {
      try {
        return parseSigningSecret(text, { legacy: true }).secret;
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
    DEV_OUTBOX_WEBHOOK_SECRET,
    'Signing secret of the outbox endpoints that name none (Standard Webhooks, `whsec_<base64 key>`: `echo whsec_$(openssl rand -base64 32)`). Other text of 16+ characters is still taken as the key\'s bytes (receivers use `whsec_` + its base64). Must be changed in production.',
    { secret: true },
  ),
  OUTBOX_HEALTH_ADDRESS: setting(z.string().regex(/^[^\s:]+:\d+$/, 'host:port'), '127.0.0.1:9466', 'Where the outbox publisher serves GET /health/live and /health/ready (ready: its loop running and PostgreSQL answering).'),
  OUTBOX_BATCH_SIZE: setting(z.coerce.number().int().min(1).max(1000), '100', 'Events the outbox publisher claims per batch.'),
  OUTBOX_POLL_INTERVAL_MS: setting(durationMs, '500', 'How often the outbox publisher looks for new events when idle.'),
  OUTBOX_RETRY_WINDOW: setting(
    durationSchema,
    '3d',
    'How long a failing outbox delivery is retried, from its first failure, before it is dead-lettered (milliseconds, or a number with ms, s, m, h, d). A dead letter holds its account\'s later events for that endpoint until staff replay or skip it.',
  ),
  OUTBOX_BACKOFF_BASE_MS: setting(durationMs, '1000', 'First retry delay of a failed outbox delivery; doubles per attempt up to OUTBOX_BACKOFF_MAX_MS.'),
  OUTBOX_BACKOFF_MAX_MS: setting(durationMs, '3600000', 'Longest delay between two attempts of a failing outbox delivery.'),

  ADMISSION_LATENCY_TARGET_MS: setting(
    durationMs,
    '120',
    'Decision latency (p90 of each half-second window) the admission gate keeps new payouts and deposits under: above it each API instance admits fewer at once, and the excess is answered 429 OVERLOADED at once.',
  ),
  ADMISSION_MAX_IN_FLIGHT: setting(z.coerce.number().int().min(2).max(10_000), '64', 'Most new payouts and deposits one API instance lets await their decision at once (the ceiling of the adaptive limit).'),
  RATE_LIMIT_ACCOUNT_PER_MINUTE: setting(z.coerce.number().int().min(1), '60', 'Payout and deposit requests per account per minute (all API instances together); more get 429 RATE_LIMITED.'),
  RATE_LIMIT_SUBJECT_PER_MINUTE: setting(z.coerce.number().int().min(1), '6000', 'Authenticated requests per token subject per minute (all API instances together); more get 429 RATE_LIMITED.'),
  RATE_LIMIT_WEBHOOK_PER_MINUTE: setting(z.coerce.number().int().min(1), '30000', 'Webhooks per provider per minute (all API instances together); more get 429 and the provider redelivers later.'),
  PLATFORM_MODE_REFRESH_MS: setting(durationMs, '500', 'How often each API instance reads the degradation mode staff set (PUT /v1/ops/mode).'),

  RECONCILIATION_INTERVAL_SECONDS: setting(z.coerce.number().int().min(10), '900', 'How often the reconciliation schedule compares the ledger with the provider\'s settlement report.'),

  TRACING_EXPORTER: setting(z.enum(['off', 'console', 'otlp']), 'off', 'OpenTelemetry traces through API → workflow → activities: off, console, or otlp (OTEL_EXPORTER_OTLP_ENDPOINT).'),
  OTEL_EXPORTER_OTLP_ENDPOINT: setting(url.optional(), undefined, 'OTLP/HTTP collector base URL when TRACING_EXPORTER=otlp (the standard OpenTelemetry variable).'),
  WORKER_METRICS_ADDRESS: setting(z.string().regex(/^[^\s:]+:\d+$/, 'host:port'), '127.0.0.1:9464', 'Where the worker serves Prometheus metrics (its own and the Temporal SDK\'s).'),
  WORKER_HEALTH_ADDRESS: setting(z.string().regex(/^[^\s:]+:\d+$/, 'host:port'), '127.0.0.1:9465', 'Where the worker serves GET /health/live and /health/ready (ready: each of its pools polling and PostgreSQL answering); `0.0.0.0:9465` in a container, for the probes.'),
  WORKER_PROCESSES: setting(z.coerce.number().int().min(1).max(32).optional(), undefined, 'Worker processes the launcher starts, each polling the same task queues (metrics on consecutive ports from WORKER_METRICS_ADDRESS); unset: 1, or 2 with `--cluster`.'),
  WORKER_MAX_CACHED_WORKFLOWS: setting(
    z.coerce.number().int().min(2).max(100_000),
    '1000',
    'Sagas a worker keeps in memory between their workflow tasks (sticky cache). Settled payouts wait out their 7-day return window: past this many, the least recently used are evicted and replayed when next needed, so memory stays bounded.',
  ),
  WORKFLOW_TASK_FAILURE_RECHECK_MS: setting(durationMs, '30000', 'How often the worker checks sagas marked for a failing workflow task, and removes the mark of those healthy again.'),

  HEALTH_TIMEOUT_MS: setting(durationMs, '2000', 'Per-dependency timeout of the health checks (the API\'s GET /health and /health/ready, the worker\'s and the outbox publisher\'s /health/ready).'),
} as const;

export type SettingName = keyof typeof settings;

type Parsed = { [K in SettingName]: z.output<(typeof settings)[K]['schema']> };

export type Config = Parsed & {
  /** DATA_DIR resolved against the repository root. */
  dataDirAbsolute: string;
};

export class ConfigError extends Error {
  constructor(readonly problems: { setting: string; message: string }[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  ${p.setting}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** The folder of package.json (and migrations/): lib/'s parent in the sources, further up when compiled into dist/ (npm run build). */
export const repoRoot = packageRoot(path.resolve(import.meta.dirname, '..'));
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return from;
  }
}

export interface LoadOptions {
  /** Settings this process cannot run without in production (e.g. the sandbox's SANDBOX_API_TOKEN). */
  requiredInProduction?: SettingName[];
  /**
   * This process is one provider (a sandbox aggregator reads its own settings as SANDBOX_*), not the
   * platform: the platform's checks across its providers (routes, distinct webhook secrets) do not apply.
   */
  asProvider?: boolean;
}

/** Parses the environment; throws a ConfigError naming each bad setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, opts: LoadOptions = {}): Config {
  const problems: { setting: string; message: string }[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(settings) as [SettingName, Setting<z.ZodType>][]) {
    const given = (key: string | undefined) => (key === undefined || env[key] === '' ? undefined : env[key]);
    const raw = given(name) ?? given(s.formerly);
    if (s.formerly && given(name) !== undefined && given(s.formerly) !== undefined && given(name) !== given(s.formerly)) {
      problems.push({ setting: name, message: `set differently under its former name ${s.formerly}; keep one` });
    }
    const result = s.schema.safeParse(raw ?? s.default);
    if (result.success) out[name] = result.data;
    else problems.push({ setting: name, message: `${s.secret ? '(value not shown)' : JSON.stringify(raw)} is not valid: ${result.error.issues.map((i) => i.message).join('; ')}` });
  }
  if (problems.length === 0 && !opts.asProvider) {
    const parsedSoFar = out as Parsed;
    for (const message of checkRoutes(parsedSoFar.PAYOUT_ROUTES, providerConnections(parsedSoFar), parsedSoFar.LIMIT_CURRENCY_RATES)) problems.push({ setting: 'PAYOUT_ROUTES', message });
    // One provider's webhooks must not pass on the other's route.
    if (parsedSoFar.SANDBOX_B_WEBHOOK_SECRET === parsedSoFar.SANDBOX_WEBHOOK_SECRET) problems.push({ setting: 'SANDBOX_B_WEBHOOK_SECRET', message: 'must differ from SANDBOX_WEBHOOK_SECRET' });
  }
  for (const problem of authVerifierProblems(out)) problems.push(problem);
  if (out.NODE_ENV === 'production') {
    if (out.AUTH_JWT_SECRET === DEV_JWT_SECRET && acceptsSecretTokens(out)) {
      problems.push({ setting: 'AUTH_JWT_SECRET', message: 'the dev default is refused in production (or leave HS256 out of AUTH_JWT_ALGORITHMS to accept only the identity provider\'s tokens)' });
    }
    const jwks = typeof out.AUTH_JWKS_URL === 'string' ? new URL(out.AUTH_JWKS_URL) : undefined;
    // Keys fetched over plain http could be swapped by anyone on the path, and with them every token.
    if (jwks && jwks.protocol !== 'https:' && !isLoopback(jwks.hostname)) problems.push({ setting: 'AUTH_JWKS_URL', message: 'must be https in production (http only on a loopback address)' });
    if (out.SANDBOX_WEBHOOK_SECRET === DEV_SANDBOX_WEBHOOK_SECRET) problems.push({ setting: 'SANDBOX_WEBHOOK_SECRET', message: 'the dev default is refused in production' });
    if (!opts.asProvider && out.SANDBOX_B_WEBHOOK_SECRET === DEV_SANDBOX_B_WEBHOOK_SECRET) problems.push({ setting: 'SANDBOX_B_WEBHOOK_SECRET', message: 'the dev default is refused in production' });
    if (out.OUTBOX_WEBHOOK_SECRET === DEV_OUTBOX_WEBHOOK_SECRET) problems.push({ setting: 'OUTBOX_WEBHOOK_SECRET', message: 'the dev default is refused in production' });
    if (out.DESTINATION_KEYS instanceof DestinationKeyRing && out.DESTINATION_KEYS.sharesKeyWith(DestinationKeyRing.parse(DEV_DESTINATION_KEYS))) {
      problems.push({ setting: 'DESTINATION_KEYS', message: 'the dev key is refused in production' });
    }
    if (out.CHAOS_BREAK !== undefined) problems.push({ setting: 'CHAOS_BREAK', message: 'a deliberately broken build is refused in production' });
    for (const name of opts.requiredInProduction ?? []) if (out[name] === undefined) problems.push({ setting: name, message: 'required in production' });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const parsed = out as Parsed;
  return { ...parsed, dataDirAbsolute: path.resolve(repoRoot, parsed.DATA_DIR) };
}

function acceptsSecretTokens(out: Record<string, unknown>): boolean {
  return Array.isArray(out.AUTH_JWT_ALGORITHMS) && out.AUTH_JWT_ALGORITHMS.includes(SECRET_ALGORITHM);
}

/** Every accepted algorithm needs its verifier, and a configured JWKS an algorithm to use it with. */
function authVerifierProblems(out: Record<string, unknown>): { setting: string; message: string }[] {
  if (!Array.isArray(out.AUTH_JWT_ALGORITHMS)) return [];
  const asymmetric = (out.AUTH_JWT_ALGORITHMS as string[]).filter((a) => a !== SECRET_ALGORITHM);
  if (out.AUTH_JWKS_URL === undefined && asymmetric.length > 0 && !acceptsSecretTokens(out)) {
    return [{ setting: 'AUTH_JWT_ALGORITHMS', message: `${asymmetric.join(', ')} need AUTH_JWKS_URL; without it no token could be verified` }];
  }
  if (out.AUTH_JWKS_URL !== undefined && asymmetric.length === 0) {
    return [{ setting: 'AUTH_JWT_ALGORITHMS', message: 'AUTH_JWKS_URL is set but no asymmetric algorithm (RS256, ES256, ...) is accepted' }];
  }
  return [];
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** For process entry points: load or print the problem and exit non-zero. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env, opts: LoadOptions = {}): Config {
  try {
    return loadConfig(env, opts);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}

/** The task queue of background work (TEMPORAL_BACKGROUND_TASK_QUEUE, derived from the main one when unset). */
export function backgroundTaskQueue(config: Pick<Config, 'TEMPORAL_TASK_QUEUE' | 'TEMPORAL_BACKGROUND_TASK_QUEUE'>): string {
  return config.TEMPORAL_BACKGROUND_TASK_QUEUE ?? `${config.TEMPORAL_TASK_QUEUE}-background`;
}

/** The Postgres URL to use: DATABASE_URL, or the embedded server's. */
export function databaseUrl(config: Config): string {
  return config.DATABASE_URL ?? `postgres://postgres:postgres@127.0.0.1:${config.PG_PORT}/${config.PG_DATABASE}`;
}
