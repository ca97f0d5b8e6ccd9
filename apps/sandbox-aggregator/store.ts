import { createHash } from 'node:crypto';
import type pg from 'pg';
import { inTransaction } from '../../lib/db';
import type { Deposit, Payout } from './objects';
import type { Scenario } from './schemas';

/**
 * The sandbox's state, kept in its own PostgreSQL schema (see database.ts) as a real provider keeps its own:
 * a restart loses no payout, no remembered answer, no scripted outcome and no webhook still to send.
 */

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** One transaction, and what to do once it has committed (timers, deliveries): never for work rolled back. */
export interface Unit {
  tx: pg.PoolClient;
  afterCommit(task: () => void): void;
}

export async function inUnit<T>(pool: pg.Pool, fn: (unit: Unit) => Promise<T>): Promise<T> {
  const tasks: (() => void)[] = [];
  const result = await inTransaction(pool, (tx) => fn({ tx, afterCommit: (task) => tasks.push(task) }));
  for (const task of tasks) task();
  return result;
}

export type Resource = { kind: 'payout'; object: Payout } | { kind: 'deposit'; object: Deposit };

export class DuplicateReference extends Error {
  constructor(readonly existing: Payout | Deposit) {
    super(`a ${existing.object} with reference ${existing.reference} already exists`);
  }
}

export interface StoredResponse {
  statusCode: number;
  body: unknown;
}

/** An answer and whether it is final for its idempotency key (transient errors are not: the retry must run again). */
export interface ProducedResponse extends StoredResponse {
  remember: boolean;
  /** Held back this long after it is committed (the `slow` scenario), still in the key's turn. */
  holdMs?: number;
}

/** substituted: `instead` answered in place of the fresh or replayed response (accept_then_error). */
export type IdempotentResult = { outcome: 'mismatch' } | { outcome: 'fresh' | 'replayed'; response: StoredResponse; substituted?: true };

/**
 * Idempotency-Key handling: the first request runs, later ones with the same key and the same body get its
 * answer, ones with a different body are refused. The answer is written in the transaction that created
 * what it describes, so a crash cannot leave a payout without its answer (and a retry making a second one).
 * Requests with one key take turns in this process (the sandbox runs as one process): a duplicate waits
 * for the first and replays it; one with another body is refused at once.
 */
export class IdempotencyStore {
  private readonly turns = new Map<string, { fingerprint: string; done: Promise<void> }>();

  constructor(private readonly pool: pg.Pool) {}

  /**
   * `instead`, asked once the response is known (in the key's turn, before any hold), may answer something else
   * in its place; the remembered response stays as it is.
   */
  async execute(
    scopedKey: string,
    fingerprint: string,
    produce: (unit: Unit) => Promise<ProducedResponse>,
    hold: (ms: number) => Promise<void>,
    instead: () => Promise<StoredResponse | undefined> = async () => undefined,
  ): Promise<IdempotentResult> {
    const current = this.turns.get(scopedKey);
    if (current && current.fingerprint !== fingerprint) return { outcome: 'mismatch' };
    let finish!: () => void;
    const turn = { fingerprint, done: new Promise<void>((resolve) => (finish = resolve)) };
    this.turns.set(scopedKey, turn);
    try {
      await current?.done;
      const stored = await this.pool.query<{ fingerprint: string; status_code: number; body: unknown }>('SELECT fingerprint, status_code, body FROM idempotency_keys WHERE scoped_key = $1', [scopedKey]);
      const record = stored.rows[0];
      if (record && record.fingerprint !== fingerprint) return { outcome: 'mismatch' };
      if (record) {
        const substitute = await instead();
        return substitute ? { outcome: 'replayed', response: substitute, substituted: true } : { outcome: 'replayed', response: { statusCode: record.status_code, body: record.body } };
      }
      const { remember, holdMs, ...response } = await inUnit(this.pool, async (unit) => {
        const produced = await produce(unit);
        if (produced.remember) {
          await unit.tx.query('INSERT INTO idempotency_keys (scoped_key, fingerprint, status_code, body) VALUES ($1, $2, $3, $4)', [scopedKey, fingerprint, produced.statusCode, JSON.stringify(produced.body)]);
        }
        return produced;
      });
      const substitute = await instead();
      if (substitute) return { outcome: 'fresh', response: substitute, substituted: true };
      // Nothing may come after the hold: close() ends it and expects the answer out at once.
      if (holdMs) await hold(holdMs);
      return { outcome: 'fresh', response };
    } finally {
      finish();
      if (this.turns.get(scopedKey) === turn) this.turns.delete(scopedKey);
    }
  }
}

/** A stable hash of a JSON value: key order does not matter, everything else does. */
export function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export interface StepRow<S> {
  id: number;
  resourceId: string;
  dueAt: Date;
  step: S;
}

function finalAtOf(object: Payout | Deposit): string | null {
  return object.object === 'payout' ? (object.settled_at ?? object.failed_at ?? null) : (object.succeeded_at ?? object.failed_at ?? null);
}

export class SandboxStore {
  readonly idempotency: IdempotencyStore;

  constructor(readonly pool: pg.Pool) {
    this.idempotency = new IdempotencyStore(pool);
  }

  async resource(id: string, db: Queryable = this.pool, lock = false): Promise<Resource | undefined> {
    const { rows } = await db.query<{ kind: 'payout' | 'deposit'; object: Payout & Deposit }>(`SELECT kind, object FROM resources WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    return rows[0] ? ({ kind: rows[0].kind, object: rows[0].object } as Resource) : undefined;
  }

  async payout(id: string): Promise<Payout | undefined> {
    const found = await this.resource(id);
    return found?.kind === 'payout' ? found.object : undefined;
  }

  async deposit(id: string): Promise<Deposit | undefined> {
    const found = await this.resource(id);
    return found?.kind === 'deposit' ? found.object : undefined;
  }

  async byReference<K extends Resource['kind']>(kind: K, reference: string, db: Queryable = this.pool): Promise<Extract<Resource, { kind: K }>['object'] | undefined> {
    const { rows } = await db.query('SELECT object FROM resources WHERE kind = $1 AND reference = $2', [kind, reference]);
    return rows[0]?.object;
  }

  /** Adds a new payout or deposit; another one under its reference (even one committed a moment ago) is a DuplicateReference. */
  async insert(unit: Unit, resource: Resource, checkoutSecret?: string): Promise<void> {
    const { object } = resource;
    const inserted = await unit.tx.query(
      `INSERT INTO resources (id, kind, reference, object, checkout_secret) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, reference) DO NOTHING`,
      [object.id, resource.kind, object.reference, JSON.stringify(object), checkoutSecret ?? null],
    );
    if (inserted.rowCount === 0) throw new DuplicateReference((await this.byReference(resource.kind, object.reference, unit.tx))!);
  }

  async update(unit: Unit, object: Payout | Deposit): Promise<void> {
    const returnedAt = object.object === 'payout' ? (object.returned_at ?? null) : null;
    const reversedAt = object.object === 'deposit' ? (object.reversed_at ?? null) : null;
    await unit.tx.query('UPDATE resources SET object = $2, final_at = $3, returned_at = $4, reversed_at = $5 WHERE id = $1', [
      object.id,
      JSON.stringify(object),
      finalAtOf(object),
      returnedAt,
      reversedAt,
    ]);
  }

  /** Everything whose final state, return (payouts) or reversal (deposits) falls in [since, until). */
  async finalBetween(since: Date, until: Date): Promise<Resource[]> {
    const { rows } = await this.pool.query(
      `SELECT kind, object FROM resources
       WHERE (final_at >= $1 AND final_at < $2) OR (returned_at >= $1 AND returned_at < $2) OR (reversed_at >= $1 AND reversed_at < $2)`,
      [since, until],
    );
    return rows.map((row) => ({ kind: row.kind, object: row.object }));
  }

  /** The payouts and deposits under a reference still pending, locked (a payout first). */
  async pendingByReference(unit: Unit, reference: string): Promise<Resource[]> {
    const { rows } = await unit.tx.query("SELECT kind, object FROM resources WHERE reference = $1 AND object->>'status' = 'pending' ORDER BY kind DESC FOR UPDATE", [reference]);
    return rows.map((row) => ({ kind: row.kind, object: row.object }));
  }

  /** A deposit and the secret of its checkout page. */
  async depositCheckout(id: string): Promise<{ deposit: Deposit; secret: string } | undefined> {
    const { rows } = await this.pool.query<{ object: Deposit; checkout_secret: string | null }>("SELECT object, checkout_secret FROM resources WHERE id = $1 AND kind = 'deposit'", [id]);
    const row = rows[0];
    return row?.checkout_secret ? { deposit: row.object, secret: row.checkout_secret } : undefined;
  }

  async scenario(reference: string, db: Queryable = this.pool): Promise<Scenario | undefined> {
    const { rows } = await db.query<{ scenario: Scenario }>('SELECT scenario FROM scenarios WHERE reference = $1', [reference]);
    return rows[0]?.scenario;
  }

  async setScenario(unit: Unit, reference: string, scenario: Scenario): Promise<void> {
    await unit.tx.query('INSERT INTO scenarios (reference, scenario) VALUES ($1, $2) ON CONFLICT (reference) DO UPDATE SET scenario = EXCLUDED.scenario', [reference, JSON.stringify(scenario)]);
  }

  async deleteScenario(reference: string): Promise<void> {
    await this.pool.query('DELETE FROM scenarios WHERE reference = $1', [reference]);
  }

  /** error_then_ok: counts one more 503 for this key unless `limit` were answered already; true when counted. */
  async countTransientFailure(unit: Unit, scopedKey: string, limit: number): Promise<boolean> {
    if (limit <= 0) return false;
    const counted = await unit.tx.query(
      `INSERT INTO transient_failures (scoped_key, answered) VALUES ($1, 1)
       ON CONFLICT (scoped_key) DO UPDATE SET answered = transient_failures.answered + 1 WHERE transient_failures.answered < $2`,
      [scopedKey, limit],
    );
    return counted.rowCount === 1;
  }

  /** accept_then_error: from now on, submissions with this (kind-scoped) reference answer `statusCode`, up to errorAttempts of them. */
  async armAcceptedError(unit: Unit, scopedReference: string, statusCode: number, errorAttempts: number | undefined): Promise<void> {
    await unit.tx.query('INSERT INTO accepted_errors (scoped_reference, status_code, error_attempts) VALUES ($1, $2, $3) ON CONFLICT (scoped_reference) DO NOTHING', [
      scopedReference,
      statusCode,
      errorAttempts ?? null,
    ]);
  }

  /** The status this submission answers instead of its own (one more counted), or undefined when none is due. */
  async takeAcceptedError(scopedReference: string): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ status_code: number }>(
      `UPDATE accepted_errors SET answered = answered + 1
       WHERE scoped_reference = $1 AND (error_attempts IS NULL OR answered < error_attempts) RETURNING status_code`,
      [scopedReference],
    );
    return rows[0]?.status_code;
  }

  async insertStep<S>(unit: Unit, resourceId: string, dueAt: Date, step: S): Promise<number> {
    const { rows } = await unit.tx.query<{ id: string }>('INSERT INTO steps (resource_id, due_at, step) VALUES ($1, $2, $3) RETURNING id', [resourceId, dueAt, JSON.stringify(step)]);
    return Number(rows[0]!.id);
  }

  /** Cancels a resource's steps still due (re-scripted or resolved by hand). */
  async cancelSteps(unit: Unit, resourceId: string): Promise<void> {
    await unit.tx.query("UPDATE steps SET state = 'cancelled' WHERE resource_id = $1 AND state = 'due'", [resourceId]);
  }

  /** The step, locked, if it is still due. */
  async claimStep<S>(unit: Unit, id: number): Promise<StepRow<S> | undefined> {
    const { rows } = await unit.tx.query("SELECT id, resource_id, due_at, step FROM steps WHERE id = $1 AND state = 'due' FOR UPDATE", [id]);
    return rows[0] ? { id: Number(rows[0].id), resourceId: rows[0].resource_id, dueAt: rows[0].due_at, step: rows[0].step } : undefined;
  }

  /** Whether an earlier step of the same resource is still due (steps of one resource play in their order). */
  async hasEarlierDueStep<S>(unit: Unit, row: StepRow<S>): Promise<boolean> {
    const earlier = await unit.tx.query("SELECT 1 FROM steps WHERE resource_id = $1 AND state = 'due' AND (due_at, id) < ($2, $3)", [row.resourceId, row.dueAt, row.id]);
    return (earlier.rowCount ?? 0) > 0;
  }

  async completeStep(unit: Unit, id: number): Promise<void> {
    await unit.tx.query("UPDATE steps SET state = 'done' WHERE id = $1", [id]);
  }

  async dueSteps<S>(): Promise<StepRow<S>[]> {
    const { rows } = await this.pool.query("SELECT id, resource_id, due_at, step FROM steps WHERE state = 'due' ORDER BY due_at, id");
    return rows.map((row) => ({ id: Number(row.id), resourceId: row.resource_id, dueAt: row.due_at, step: row.step }));
  }
}
