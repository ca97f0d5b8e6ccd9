import { fileURLToPath } from 'node:url';
import type { Context as ActivityContext } from '@temporalio/activity';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry';
import { NativeConnection, Worker, type ActivityInterceptorsFactory, type BundleOptions, type WorkerOptions } from '@temporalio/worker';
import { initTracing } from '../../lib/tracing';
import { createActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../../lib/config';
import { moneyLimits } from '../../lib/limits';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
/** Workflow spans (OpenTelemetry inside the sandbox): only when traces are exported somewhere. */
const WORKFLOW_SPANS_PATH = fileURLToPath(new URL('../../workflows/interceptors.ts', import.meta.url));
/** Otherwise only the trace header is passed on to activities, so their log lines keep the trace id. */
const TRACE_PROPAGATION_PATH = fileURLToPath(new URL('../../workflows/trace-propagation.ts', import.meta.url));

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
    // Workflow spans leave the sandbox through this sink (a no-op processor when tracing is off).
    sinks: { exporter: makeWorkflowExporter(tracing.spanProcessor, tracing.resource) },
  });
}

/** The worker's and its activities' settings, from the platform configuration. */
export function workerSettings(config: Config): Omit<ActivityDeps, 'pool'> & Pick<PayoutWorkerOptions, 'workflowSpans' | 'maxCachedWorkflows'> {
  return {
    workflowSpans: config.TRACING_EXPORTER !== 'off',
    maxCachedWorkflows: config.WORKER_MAX_CACHED_WORKFLOWS,
    providerUrl: config.SANDBOX_URL,
    limits: moneyLimits(config),
    destinationKeys: config.DESTINATION_KEYS,
    providerToken: config.SANDBOX_API_TOKEN,
  };
}
