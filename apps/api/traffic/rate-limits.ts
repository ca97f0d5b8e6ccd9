import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import { ProblemError } from '../common/problem';

/** What is limited: money-moving requests per account, authenticated requests per token subject, webhooks per provider. */
export type RateLimitName = 'account' | 'subject' | 'webhook';

export interface RateLimitOutcome {
  limit: RateLimitName;
  allowed: boolean;
}

/**
 * Fixed one-minute windows counted in PostgreSQL (the UNLOGGED `rate_limits` table, rate-limiter-flexible's
 * RateLimiterPostgres): every API instance increments the same row with one atomic upsert, so together
 * they admit exactly the configured number per window, never more. The margin is the fixed window's:
 * a client may spend one window's allowance at its end and the next one's at the start of the next.
 * Should PostgreSQL not answer, each instance counts alone in memory (the library's insurance limiter).
 */
export class RateLimits {
  private readonly limiters: Record<RateLimitName, RateLimiterPostgres>;

  constructor(
    pool: Pool,
    config: Pick<Config, 'RATE_LIMIT_ACCOUNT_PER_MINUTE' | 'RATE_LIMIT_SUBJECT_PER_MINUTE' | 'RATE_LIMIT_WEBHOOK_PER_MINUTE'>,
    private readonly onOutcome: (outcome: RateLimitOutcome) => void = () => undefined,
  ) {
    const limiter = (keyPrefix: RateLimitName, points: number) =>
      new RateLimiterPostgres({
        storeClient: pool,
        tableName: 'rate_limits',
        tableCreated: true, // by migration 0015, UNLOGGED
        // The sweep of expired rows covers the whole table: one limiter runs it for all three.
        clearExpiredByTimeout: keyPrefix === 'account',
        keyPrefix,
        points,
        duration: 60,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: 60 }),
      });
    this.limiters = {
      account: limiter('account', config.RATE_LIMIT_ACCOUNT_PER_MINUTE),
      subject: limiter('subject', config.RATE_LIMIT_SUBJECT_PER_MINUTE),
      webhook: limiter('webhook', config.RATE_LIMIT_WEBHOOK_PER_MINUTE),
    };
  }

  /** Counts one request against `key`'s window, or refuses it: 429 RATE_LIMITED with the seconds left in the window. */
  async consume(limit: RateLimitName, key: string): Promise<void> {
    try {
      await this.limiters[limit].consume(key);
      this.onOutcome({ limit, allowed: true });
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      this.onOutcome({ limit, allowed: false });
      const retryAfterSeconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
      throw new ProblemError('RATE_LIMITED', `Too many requests for this ${limit === 'webhook' ? 'provider' : limit}; retry in ${retryAfterSeconds} s`, { limit }, retryAfterSeconds);
    }
  }
}
