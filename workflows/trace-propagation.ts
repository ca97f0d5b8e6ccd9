// Workflow interceptors of the default worker (tracing export off): the trace the API started rides the
// Temporal headers on to every activity, so activity log lines keep the request's trace id, but no span
// is built inside the workflow sandbox. Full workflow spans (workflows/interceptors.ts) cost about a fifth
// of the workflow thread's CPU per saga (issue 9's profile); they run when TRACING_EXPORTER exports them.
import type { Payload } from '@temporalio/common';
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';

/** The header Temporal's OpenTelemetry interceptors read (`TRACE_HEADER` of @temporalio/interceptors-opentelemetry). */
const TRACE_HEADER = '_tracer-data';

export const interceptors: WorkflowInterceptorsFactory = () => {
  let trace: Payload | undefined;
  const withTrace = <T extends { headers: Record<string, Payload> }>(input: T): T => (trace ? { ...input, headers: { ...input.headers, [TRACE_HEADER]: trace } } : input);
  return {
    inbound: [
      {
        execute(input, next) {
          trace = input.headers[TRACE_HEADER];
          return next(input);
        },
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) => next(withTrace(input)),
        scheduleLocalActivity: (input, next) => next(withTrace(input)),
        startChildWorkflowExecution: (input, next) => next(withTrace(input)),
        continueAsNew: (input, next) => next(withTrace(input)),
      },
    ],
  };
};
