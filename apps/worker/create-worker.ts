import { fileURLToPath } from 'node:url';
import type { Context as ActivityContext } from '@temporalio/activity';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry';
import { NativeConnection, Worker, type ActivityInterceptorsFactory, type BundleOptions, type WorkerOptions } from '@temporalio/worker';
import { initTracing } from '../../lib/tracing';
import { createActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../../lib/config';
import { moneyLimits } from '../../lib/limits';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
export const WORKFLOW_INTERCEPTORS_PATH = fileURLToPath(new URL('../../workflows/interceptors.ts', import.meta.url));

/** How the workflow bundle is built (the worker at start, or once for a whole test run or benchmark). */
export const WORKFLOW_BUNDLE_OPTIONS: Pick<BundleOptions, 'workflowsPath' | 'workflowInterceptorModules'> = {
  workflowsPath: WORKFLOWS_PATH,
  workflowInterceptorModules: [WORKFLOW_INTERCEPTORS_PATH],
};

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
  /** Pre-built bundle (tests share one); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
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
    // A prebuilt bundle already contains the workflow interceptors (WORKFLOW_BUNDLE_OPTIONS).
    interceptors: { ...(opts.workflowBundle ? {} : { workflowModules: [WORKFLOW_INTERCEPTORS_PATH] }), activity: [activityInterceptors] },
    // Workflow spans leave the sandbox through this sink (a no-op processor when tracing is off).
    sinks: { exporter: makeWorkflowExporter(tracing.spanProcessor, tracing.resource) },
  });
}

/** The activities' settings, from the platform configuration. */
export function activitySettings(config: Config): Omit<ActivityDeps, 'pool'> {
  return {
    providerUrl: config.SANDBOX_URL,
    limits: moneyLimits(config),
    destinationKeys: config.DESTINATION_KEYS,
    providerToken: config.SANDBOX_API_TOKEN,
  };
}
