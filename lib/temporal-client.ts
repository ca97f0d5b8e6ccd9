import { Client, type Connection } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';

/** The platform's Temporal client: workflow starts, updates and signals carry the caller's trace context. */
export function createTemporalClient(connection: Connection, namespace: string): Client {
  return new Client({ connection, namespace, interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } });
}
