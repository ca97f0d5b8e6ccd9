import type { Pool, PoolClient } from '../lib/db';

/** A pool or a checked-out client (inside a caller's transaction). */
export type Queryable = Pool | PoolClient;

export function isPool(db: Queryable): db is Pool {
  return 'totalCount' in db;
}

const clientsWithErrorListener = new WeakSet<PoolClient>();

/**
 * A killed backend (pg_terminate_backend, server restart) makes a checked-out client emit 'error';
 * without a listener that would crash the process. The failing query rejects anyway, which is where
 * the error is handled, and the pool discards the dead client on release.
 */
export async function connect(pool: Pool): Promise<PoolClient> {
  const client = await pool.connect();
  if (!clientsWithErrorListener.has(client)) {
    client.on('error', () => undefined);
    clientsWithErrorListener.add(client);
  }
  return client;
}

// Races the ledger's own locking already rules out, retried in case an unforeseen path produces one:
// the command is idempotent, so running it again is always safe.
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01', '23505']);
const MAX_ATTEMPTS = 3;

/**
 * Runs one ledger command in one transaction. Commits only when the command reports 'ok' (it wrote);
 * every other outcome (a repeat, a refusal) rolls back, so a refused command writes nothing.
 * Infrastructure errors are thrown: the caller retries with the same idempotency key, which either
 * finds the committed transfer or runs the command afresh, never twice.
 */
export async function runCommand<T extends { result: string }>(
  pool: Pool,
  command: (db: PoolClient) => Promise<T>,
  onRetry?: (sqlState: string) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await connect(pool);
    let releaseError: Error | undefined;
    try {
      await client.query('BEGIN');
      const outcome = await command(client);
      if (outcome.result === 'ok') {
        const committed = await client.query('COMMIT');
        // COMMIT of an aborted transaction answers ROLLBACK instead of failing; that is not 'ok'.
        if (committed.command !== 'COMMIT') throw new Error('ledger: transaction was rolled back at COMMIT');
      } else {
        await client.query('ROLLBACK');
      }
      return outcome;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        releaseError = err instanceof Error ? err : new Error(String(err)); // connection is gone: discard it
      }
      const sqlState = (err as { code?: unknown }).code;
      if (attempt < MAX_ATTEMPTS && typeof sqlState === 'string' && RETRYABLE_SQLSTATES.has(sqlState)) {
        onRetry?.(sqlState);
        continue;
      }
      throw err;
    } finally {
      client.release(releaseError);
    }
  }
}
