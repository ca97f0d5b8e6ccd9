import { Client, type Connection } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';

/** The platform's Temporal client: workflow starts, updates and signals carry the caller's trace context. */
export function createTemporalClient(connection: Connection, namespace: string): Client {
  return new Client({ connection, namespace, interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } });
}

/** The gRPC status code of a Temporal client error (on the error or its cause), if it has one. */
export function grpcStatusOf(err: unknown): unknown {
  return (err as { cause?: { code?: unknown } })?.cause?.code ?? (err as { code?: unknown })?.code;
}
