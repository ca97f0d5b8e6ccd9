import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { toProblem } from '../apps/api/common/problem.filter';
import { freePort } from '../lib/wait';

/** PostgreSQL down is a dependency being unavailable (503, retry), not an internal error (500). */
describe('problem for an unreachable database', () => {
  async function errorOf(run: () => Promise<unknown>): Promise<unknown> {
    try {
      await run();
    } catch (err) {
      return err;
    }
    throw new Error('expected an error');
  }

  it('a refused connection and a pool that cannot connect in time are 503 SERVICE_UNAVAILABLE', async () => {
    const port = await freePort(); // nothing listens there
    const pool = new pg.Pool({ connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/payouts`, connectionTimeoutMillis: 200 });
    try {
      const refused = await errorOf(() => pool.query('SELECT 1'));
      expect(toProblem(refused)).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
    } finally {
      await pool.end();
    }
    for (const err of [Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), new Error('Connection terminated unexpectedly'), new Error('timeout exceeded when trying to connect')]) {
      expect(toProblem(err), err.message).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
    }
  });

  it('other database errors stay 500 INTERNAL_ERROR', () => {
    expect(toProblem(Object.assign(new Error('relation "nope" does not exist'), { code: '42P01' }))).toMatchObject({ status: 500, code: 'INTERNAL_ERROR' });
  });
});
