import { type BeforeApplicationShutdown, Controller, Get, Inject, Res } from '@nestjs/common';
import type { Client } from '@temporalio/client';
import type { FastifyReply } from 'fastify';
import type { Config } from '../../../lib/config';
import { ping, type Pool } from '../../../lib/db';
import { probe } from '../../../lib/health-server';
import { Public } from '../auth/auth';
import { CONFIG, PG_POOL, TEMPORAL_CLIENT, TRAFFIC } from '../tokens';
import type { TrafficControl } from '../traffic/traffic-control';

@Controller()
export class HealthController implements BeforeApplicationShutdown {
  /** Set when the application starts closing: readiness fails first, so load balancers stop sending new requests. */
  private draining = false;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(PG_POOL) private readonly pool: Pool,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(TRAFFIC) private readonly traffic: TrafficControl,
  ) {}

  beforeApplicationShutdown(): void {
    this.draining = true;
  }

  private async dependencies() {
    const timeout = this.config.HEALTH_TIMEOUT_MS;
    const [postgres, temporal] = await Promise.all([
      probe(timeout, () => ping(this.pool)),
      probe(timeout, () =>
        this.temporal.connection.withDeadline(Date.now() + timeout, () =>
          this.temporal.workflowService.describeNamespace({ namespace: this.config.TEMPORAL_NAMESPACE }),
        ),
      ),
    ]);
    return { postgres, temporal, up: postgres.status === 'up' && temporal.status === 'up' };
  }

  /** 200 when PostgreSQL and Temporal both answer, 503 otherwise, with each dependency's state. */
  @Public()
  @Get('health')
  async health(@Res() reply: FastifyReply): Promise<void> {
    const { postgres, temporal, up } = await this.dependencies();
    const gate = this.traffic.gate.state();
    void reply.status(up ? 200 : 503).send({
      status: up ? 'ok' : 'unavailable',
      mode: this.traffic.modes.mode,
      admission: { limit: gate.limit, in_flight: gate.inFlight, decision_p90_ms: gate.p90Ms },
      checks: { postgres, temporal },
    });
  }

  /** Liveness: the process answers. No dependency is checked, so an outage of one never gets the API restarted. */
  @Public()
  @Get('health/live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * Readiness: 200 when PostgreSQL answers and the instance is not draining (shutting down), 503 otherwise.
   * Temporal's state is reported but does not gate it: without Temporal the API still serves reads from the
   * read model, staff tools and statements, stores provider webhooks (answered 503 for redelivery) and refuses
   * new sagas with a clean 503; taking every instance out of the load balancer would lose all of that.
   */
  @Public()
  @Get('health/ready')
  async ready(@Res() reply: FastifyReply): Promise<void> {
    const { postgres, temporal } = await this.dependencies();
    const ready = postgres.status === 'up' && !this.draining;
    void reply.status(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', draining: this.draining, checks: { postgres, temporal } });
  }
}
