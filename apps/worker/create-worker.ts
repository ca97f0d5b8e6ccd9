import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context as ActivityContext } from '@temporalio/activity';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Worker, type ActivityInterceptorsFactory, type BundleOptions, type WorkerOptions } from '@temporalio/worker';
import { initTracing } from '../../lib/tracing';
import { createActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../../lib/config';
import { moneyLimits } from '../../lib/limits';
import { providerConnections } from '../../lib/providers';

/** `.ts` run from the sources (tsx, tests), `.js` compiled in dist/ (`npm run build`): the workflows are bundled from the same kind. */
const SOURCE_EXTENSION = path.extname(fileURLToPath(import.meta.url));
const workflowModule = (name: string) => fileURLToPath(new URL(`../../workflows/${name}${SOURCE_EXTENSION}`, import.meta.url));
export const WORKFLOWS_PATH = workflowModule('index');
/** Workflow spans (OpenTelemetry inside the sandbox): only when traces are exported somewhere. */
const WORKFLOW_SPANS_PATH = workflowModule('interceptors');
/** Otherwise only the trace header is passed on to activities, so their log lines keep the trace id. */
const TRACE_PROPAGATION_PATH = workflowModule('trace-propagation');

/** How the workflow bundle is built (the worker at start, or once for a whole test run or benchmark). */
export function workflowBundleOptions(workflowSpans: boolean): Pick<BundleOptions, 'workflowsPath' | 'workflowInterceptorModules'> {
  return { workflowsPath: WORKFLOWS_PATH, workflowInterceptorModules: [workflowSpans ? WORKFLOW_SPANS_PATH : TRACE_PROPAGATION_PATH] };
}

/**
 * Activity spans (continuing the workflow's trace), and log lines that carry the trace id and the
 * idempotency key of the step (its input's `idempotencyKey`, else the workflow id the key derives from).
 */
const activityInterceptors: ActivityInterceptorsFactory = (ctx: ActivityContext) => {
  const otelOutbound = new OpenTelemetryActivityOutboundInterceptor(ctx);
  let idempotencyKey: string | undefined;
  return {
    inbound: {
      execute(input, next) {
        const first = input.args[0] as { idempotencyKey?: unknown } | undefined;
        idempotencyKey = typeof first?.idempotencyKey === 'string' ? first.idempotencyKey : ctx.info.workflowExecution?.workflowId;
        return new OpenTelemetryActivityInboundInterceptor(ctx).execute(input, next);
      },
    },
    outbound: {
      getLogAttributes(input, next) {
        return otelOutbound.getLogAttributes({ ...input, ...(idempotencyKey ? { idempotencyKey } : {}) }, next);
      },
    },
  };
};

export interface PayoutWorkerOptions extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** Pre-built bundle (tests share one, built with workflowBundleOptions); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Spans for workflow execution (TRACING_EXPORTER is not off); else the trace id is only propagated. */
  workflowSpans: boolean;
  /** Sagas kept in the worker's sticky cache (WORKER_MAX_CACHED_WORKFLOWS); undefined: the SDK's default. */
  maxCachedWorkflows?: number;
  /** Workflow tasks, activities and local activities run at once; undefined: the SDK's defaults. */
  slots?: number;
}

/** The one place that decides what a payout worker runs; used by apps/worker and by tests. */
export function createPayoutWorker(opts: PayoutWorkerOptions): Promise<Worker> {
  const tracing = initTracing('worker');
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(opts),
    // A prebuilt bundle already contains its workflow interceptors (workflowBundleOptions).
    interceptors: { ...(opts.workflowBundle ? {} : { workflowModules: workflowBundleOptions(opts.workflowSpans).workflowInterceptorModules }), activity: [activityInterceptors] },
    ...(opts.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: opts.maxCachedWorkflows } : {}),
    ...(opts.slots !== undefined
      ? { maxConcurrentWorkflowTaskExecutions: opts.slots, maxConcurrentActivityTaskExecutions: opts.slots, maxConcurrentLocalActivityExecutions: opts.slots }
      : {}),
    // Workflow spans leave the sandbox through this sink (a no-op processor when tracing is off).
    sinks: { exporter: makeWorkflowExporter(tracing.spanProcessor, tracing.resource) },
  });
}

/**
 * The two pools every worker process runs, on one bundle and one connection: the money path on the main
 * task queue with the SDK's default slots, and background work (reconciliation, scheduled status polls)
 * on the background queue with WORKER_BACKGROUND_SLOTS, so it waits for a free slot of its own instead
 * of taking one from payouts and deposits.
 */
export async function createWorkerPools(opts: PayoutWorkerOptions & { backgroundTaskQueue: string; backgroundSlots: number }): Promise<{ workers: Worker[]; run(): Promise<void>; shutdown(): void }> {
  const { backgroundTaskQueue, backgroundSlots, ...main } = opts;
  const workflowBundle = main.workflowBundle ?? (await bundleWorkflowCode({ ...workflowBundleOptions(main.workflowSpans), logger: quietBundlerLogger }));
  const moneyPath = await createPayoutWorker({ ...main, workflowBundle });
  const background = await createPayoutWorker({ ...main, workflowBundle, taskQueue: backgroundTaskQueue, slots: backgroundSlots, maxCachedWorkflows: Math.max(2, backgroundSlots * 4) });
  const workers = [moneyPath, background];
  return {
    workers,
    run: async () => {
      await Promise.all(workers.map((worker) => worker.run()));
    },
    shutdown: () => {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    },
  };
}

/** The bundler's progress lines are noise in the worker log; its warnings and errors are kept. */
const quietBundlerLogger = new DefaultLogger('WARN');

/** The worker's and its activities' settings, from the platform configuration. */
export function workerSettings(config: Config): Omit<ActivityDeps, 'pool'> & Pick<PayoutWorkerOptions, 'workflowSpans' | 'maxCachedWorkflows'> & { backgroundSlots: number } {
  return {
    backgroundSlots: config.WORKER_BACKGROUND_SLOTS,
    workflowSpans: config.TRACING_EXPORTER !== 'off',
    maxCachedWorkflows: config.WORKER_MAX_CACHED_WORKFLOWS,
    providers: providerConnections(config),
    breaker: { errorPercent: config.PROVIDER_BREAKER_ERROR_PERCENT, minCalls: config.PROVIDER_BREAKER_MIN_CALLS, windowMs: config.PROVIDER_BREAKER_WINDOW_MS, resetMs: config.PROVIDER_BREAKER_RESET_MS },
    limits: moneyLimits(config),
    destinationKeys: config.DESTINATION_KEYS,
    chaosBreak: config.CHAOS_BREAK,
  };
}
