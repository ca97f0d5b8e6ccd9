/**
 * The faults the chaos run inflicts on a launched stack, from outside it: SIGKILL of a service (the launcher's
 * supervisor starts it again, as a process manager would), an immediate PostgreSQL shutdown, and network faults
 * through Toxiproxy between worker and provider and between provider and the API's webhook endpoint.
 */
import { launchedProcesses } from '../apps/launcher/supervisor';
import { sleep, waitUntil } from '../lib/wait';
import type { Toxic, Toxiproxy } from './toxiproxy';

export const FAULT_KINDS = [
  'kill-worker',
  'provider-latency',
  'kill-api',
  'webhook-reset',
  'kill-sandbox',
  'provider-blackhole',
  'kill-outbox-publisher',
  'kill-api-mid-request',
  'provider-reset',
  'restart-temporal',
  'webhook-blackhole',
  'restart-postgres',
  'webhook-latency',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The proxies the stack's connections go through. */
export const PROVIDER_PROXY = 'provider';
export const WEBHOOK_PROXY = 'webhooks';

export interface FaultRecord {
  kind: FaultKind;
  /** Seconds since the workload started. */
  at_s: number;
  /** When the fault was over (the service back up, the toxic removed). */
  ended_s: number;
  detail: string;
  /** Seconds from the fault's start to the first payout answered 201/202 of those sent after it began. */
  recovered_after_s?: number | null;
}

export interface FaultContext {
  dataDir: string;
  toxiproxy: Toxiproxy;
  /** Seconds since the workload started. */
  clock: () => number;
  /** Fires a few payouts and resolves once they are on the wire (kill-api-mid-request kills the API then). */
  burst: () => Promise<void>;
  /** How long a network fault lasts. */
  networkFaultMs: number;
}

const SERVICE: Partial<Record<FaultKind, { name: string; signal: NodeJS.Signals }>> = {
  'kill-worker': { name: 'worker', signal: 'SIGKILL' },
  'kill-api': { name: 'api', signal: 'SIGKILL' },
  'kill-api-mid-request': { name: 'api', signal: 'SIGKILL' },
  'kill-sandbox': { name: 'sandbox-aggregator', signal: 'SIGKILL' },
  'kill-outbox-publisher': { name: 'outbox-publisher', signal: 'SIGKILL' },
  'restart-temporal': { name: 'temporal', signal: 'SIGKILL' },
  // SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, crash recovery at the next start.
  'restart-postgres': { name: 'postgres', signal: 'SIGQUIT' },
};

const TOXIC: Partial<Record<FaultKind, { proxy: string; toxic: Toxic }>> = {
  'provider-latency': { proxy: PROVIDER_PROXY, toxic: { name: 'latency', type: 'latency', attributes: { latency: 2_500, jitter: 1_000 } } },
  'provider-reset': { proxy: PROVIDER_PROXY, toxic: { name: 'reset', type: 'reset_peer', attributes: { timeout: 0 } } },
  // timeout 0: nothing gets through and the connection stays open until the toxic is removed.
  'provider-blackhole': { proxy: PROVIDER_PROXY, toxic: { name: 'blackhole', type: 'timeout', attributes: { timeout: 0 } } },
  'webhook-latency': { proxy: WEBHOOK_PROXY, toxic: { name: 'latency', type: 'latency', attributes: { latency: 3_000, jitter: 1_000 } } },
  'webhook-reset': { proxy: WEBHOOK_PROXY, toxic: { name: 'reset', type: 'reset_peer', attributes: { timeout: 0 } } },
  'webhook-blackhole': { proxy: WEBHOOK_PROXY, toxic: { name: 'blackhole', type: 'timeout', attributes: { timeout: 0 } } },
};

/** Inflicts one fault and waits until it is over; answers what happened. */
export async function inflict(kind: FaultKind, ctx: FaultContext): Promise<FaultRecord> {
  const at = ctx.clock();
  const service = SERVICE[kind];
  if (service) {
    const before = launchedProcesses(ctx.dataDir)[service.name];
    if (!before) throw new Error(`no pid for ${service.name} in processes.json`);
    if (kind === 'kill-api-mid-request') await ctx.burst();
    process.kill(before, service.signal);
    let after = before;
    await waitUntil(`${service.name} started again`, async () => {
      after = launchedProcesses(ctx.dataDir)[service.name] ?? before;
      return after !== before;
    }, 180_000, 100);
    return { kind, at_s: at, ended_s: ctx.clock(), detail: `${service.signal} ${service.name} (pid ${before}), started again as pid ${after}` };
  }
  const { proxy, toxic } = TOXIC[kind]!;
  await ctx.toxiproxy.addToxic(proxy, toxic);
  await sleep(ctx.networkFaultMs);
  await ctx.toxiproxy.removeToxic(proxy, toxic.name);
  return { kind, at_s: at, ended_s: ctx.clock(), detail: `${toxic.type} ${JSON.stringify(toxic.attributes)} on ${proxy} for ${ctx.networkFaultMs / 1000} s` };
}
