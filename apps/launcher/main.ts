/**
 * `npm start`: the whole platform on one machine. Embedded PostgreSQL and the Temporal dev server
 * (unless DATABASE_URL / TEMPORAL_EMBEDDED=false point elsewhere), then the worker, the sandbox
 * aggregator and the API, each waited on until healthy. Ctrl-C stops everything in reverse order.
 *
 * `npm start -- --cluster`: the production topology instead: the Temporal server itself on the same
 * PostgreSQL (databases `temporal` and `temporal_visibility`, SQL visibility, TEMPORAL_HISTORY_SHARDS) with
 * its Web UI, WORKER_PROCESSES workers and API_INSTANCES API processes (2 of each by default).
 *
 * In both, a process that dies is restarted with backoff (apps/launcher/supervisor.ts) while the rest go on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Connection } from '@temporalio/client';
import { createTemporalClient } from '../../lib/temporal-client';
import { loadConfigOrExit, repoRoot, type Config } from '../../lib/config';
import { startEmbeddedPostgres } from '../../lib/embedded-postgres';
import { migrateDatabase } from '../../lib/migrate';
import { startProcess, withoutStackTrace, type ManagedProcess } from '../../lib/processes';
import { isPortFree, waitUntil } from '../../lib/wait';
import { ensureTemporalCli, temporalCliVersion } from '../../temporal/cli';
import { startTemporalDevServer } from '../../temporal/dev-server';
import { clusterPorts, ensureTemporalServerTools, setupTemporalSchema, startTemporalServer, startTemporalUi, temporalPostgresOf, TEMPORAL_DATABASES, TEMPORAL_SERVER_VERSION } from '../../temporal/server';
import { sandboxBProcessEnv } from '../../lib/providers';
import { runSelfCheck } from './self-check';
import { processFile, Supervisor, type Running } from './supervisor';

const { values: flags } = (() => {
  try {
    return parseArgs({ options: { cluster: { type: 'boolean', default: false } }, strict: true });
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\nUsage: npm start [-- --cluster]\n`);
    process.exit(64); // EX_USAGE
  }
})();
const config = loadConfigOrExit();
const cluster = flags.cluster === true;
const workerCount = config.WORKER_PROCESSES ?? (cluster ? 2 : 1);
const apiCount = config.API_INSTANCES ?? (cluster ? 2 : 1);
const logsDir = path.join(config.dataDirAbsolute, 'logs');
const startedAt = Date.now();
let shuttingDown = false;

const say = (msg: string) => process.stdout.write(`[launcher] ${msg}\n`);
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1)}s`;

const logPath = (name: string) => path.join(logsDir, `${name}.log`);
const logFiles = new Map<string, fs.WriteStream>();
/** One append stream per service, kept across its restarts. */
function logFile(name: string): fs.WriteStream {
  fs.mkdirSync(logsDir, { recursive: true });
  let file = logFiles.get(name);
  if (!file) logFiles.set(name, (file = fs.createWriteStream(logPath(name), { flags: 'a' })));
  return file;
}

const supervisor = new Supervisor({ say, pidFile: processFile(config.dataDirAbsolute), logOf: logPath });
/** The first instance keeps the plain name (`worker`, `api`), the next ones are numbered (`worker-2`). */
const instanceName = (base: string, index: number) => (index === 0 ? base : `${base}-${index + 1}`);
const hostPort = (address: string) => ({ host: address.split(':')[0]!, port: Number(address.split(':')[1]) });
const workerMetricsAddress = (index: number) => `${hostPort(config.WORKER_METRICS_ADDRESS).host}:${hostPort(config.WORKER_METRICS_ADDRESS).port + index}`;
/**
 * Health ports: the publisher's OUTBOX_HEALTH_ADDRESS, then one per worker from WORKER_HEALTH_ADDRESS, each
 * stepping over a port another part already has (two workers' metrics take 9464 and 9465, the default 9465).
 */
const { outboxHealthAddress, workerHealthAddresses } = (() => {
  const taken = new Set<number>([config.API_PORT, config.SANDBOX_PORT, config.SANDBOX_B_PORT]);
  for (let i = 0; i < apiCount; i++) taken.add(config.API_PORT + i);
  for (let i = 0; i < workerCount; i++) taken.add(hostPort(workerMetricsAddress(i)).port);
  const next = (address: string) => {
    const { host } = hostPort(address);
    let { port } = hostPort(address);
    while (taken.has(port)) port++;
    taken.add(port);
    return `${host}:${port}`;
  };
  const outbox = next(config.OUTBOX_HEALTH_ADDRESS);
  return { outboxHealthAddress: outbox, workerHealthAddresses: Array.from({ length: workerCount }, () => next(config.WORKER_HEALTH_ADDRESS)) };
})();
const running = (proc: ManagedProcess, stop: () => Promise<void>): Running => ({ pid: proc.child.pid, exited: proc.exited, stop });

/** Warnings and errors from a service reach the console; everything goes to its log file. */
function forwardLine(name: string, file: fs.WriteStream) {
  return (line: string) => {
    file.write(`${line}\n`);
    // While everything stops, the services' complaints about each other going away stay in their log files.
    if (!shuttingDown && /"level":"(warn|error|fatal)"|"level":(40|50|60)\b|^\s*(Error|TypeError|at )/.test(line)) process.stdout.write(`[${name}] ${withoutStackTrace(line)}\n`);
  };
}

async function shutdown(code: number): Promise<void> {
  // Ctrl-C reaches us both from the terminal and relayed by npm: repeats are ignored while stopping.
  if (shuttingDown) return;
  shuttingDown = true;
  say('stopping...');
  await supervisor.stopAll((name, err) => say(err === undefined ? `stopped ${name}` : `could not stop ${name} cleanly: ${String(err)}`));
  releaseLock();
  process.exit(code);
}

const lockPath = path.join(config.dataDirAbsolute, 'launcher.pid');
function takeLock(): void {
  fs.mkdirSync(config.dataDirAbsolute, { recursive: true });
  for (;;) {
    try {
      // Atomic: of two launchers started together, exactly one creates the file.
      fs.writeFileSync(lockPath, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let content: string;
    try {
      content = fs.readFileSync(lockPath, 'utf8');
    } catch {
      continue; // removed meanwhile: try to create it again
    }
    const other = Number(content);
    if (!other) {
      // Created but not yet written by another launcher starting right now: look again.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      if (fs.existsSync(lockPath) && fs.readFileSync(lockPath, 'utf8') === '') fs.rmSync(lockPath, { force: true });
      continue;
    }
    if (other !== process.pid && isAlive(other)) {
      say(`the platform is already running from this folder (launcher pid ${other}); stop it with Ctrl-C there first.`);
      process.exit(1);
    }
    fs.rmSync(lockPath, { force: true }); // left by a launcher that died: take it over
  }
}
function releaseLock(): void {
  try {
    if (fs.readFileSync(lockPath, 'utf8') === String(process.pid)) fs.rmSync(lockPath);
  } catch {
    // already gone
  }
}
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function checkPorts(cfg: Config): Promise<void> {
  const wanted: [string, number][] = cfg.SANDBOX_EMBEDDED ? [['SANDBOX_PORT', cfg.SANDBOX_PORT], ['SANDBOX_B_PORT', cfg.SANDBOX_B_PORT]] : [];
  for (let i = 0; i < apiCount; i++) wanted.push([i === 0 ? 'API_PORT' : `API_PORT + ${i} (API_INSTANCES)`, cfg.API_PORT + i]);
  for (let i = 0; i < workerCount; i++) wanted.push([i === 0 ? 'WORKER_METRICS_ADDRESS' : `WORKER_METRICS_ADDRESS + ${i} (WORKER_PROCESSES)`, hostPort(workerMetricsAddress(i)).port]);
  for (const [i, address] of workerHealthAddresses.entries()) wanted.push([i === 0 ? 'WORKER_HEALTH_ADDRESS' : `WORKER_HEALTH_ADDRESS, worker ${i + 1}`, hostPort(address).port]);
  wanted.push(['OUTBOX_HEALTH_ADDRESS', hostPort(outboxHealthAddress).port]);
  if (!cfg.DATABASE_URL) wanted.push(['PG_PORT', cfg.PG_PORT]);
  if (cfg.TEMPORAL_EMBEDDED) {
    const frontend = hostPort(cfg.TEMPORAL_ADDRESS).port;
    wanted.push(['TEMPORAL_ADDRESS', frontend], ['TEMPORAL_UI_PORT', cfg.TEMPORAL_UI_PORT]);
    if (cluster) {
      const { frontend: _, membership, ...internal } = clusterPorts(frontend);
      if (frontend + 8 > 32_767) {
        say(`cannot start: TEMPORAL_ADDRESS's port ${frontend} is too high for the cluster: the Temporal server uses it and the 8 after it, and keeps them in a smallint column (at most 32767).`);
        process.exit(1);
      }
      for (const [what, port] of [...Object.entries(internal), ...Object.entries(membership).map(([k, v]) => [`${k} membership`, v] as const)]) {
        wanted.push([`TEMPORAL_ADDRESS + ${port - frontend} (the cluster's ${what} port)`, port]);
      }
    }
  }
  const taken: string[] = [];
  for (const [setting, port] of wanted) if (!(await isPortFree(port))) taken.push(`  port ${port} (${setting}) is already in use`);
  if (taken.length > 0) {
    say(`cannot start:\n${taken.join('\n')}\nStop whatever listens there, or set the named variable to a free port.`);
    process.exit(1);
  }
}

function startService(name: string, entry: string, env: NodeJS.ProcessEnv): Promise<Running> {
  return supervisor.supervise(name, async () => {
    const proc = startProcess(name, process.execPath, ['--import', 'tsx', entry], {
      cwd: repoRoot,
      env: { ...env, LAUNCHER_PID: String(process.pid) },
      onLine: forwardLine(name, logFile(name)),
    });
    return running(proc, () => proc.stop(15_000));
  });
}

async function waitForHttp(name: string, url: string, timeoutMs: number): Promise<void> {
  await waitUntil(name, async () => (await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok, timeoutMs, 300);
}

async function main(): Promise<void> {
  takeLock();
  await checkPorts(config);
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  // PostgreSQL
  let dbUrl = config.DATABASE_URL;
  if (!dbUrl) {
    say(`starting embedded PostgreSQL on port ${config.PG_PORT} (data: ${path.join(config.dataDirAbsolute, 'postgres')})`);
    await supervisor.supervise('postgres', async () => {
      const pg = await startEmbeddedPostgres({
        dataDir: path.join(config.dataDirAbsolute, 'postgres'),
        port: config.PG_PORT,
        database: config.PG_DATABASE,
        log: (line) => logFile('postgres').write(`${line}\n`),
      });
      dbUrl = pg.url;
      return running(pg.process, () => pg.stop());
    });
  } else {
    say('using PostgreSQL from DATABASE_URL');
  }
  const { applied, sealed } = await migrateDatabase(dbUrl!, config.DESTINATION_KEYS);
  say(`migrations: ${applied.length === 0 ? 'up to date' : `applied ${applied.join(', ')}`}${sealed > 0 ? `; sealed ${sealed} plaintext payout destination(s)` : ''} (${elapsed()})`);

  // Temporal
  const temporalRows = config.TEMPORAL_EMBEDDED ? await (cluster ? startTemporalCluster(dbUrl!) : startTemporalDev()) : [['Temporal', `${config.TEMPORAL_ADDRESS} (external)`]];
  if (!config.TEMPORAL_EMBEDDED) say(`using Temporal at ${config.TEMPORAL_ADDRESS}`);

  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: dbUrl };
  const here = path.dirname(fileURLToPath(import.meta.url));
  const apiUrls = Array.from({ length: apiCount }, (_, i) => `http://${config.API_HOST}:${config.API_PORT + i}`);
  const workerMetricsUrls = Array.from({ length: workerCount }, (_, i) => `http://${workerMetricsAddress(i)}/metrics`);
  const workerReadyUrls = workerHealthAddresses.map((address) => `http://${address}/health/ready`);
  const outboxReadyUrl = `http://${outboxHealthAddress}/health/ready`;
  for (let i = 0; i < workerCount; i++) {
    await startService(instanceName('worker', i), path.join(here, '../worker/main.ts'), { ...env, WORKER_METRICS_ADDRESS: workerMetricsAddress(i), WORKER_HEALTH_ADDRESS: workerHealthAddresses[i] });
  }
  // Two providers, so routing and failover are exercised: `sandbox` and `sandbox-b`, each its own process, schema
  // and secret. SANDBOX_EMBEDDED=false: they run elsewhere (the disaster-recovery drill keeps them outside both regions).
  if (config.SANDBOX_EMBEDDED) {
    await startService('sandbox-aggregator', path.join(here, '../sandbox-aggregator/main.ts'), env);
    await startService('sandbox-aggregator-b', path.join(here, '../sandbox-aggregator/main.ts'), { ...env, ...sandboxBProcessEnv(config) });
  }
  for (let i = 0; i < apiCount; i++) await startService(instanceName('api', i), path.join(here, '../api/main.ts'), { ...env, API_PORT: String(config.API_PORT + i) });
  await startService('outbox-publisher', path.join(here, '../outbox-publisher/main.ts'), { ...env, OUTBOX_HEALTH_ADDRESS: outboxHealthAddress });

  const sandboxUrl = config.SANDBOX_EMBEDDED ? `http://${config.SANDBOX_HOST}:${config.SANDBOX_PORT}` : config.SANDBOX_URL;
  const sandboxBUrl = config.SANDBOX_EMBEDDED ? `http://${config.SANDBOX_HOST}:${config.SANDBOX_B_PORT}` : config.SANDBOX_B_URL;
  await Promise.all([
    ...apiUrls.map((url, i) => waitForHttp(instanceName('API', i), `${url}/health`, 60_000)),
    ...workerMetricsUrls.map((url, i) => waitForHttp(`${instanceName('worker', i)} metrics`, url, 60_000)),
    ...workerReadyUrls.map((url, i) => waitForHttp(`${instanceName('worker', i)} readiness`, url, 60_000)),
    waitForHttp('outbox publisher readiness', outboxReadyUrl, 60_000),
    ...(config.SANDBOX_EMBEDDED ? [waitForHttp('sandbox aggregator', `${sandboxUrl}/health`, 60_000), waitForHttp('sandbox aggregator b', `${sandboxBUrl}/health`, 60_000)] : []),
  ]);

  // A worker is healthy when it has run a workflow end to end (Temporal -> worker -> PostgreSQL).
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const check = await runSelfCheck(createTemporalClient(connection, config.TEMPORAL_NAMESPACE), config.TEMPORAL_TASK_QUEUE);
    say(`worker self-check passed (workflow ${check.workflowId})`);
  } finally {
    await connection.close();
  }

  const rows = [
    ['Topology', cluster ? `cluster: Temporal server on PostgreSQL, ${workerCount} worker(s), ${apiCount} API instance(s)` : `development: Temporal dev server, ${workerCount} worker(s), ${apiCount} API instance(s)`],
    ...apiUrls.map((url, i) => [instanceName('API', i).replace('-', ' '), url]),
    ...(apiCount > 1 ? [['', 'no load balancer here: put yours in front of the API instances (README, "Cluster mode")']] : []),
    ['OpenAPI docs', `${apiUrls[0]}/docs`],
    ['Health', `${apiUrls[0]}/health (liveness /health/live, readiness /health/ready)`],
    ['Metrics', `${apiUrls[0]}/metrics`],
    ...workerMetricsUrls.map((url, i) => [`${instanceName('Worker', i).replace('-', ' ')} metrics`, url]),
    ...workerReadyUrls.map((url, i) => [`${instanceName('Worker', i).replace('-', ' ')} health`, `${url} (liveness /health/live)`]),
    ['Outbox publisher health', `${outboxReadyUrl} (liveness /health/live)`],
    ...temporalRows,
    ['Provider sandbox', `${sandboxUrl} (${config.SANDBOX_METHODS.join(', ')})${config.SANDBOX_EMBEDDED ? '' : ' (external)'}`],
    ['Provider sandbox-b', `${sandboxBUrl} (${config.SANDBOX_B_METHODS.join(', ')})${config.SANDBOX_EMBEDDED ? '' : ' (external)'}`],
    ['Payout routes', config.PAYOUT_ROUTES.map((r) => r.text).join('; ')],
    // Ids and origins only: an endpoint URL may carry a token.
    ['Outbox webhooks', config.OUTBOX_ENDPOINTS.map((e) => `${e.id} → ${new URL(e.url).origin}${e.enabled ? '' : ' (disabled)'}`).join(', ') || '(none: set OUTBOX_ENDPOINTS, or add endpoints at /v1/ops/outbox/endpoints; events wait in the outbox)'],
    ['PostgreSQL', redactPassword(dbUrl!)],
    ['Processes', processFile(config.dataDirAbsolute)],
    ['Logs', logsDir],
  ];
  const width = Math.max(...rows.map(([k]) => k!.length));
  process.stdout.write(`\nPayout platform is up in ${elapsed()}. Ctrl-C stops everything.\n\n${rows.map(([k, v]) => `  ${k!.padEnd(width)}  ${v}`).join('\n')}\n\n`);
}

/** The Temporal dev server (SQLite file in DATA_DIR, Web UI included); returns its banner rows. */
async function startTemporalDev(): Promise<string[][]> {
  const cli = ensureTemporalCli((msg) => say(msg));
  say(`starting Temporal dev server (${temporalCliVersion(cli.path)}, ${cli.source})`);
  const { host, port } = hostPort(config.TEMPORAL_ADDRESS);
  let uiUrl: string | undefined;
  await supervisor.supervise('temporal', async () => {
    const server = await startTemporalDevServer({
      cliPath: cli.path,
      port,
      ip: host,
      uiPort: config.TEMPORAL_UI_PORT,
      dbFile: path.join(config.dataDirAbsolute, 'temporal', 'temporal.db'),
      namespace: config.TEMPORAL_NAMESPACE,
      onLine: forwardLine('temporal', logFile('temporal')),
    });
    uiUrl = server.uiUrl;
    return running(server.process, () => server.stop());
  });
  return [
    ['Temporal UI', uiUrl ?? ''],
    ['Temporal gRPC', config.TEMPORAL_ADDRESS],
  ];
}

/** The Temporal server itself on the ledger's PostgreSQL, and its Web UI; returns their banner rows. */
async function startTemporalCluster(dbUrl: string): Promise<string[][]> {
  const tools = ensureTemporalServerTools((msg) => say(msg));
  const db = temporalPostgresOf(dbUrl);
  await setupTemporalSchema(tools, db, say);
  const { host, port } = hostPort(config.TEMPORAL_ADDRESS);
  const dir = path.join(config.dataDirAbsolute, 'temporal-cluster');
  say(`starting Temporal server ${TEMPORAL_SERVER_VERSION} (PostgreSQL persistence and visibility, ${config.TEMPORAL_HISTORY_SHARDS} history shards)`);
  let metricsUrl = '';
  await supervisor.supervise('temporal', async () => {
    const server = await startTemporalServer({ tools, dir, ip: host, port, db, historyShards: config.TEMPORAL_HISTORY_SHARDS, namespace: config.TEMPORAL_NAMESPACE, onLine: forwardLine('temporal', logFile('temporal')) });
    metricsUrl = server.metricsUrl;
    return running(server.process, () => server.stop());
  });
  let uiUrl = '';
  await supervisor.supervise('temporal-ui', async () => {
    const ui = await startTemporalUi({ binary: tools.ui, dir, ip: host, port: config.TEMPORAL_UI_PORT, temporalAddress: config.TEMPORAL_ADDRESS, namespace: config.TEMPORAL_NAMESPACE, onLine: forwardLine('temporal-ui', logFile('temporal-ui')) });
    uiUrl = ui.url;
    return running(ui.process, () => ui.stop());
  });
  return [
    ['Temporal UI', uiUrl],
    ['Temporal gRPC', config.TEMPORAL_ADDRESS],
    ['Temporal metrics', metricsUrl],
    ['Temporal persistence', `PostgreSQL databases ${TEMPORAL_DATABASES.main}, ${TEMPORAL_DATABASES.visibility} (${config.TEMPORAL_HISTORY_SHARDS} history shards)`],
  ];
}

function redactPassword(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

main().catch(async (err) => {
  say(`start failed: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
});
