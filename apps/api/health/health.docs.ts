import { z } from 'zod';
import type { RouteDoc } from '../docs/openapi';
import { PLATFORM_MODES } from '../traffic/platform-mode';

const dependency = z.object({ status: z.enum(['up', 'down']), latency_ms: z.number().int(), error: z.string().optional() });
const healthBody = z.object({
  status: z.enum(['ok', 'unavailable']),
  /** The degradation mode staff set (PUT /v1/ops/mode), and this instance's admission gate. */
  mode: z.enum(PLATFORM_MODES),
  admission: z.object({ limit: z.number().int(), in_flight: z.number().int(), decision_p90_ms: z.number().int() }),
  checks: z.object({ postgres: dependency, temporal: dependency }),
});
const liveBody = z.object({ status: z.literal('ok') });
const readyBody = z.object({
  status: z.enum(['ok', 'unavailable']),
  /** The instance is shutting down: it finishes what it has, and takes nothing new. */
  draining: z.boolean(),
  checks: z.object({ postgres: dependency, temporal: dependency }),
});

export const healthRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/health',
    summary: 'Liveness and dependencies (PostgreSQL, Temporal), the degradation mode and the admission gate',
    tag: 'ops',
    auth: 'public',
    responses: { 200: { description: 'Both dependencies answer', schema: healthBody }, 503: { description: 'A dependency is down', schema: healthBody, contentType: 'application/json' } },
  },
  {
    method: 'get',
    path: '/health/live',
    summary: 'Liveness: the process answers (no dependency is checked; for restart probes)',
    tag: 'ops',
    auth: 'public',
    responses: { 200: { description: 'The process runs', schema: liveBody } },
  },
  {
    method: 'get',
    path: '/health/ready',
    summary: 'Readiness: PostgreSQL answers and the instance is not draining (for load balancers and readiness probes); Temporal is reported, not required (reads and webhooks work without it)',
    tag: 'ops',
    auth: 'public',
    responses: {
      200: { description: 'Ready for traffic', schema: readyBody },
      503: { description: 'PostgreSQL is down, or the instance is shutting down', schema: readyBody, contentType: 'application/json' },
    },
  },
  {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics',
    tag: 'ops',
    auth: 'public',
    responses: { 200: { description: 'Prometheus text exposition format', schema: z.string(), contentType: 'text/plain' } },
  },
];
