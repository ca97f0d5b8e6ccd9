/**
 * Brings up real PostgreSQL and a real Temporal dev server for the whole test run (or reuses the ones
 * named by TEST_DATABASE_URL / TEST_TEMPORAL_ADDRESS), applies the migrations, bundles the workflows
 * once, and hands the addresses to the tests through vitest's provide/inject.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../lib/embedded-postgres';
import { migrateUp } from '../lib/migrate';
import { freePort } from '../lib/wait';
import { ensureTemporalCli } from '../temporal/cli';
import { ensureTemporalServerTools } from '../temporal/server';
import { startTemporalDevServer } from '../temporal/dev-server';
import { workflowBundleOptions } from '../apps/worker/create-worker';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    temporalAddress: string;
    temporalNamespace: string;
    /** The Temporal Web UI of the test server ('' when the tests use an external server without TEST_TEMPORAL_UI_URL). */
    temporalUiUrl: string;
    workflowBundlePath: string;
    tracedWorkflowBundlePath: string;
  }
}

export default async function setup(project: TestProject) {
  const stops: (() => Promise<unknown>)[] = [];
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-tests-'));
  fs.chmodSync(workDir, 0o755);
  const namespace = 'default';

  let databaseUrl = process.env.TEST_DATABASE_URL;
  if (!databaseUrl) {
    const pg = await startEmbeddedPostgres({ dataDir: path.join(workDir, 'postgres'), port: await freePort(), database: 'payouts_test' });
    stops.push(() => pg.stop());
    databaseUrl = pg.url;
  }
  await migrateUp(databaseUrl);

  let temporalAddress = process.env.TEST_TEMPORAL_ADDRESS;
  let temporalUiUrl = process.env.TEST_TEMPORAL_UI_URL ?? '';
  if (!temporalAddress) {
    const cli = ensureTemporalCli();
    // With its Web UI: the browser test filters stuck payouts there as finance staff do.
    const server = await startTemporalDevServer({ cliPath: cli.path, port: await freePort(), uiPort: await freePort(), namespace, startTimeoutMs: 120_000 });
    stops.push(() => server.stop());
    temporalAddress = server.address;
    temporalUiUrl = server.uiUrl!;
  }

  // The cluster topology's Temporal server, SQL tool and Web UI server (test/cluster): built here, after the
  // CLI, whose build has already compiled most of their packages.
  ensureTemporalServerTools((msg) => process.stderr.write(`${msg}\n`));

  // Two bundles, as a worker builds them: without workflow spans (the default) and with them (tracing on).
  const bundlePaths = [];
  for (const workflowSpans of [false, true]) {
    const bundle = await bundleWorkflowCode({ ...workflowBundleOptions(workflowSpans), logger: quietBundlerLogger });
    bundlePaths.push(path.join(workDir, workflowSpans ? 'workflow-bundle-traced.js' : 'workflow-bundle.js'));
    fs.writeFileSync(bundlePaths.at(-1)!, bundle.code);
  }
  const [workflowBundlePath, tracedWorkflowBundlePath] = bundlePaths as [string, string];

  project.provide('databaseUrl', databaseUrl);
  project.provide('temporalAddress', temporalAddress);
  project.provide('temporalNamespace', namespace);
  project.provide('temporalUiUrl', temporalUiUrl);
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('tracedWorkflowBundlePath', tracedWorkflowBundlePath);

  return async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error('teardown:', err));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
}

const noop = () => undefined;
const quietBundlerLogger = { trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error, log: noop };
