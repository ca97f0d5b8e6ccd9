import pg from 'pg';

// Postgres bigint (int8) and numeric arrive as strings by default; money columns are bigint minor
// units, so parse int8 to BigInt-safe numbers only when they fit, and refuse silently losing precision.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} exceeds Number.MAX_SAFE_INTEGER`);
  return n;
});

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export function createPool(connectionString: string, max = 10): pg.Pool {
  // Connections are kept once opened (no idle timeout), as a fixed-size pool: opening them at the onset of
  // a traffic spike is latency the spike's first requests would pay (seen in the overload run).
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 0 });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn inside one transaction (opened with `begin`, e.g. a stricter isolation level); rolls back on any error. */
/** A round trip to the database (the health probe). */
export async function ping(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}

export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  // A connection killed while checked out emits 'error' on the client; unhandled, it would crash the process.
  const onError = () => undefined;
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((rollbackError: unknown) => {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    });
    throw err;
  } finally {
    client.off('error', onError);
    // A connection that could not even roll back is discarded, not returned to the pool.
    client.release(broken);
  }
}
