import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger';

/** One dependency or part of a process, as every health answer reports it (the API's /health too). */
export interface CheckResult {
  status: 'up' | 'down';
  latency_ms: number;
  error?: string;
}

/** Runs one check against a deadline: up when it settles in time, down (with why) when it throws or hangs. */
export async function probe(timeoutMs: number, check: () => Promise<unknown> | unknown): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(check),
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

export const LIVE_PATH = '/health/live';
export const READY_PATH = '/health/ready';

export interface HealthServerOptions {
  /** `host:port` (WORKER_HEALTH_ADDRESS, OUTBOX_HEALTH_ADDRESS); port 0 picks a free one. */
  address: string;
  service: string;
  /** Readiness: each must resolve within timeoutMs (a throw or a timeout is that part down). */
  checks: Record<string, () => Promise<unknown> | unknown>;
  timeoutMs: number;
  logger: Logger;
}

export interface HealthServer {
  /** The bound address (`host:port`), or undefined when the port could not be taken. */
  readonly address: string | undefined;
  /** From now on readiness answers 503 (`draining`); liveness stays 200 until the process exits. */
  drain(): void;
  close(): Promise<void>;
}

/**
 * The health endpoints of a process that serves no HTTP of its own (the worker, the outbox publisher), for
 * compose healthchecks and Kubernetes probes: `GET /health/live` answers 200 while the process runs (no
 * dependency is checked, so a database outage never gets it restarted), `GET /health/ready` 200 when every
 * check passes and 503 with each part's state otherwise. A port already taken is logged, not fatal: the
 * process still does its work, and its probes fail where they are watched.
 */
export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  let draining = false;
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { status: 'method not allowed' });
    const path = (req.url ?? '/').split('?')[0];
    if (path === LIVE_PATH) return send(200, { status: 'ok', service: opts.service });
    if (path !== READY_PATH) return send(404, { status: 'not found', routes: [LIVE_PATH, READY_PATH] });
    void (async () => {
      const names = Object.keys(opts.checks);
      const results = await Promise.all(names.map((name) => probe(opts.timeoutMs, opts.checks[name]!)));
      const checks = Object.fromEntries(names.map((name, i) => [name, results[i]!]));
      const up = !draining && results.every((r) => r.status === 'up');
      send(up ? 200 : 503, { status: up ? 'ok' : 'unavailable', service: opts.service, draining, checks });
    })().catch((err: unknown) => send(500, { status: 'error', error: String(err) }));
  });
  // Probes open a connection each: none may keep the process from exiting.
  server.keepAliveTimeout = 1_000;
  const { host, port } = splitAddress(opts.address);
  const bound = await new Promise<string | undefined>((resolve) => {
    server.once('error', (err) => {
      opts.logger.error({ err, address: opts.address }, 'health server could not listen: its probes will fail');
      resolve(undefined);
    });
    server.listen(port, host, () => resolve(`${host}:${(server.address() as AddressInfo).port}`));
  });
  if (bound) server.unref();
  return {
    address: bound,
    drain() {
      draining = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (!bound) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `host:port` → its parts (the last colon separates them). */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}
