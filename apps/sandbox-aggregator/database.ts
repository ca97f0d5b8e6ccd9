import pg from 'pg';

/**
 * The sandbox's own store, as a real provider has one: a PostgreSQL schema of its own (by default
 * `sandbox_aggregator` in the platform's database, or wherever SANDBOX_DATABASE_URL points). Its tables are
 * the sandbox's alone; the platform never reads them.
 */
export const DEFAULT_SANDBOX_SCHEMA = 'sandbox_aggregator';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function createSandboxPool(databaseUrl: string, schema: string): pg.Pool {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`sandbox schema "${schema}" is not a plain lower-case identifier`);
  // Every connection works in the sandbox's schema; connections are kept once opened.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5, options: `-c search_path=${schema}`, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 0 });
  pool.on('error', () => undefined);
  return pool;
}

export async function ensureSandboxSchema(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await pool.query(SCHEMA_SQL);
}

const SCHEMA_SQL = `
-- Payouts and deposits as the API shows them (object), with what the lookups and the settlement report need.
CREATE TABLE IF NOT EXISTS resources (
  id text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('payout', 'deposit')),
  reference text NOT NULL,
  object jsonb NOT NULL,
  checkout_secret text,
  final_at timestamptz,
  returned_at timestamptz,
  UNIQUE (kind, reference)
);
CREATE INDEX IF NOT EXISTS resources_final_at ON resources (final_at) WHERE final_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS resources_returned_at ON resources (returned_at) WHERE returned_at IS NOT NULL;
-- A deposit's reversal (chargeback) after it succeeded; added to stores made before reversals existed.
ALTER TABLE resources ADD COLUMN IF NOT EXISTS reversed_at timestamptz;
CREATE INDEX IF NOT EXISTS resources_reversed_at ON resources (reversed_at) WHERE reversed_at IS NOT NULL;

-- Answers remembered per Idempotency-Key (scoped per resource kind), written with what they created.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  scoped_key text PRIMARY KEY,
  fingerprint text NOT NULL,
  status_code integer NOT NULL,
  body jsonb NOT NULL
);

-- Scenarios registered through the control endpoint, and error_then_ok's 503s answered so far.
CREATE TABLE IF NOT EXISTS scenarios (reference text PRIMARY KEY, scenario jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS transient_failures (scoped_key text PRIMARY KEY, answered integer NOT NULL);
-- accept_then_error: written with the payout it accepted; the error its submissions answer, how many (NULL: all), how many did.
CREATE TABLE IF NOT EXISTS accepted_errors (
  scoped_reference text PRIMARY KEY,
  status_code integer NOT NULL,
  error_attempts integer,
  answered integer NOT NULL DEFAULT 0
);

-- Each resource's scripted future (its outcome, a return), due at a time; a restart schedules what is still due.
CREATE TABLE IF NOT EXISTS steps (
  id bigserial PRIMARY KEY,
  resource_id text NOT NULL REFERENCES resources (id),
  due_at timestamptz NOT NULL,
  step jsonb NOT NULL,
  state text NOT NULL DEFAULT 'due' CHECK (state IN ('due', 'done', 'cancelled'))
);
CREATE INDEX IF NOT EXISTS steps_due ON steps (due_at) WHERE state = 'due';
CREATE INDEX IF NOT EXISTS steps_resource ON steps (resource_id);

-- Webhook deliveries: one row per delivery of one event (a duplicate callback is a second row, same event id).
CREATE TABLE IF NOT EXISTS deliveries (
  delivery_id bigserial PRIMARY KEY,
  event_id text NOT NULL,
  type text NOT NULL,
  reference text NOT NULL,
  object_id text NOT NULL,
  event_created_at text NOT NULL,
  raw_body text NOT NULL,
  state text NOT NULL CHECK (state IN ('held', 'waiting', 'scheduled', 'retrying', 'delivered', 'exhausted')),
  attempts jsonb NOT NULL DEFAULT '[]',
  after_delivery_id bigint REFERENCES deliveries (delivery_id),
  next_attempt_at timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_reference ON deliveries (reference);
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (state) WHERE state IN ('held', 'waiting', 'scheduled', 'retrying');
CREATE INDEX IF NOT EXISTS deliveries_after ON deliveries (after_delivery_id) WHERE after_delivery_id IS NOT NULL;
`;
