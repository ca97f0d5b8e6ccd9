import CircuitBreaker from 'opossum';
import { ApplicationFailure, type MetricMeter } from '@temporalio/common';
import type { Pool } from '../lib/db';
import type { ProviderConnection } from '../lib/providers';
import { aggregatorAt, type Aggregator } from './aggregator-client';

/**
 * The worker's provider connections, each behind a circuit breaker (opossum) that watches its health:
 * submissions and deposit intents failing for want of the provider (unreachable, 5xx, timeouts; never its
 * refusals) open the breaker, and routing sends new payouts to the fallbacks. Past PROVIDER_BREAKER_RESET_MS
 * one call is let through as the trial: routing tries it with a harmless `GET /health` first (else it is the
 * next guarded call, a retried submission). Answered, the breaker closes and the provider gets payouts again.
 * Record lookups and reports are measured but never held back: asking a provider is how money stays safe.
 *
 * Each worker process keeps its own breakers (as opossum does): a worker judges a provider by what it saw.
 * Staff can also disable a provider (table provider_controls, PUT /v1/ops/providers/{name}).
 */
export type ProviderOperation = 'submit' | 'lookup' | 'report' | 'probe';
export type ProviderHealth = 'closed' | 'half_open' | 'open';

export interface BreakerSettings {
  errorPercent: number;
  minCalls: number;
  windowMs: number;
  resetMs: number;
}

/** Why a provider of a route was passed over for new payouts. */
export interface SkippedProvider {
  provider: string;
  reason: 'disabled' | 'breaker_open';
}

const PROBE_TIMEOUT_MS = 2_000;
const CONTROLS_TTL_MS = 1_000;

/** A refusal is the payout's (or the request's) fault, not the provider's health. */
const isRefusal = (err: unknown) => err instanceof ApplicationFailure && err.type === 'ProviderRejected';

interface Entry {
  aggregator: Aggregator;
  breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
}

export class ProviderRegistry {
  private readonly entries = new Map<string, Entry>();
  private disabled: { at: number; names: Set<string> } | undefined;
  private readonly calls;
  private readonly latency;
  private readonly state;

  constructor(
    connections: readonly ProviderConnection[],
    settings: BreakerSettings,
    private readonly pool: Pool,
    meter?: MetricMeter,
  ) {
    this.calls = meter?.createCounter('payout_provider_calls', 'calls', 'Calls to each payment provider by operation and outcome (ok, refused, unavailable, short_circuited)');
    this.latency = meter?.createHistogram('payout_provider_call_latency', 'int', 'ms', 'Latency of each payment provider\'s answers');
    this.state = meter?.createGauge('payout_provider_breaker_state', 'int', 'state', 'Circuit breaker of each provider: 0 closed, 1 half open, 2 open');
    for (const connection of connections) {
      const breaker = new CircuitBreaker<[() => Promise<unknown>], unknown>((call) => call(), {
        name: connection.name,
        timeout: false, // every call has its own timeout
        errorThresholdPercentage: settings.errorPercent,
        volumeThreshold: settings.minCalls,
        rollingCountTimeout: settings.windowMs,
        rollingCountBuckets: 10,
        resetTimeout: settings.resetMs,
        errorFilter: isRefusal,
      });
      const report = (value: number) => this.state?.withTags({ provider: connection.name }).set(value);
      breaker.on('open', () => report(2));
      breaker.on('halfOpen', () => report(1));
      breaker.on('close', () => report(0));
      report(0);
      this.entries.set(connection.name, { aggregator: aggregatorAt(connection.url, connection.apiToken), breaker });
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  private entry(name: string): Entry {
    const entry = this.entries.get(name);
    // A route naming a provider this worker has no connection for is a configuration to fix: retried, never final.
    if (!entry) throw ApplicationFailure.retryable(`no provider connection named ${name} in this worker's configuration`, 'UnknownProvider');
    return entry;
  }

  private async measure<T>(name: string, operation: ProviderOperation, call: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      const result = await call();
      this.calls?.withTags({ provider: name, operation, outcome: 'ok' }).add(1);
      return result;
    } catch (err) {
      const outcome = isRefusal(err) ? 'refused' : 'unavailable';
      this.calls?.withTags({ provider: name, operation, outcome }).add(1);
      throw err;
    } finally {
      this.latency?.withTags({ provider: name, operation }).record(Date.now() - started);
    }
  }

  /**
   * A call that counts toward the provider's health and is refused at once while its breaker is open
   * (submissions): retried by the activity like any outage, never taken for a refusal.
   */
  async guarded<T>(name: string, operation: ProviderOperation, call: (aggregator: Aggregator) => Promise<T>): Promise<T> {
    const { breaker, aggregator } = this.entry(name);
    try {
      return (await breaker.fire(() => this.measure(name, operation, () => call(aggregator)))) as T;
    } catch (err) {
      if (!(err instanceof Error) || (err as { code?: string }).code !== 'EOPENBREAKER') throw err;
      this.calls?.withTags({ provider: name, operation, outcome: 'short_circuited' }).add(1);
      throw ApplicationFailure.retryable(`provider ${name} is unhealthy (circuit breaker open); not called`, 'ProviderUnavailable');
    }
  }

  /** A call measured but never held back by the breaker: asking a provider for its record is how money stays safe. */
  measured<T>(name: string, operation: ProviderOperation, call: (aggregator: Aggregator) => Promise<T>): Promise<T> {
    const { aggregator } = this.entry(name);
    return this.measure(name, operation, () => call(aggregator));
  }

  /** The breaker's state; a half-open breaker is tried first with a harmless `GET /health`. */
  async health(name: string): Promise<ProviderHealth> {
    const { breaker, aggregator } = this.entry(name);
    if (breaker.halfOpen) {
      await this.guarded(name, 'probe', async () => {
        const response = await fetch(`${aggregator.url}/health`, { headers: aggregator.headers, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        if (!response.ok) throw ApplicationFailure.retryable(`provider ${name} health answered ${response.status}`, 'ProviderUnavailable');
      }).catch(() => undefined);
    }
    return breaker.opened ? 'open' : breaker.halfOpen ? 'half_open' : 'closed';
  }

  /** Providers staff disabled (provider_controls), read at most once a second. */
  async disabledNames(): Promise<Set<string>> {
    if (this.disabled && Date.now() - this.disabled.at < CONTROLS_TTL_MS) return this.disabled.names;
    const { rows } = await this.pool.query<{ provider: string }>('SELECT provider FROM provider_controls WHERE NOT enabled');
    this.disabled = { at: Date.now(), names: new Set(rows.map((r) => r.provider)) };
    return this.disabled.names;
  }

  /**
   * A route's providers in the order new payouts should try them: the healthy ones first, in the route's
   * order, then those with an open breaker (so a payout whose every provider is down still waits on the first
   * rather than failing). Providers staff disabled are left out: when that leaves none, the order is empty
   * and the saga waits (a durable timer) until staff enable one.
   */
  async plan(route: readonly string[]): Promise<{ order: string[]; skipped: SkippedProvider[] }> {
    const disabled = await this.disabledNames();
    const skipped: SkippedProvider[] = [];
    const healthy: string[] = [];
    const unhealthy: string[] = [];
    for (const name of route) {
      if (disabled.has(name)) skipped.push({ provider: name, reason: 'disabled' });
      else if ((await this.health(name)) === 'open') {
        skipped.push({ provider: name, reason: 'breaker_open' });
        unhealthy.push(name);
      } else healthy.push(name);
    }
    return { order: [...healthy, ...unhealthy], skipped };
  }
}
