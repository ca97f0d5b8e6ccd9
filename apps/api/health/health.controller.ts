import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Client } from '@temporalio/client';
import type { FastifyReply } from 'fastify';
import type { Config } from '../../../lib/config';
import { ping, type Pool } from '../../../lib/db';
import { Public } from '../auth/auth';
import { CONFIG, PG_POOL, TEMPORAL_CLIENT, TRAFFIC } from '../tokens';
import type { TrafficControl } from '../traffic/traffic-control';

interface DependencyHealth {
  status: 'up' | 'down';
  latency_ms: number;
  error?: string;
}

async function probe(timeoutMs: number, check: () => Promise<unknown>): Promise<DependencyHealth> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs}ms`)), timeoutMs);
      }),
    ]);
    return { status: 'up', latency_ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { status: 'down', latency_ms: Math.round(performance.now() - started), error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

@Controller()
export class HealthController {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(TRAFFIC) private readonly traffic: TrafficControl,
  ) {}

  /** 200 when PostgreSQL and Temporal both answer, 503 otherwise, with each dependency's state. */
  @Public()
  @Get('health')
  async health(@Res() reply: FastifyReply): Promise<void> {
    const timeout = this.config.HEALTH_TIMEOUT_MS;
    const [postgres, temporal] = await Promise.all([
      probe(timeout, () => ping(this.pool)),
      probe(timeout, () =>
        this.temporal.connection.withDeadline(Date.now() + timeout, () =>
          this.temporal.workflowService.describeNamespace({ namespace: this.config.TEMPORAL_NAMESPACE }),
        ),
      ),
    ]);
    const up = postgres.status === 'up' && temporal.status === 'up';
    const gate = this.traffic.gate.state();
    void reply.status(up ? 200 : 503).send({
      status: up ? 'ok' : 'unavailable',
      mode: this.traffic.modes.mode,
      admission: { limit: gate.limit, in_flight: gate.inFlight, decision_p90_ms: gate.p90Ms },
      checks: { postgres, temporal },
    });
  }
}
