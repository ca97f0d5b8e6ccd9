/** The reference workload's worker: its own process and task queue, on the platform's Temporal server. */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createReferenceActivities } from './activities';

const address = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
const taskQueue = process.env.REFERENCE_TASK_QUEUE ?? 'bench-reference';
const callbackDelayMs = Number(process.env.SANDBOX_CALLBACK_DELAY_MS ?? 1000);

const client = new Client({ connection: await Connection.connect({ address }), namespace });
const connection = await NativeConnection.connect({ address });
const worker = await Worker.create({
  connection,
  namespace,
  taskQueue,
  workflowsPath: new URL('./workflow.ts', import.meta.url).pathname,
  activities: createReferenceActivities(client, callbackDelayMs),
});
// The SDK's default runtime shuts the worker down on SIGTERM/SIGINT.
process.stdout.write(`reference worker ready on ${taskQueue}\n`);
await worker.run();
await connection.close();
process.exit(0);
