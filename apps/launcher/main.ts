/**
 * `npm start`: the whole platform on one machine. Embedded PostgreSQL and the Temporal dev server
 * (unless DATABASE_URL / TEMPORAL_EMBEDDED=false point elsewhere), then the worker, the sandbox
 * aggregator and the API, each waited on until healthy. Ctrl-C stops everything in reverse order.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { createTemporalClient } from '../../lib/temporal-client';
import { loadConfigOrExit, repoRoot, type Config } from '../../lib/config';
import { startEmbeddedPostgres } from '../../lib/embedded-postgres';
import { migrateDatabase } from '../../lib/migrate';
import { startProcess, type ManagedProcess } from '../../lib/processes';
import { isPortFree, waitUntil } from '../../lib/wait';
import { ensureTemporalCli, temporalCliVersion } from '../../temporal/cli';
import { startTemporalDevServer } from '../../temporal/dev-server';
import { runSelfCheck } from './self-check';

const config = loadConfigOrExit();
const logsDir = path.join(config.dataDirAbsolute, 'logs');
const startedAt = Date.now();
const stops: { name: string; stop: () => Promise<unknown> }[] = [];
let shuttingDown = false;

const say = (msg: string) => process.stdout.write(`[launcher] ${msg}\n`);
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1)}s`;

function logFile(name: string): fs.WriteStream {
  fs.mkdirSync(logsDir, { recursive: true });
  return fs.createWriteStream(path.join(logsDir, `${name}.log`), { flags: 'a' });
}

/** Warnings and errors from a service reach the console; everything goes to its log file. */
function forwardLine(name: string, file: fs.WriteStream) {
  return (line: string) => {
    file.write(`${line}\n`);
    if (/"level":"(warn|error|fatal)"|"level":(40|50|60)\b|^\s*(Error|TypeError|at )/.test(line)) process.stdout.write(`[${name}] ${line}\n`);
  };
}

async function shutdown(code: number): Promise<void> {
  // Ctrl-C reaches us both from the terminal and relayed by npm: repeats are ignored while stopping.
  if (shuttingDown) return;
  shuttingDown = true;
  say('stopping...');
  for (const { name, stop } of [...stops].reverse()) {
    try {
      await stop();
      say(`stopped ${name}`);
    } catch (err) {
      say(`could not stop ${name} cleanly: ${String(err)}`);
    }
  }
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
  const wanted: [string, number][] = [
    ['API_PORT', cfg.API_PORT],
    ['SANDBOX_PORT', cfg.SANDBOX_PORT],
    ['WORKER_METRICS_ADDRESS', Number(cfg.WORKER_METRICS_ADDRESS.split(':')[1])],
  ];
  if (!cfg.DATABASE_URL) wanted.push(['PG_PORT', cfg.PG_PORT]);
  if (cfg.TEMPORAL_EMBEDDED) wanted.push(['TEMPORAL_ADDRESS', Number(cfg.TEMPORAL_ADDRESS.split(':')[1])], ['TEMPORAL_UI_PORT', cfg.TEMPORAL_UI_PORT]);
  const taken: string[] = [];
  for (const [setting, port] of wanted) if (!(await isPortFree(port))) taken.push(`  port ${port} (${setting}) is already in use`);
  if (taken.length > 0) {
    say(`cannot start:\n${taken.join('\n')}\nStop whatever listens there, or set the named variable to a free port.`);
    process.exit(1);
  }
}

function startService(name: string, entry: string, env: NodeJS.ProcessEnv): ManagedProcess {
  const file = logFile(name);
  const proc = startProcess(name, process.execPath, ['--import', 'tsx', entry], {
    cwd: repoRoot,
    env: { ...env, LAUNCHER_PID: String(process.pid) },
    onLine: forwardLine(name, file),
  });
  stops.push({ name, stop: () => proc.stop(15_000) });
  void proc.exited.then((code) => {
    if (!shuttingDown) {
      say(`${name} exited unexpectedly (${code}); see ${path.join(logsDir, `${name}.log`)}`);
      void shutdown(1);
    }
  });
  return proc;
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
    const pgLog = logFile('postgres');
    const pg = await startEmbeddedPostgres({
      dataDir: path.join(config.dataDirAbsolute, 'postgres'),
      port: config.PG_PORT,
      database: config.PG_DATABASE,
      log: (line) => pgLog.write(`${line}\n`),
    });
    stops.push({ name: 'postgres', stop: () => pg.stop() });
    dbUrl = pg.url;
  } else {
    say('using PostgreSQL from DATABASE_URL');
  }
  const { applied, sealed } = await migrateDatabase(dbUrl, config.DESTINATION_KEYS);
  say(`migrations: ${applied.length === 0 ? 'up to date' : `applied ${applied.join(', ')}`}${sealed > 0 ? `; sealed ${sealed} plaintext payout destination(s)` : ''} (${elapsed()})`);

  // Temporal
  let temporalUi: string | undefined;
  if (config.TEMPORAL_EMBEDDED) {
    const cli = ensureTemporalCli((msg) => say(msg));
    say(`starting Temporal dev server (${temporalCliVersion(cli.path)}, ${cli.source})`);
    const temporalLog = logFile('temporal');
    const server = await startTemporalDevServer({
      cliPath: cli.path,
      port: Number(config.TEMPORAL_ADDRESS.split(':')[1]),
      ip: config.TEMPORAL_ADDRESS.split(':')[0],
      uiPort: config.TEMPORAL_UI_PORT,
      dbFile: path.join(config.dataDirAbsolute, 'temporal', 'temporal.db'),
      namespace: config.TEMPORAL_NAMESPACE,
      onLine: forwardLine('temporal', temporalLog),
    });
    stops.push({ name: 'temporal', stop: () => server.stop() });
    temporalUi = server.uiUrl;
    void server.process.exited.then((code) => {
      if (!shuttingDown) {
        say(`Temporal dev server exited unexpectedly (${code}); see ${path.join(logsDir, 'temporal.log')}`);
        void shutdown(1);
      }
    });
  } else {
    say(`using Temporal at ${config.TEMPORAL_ADDRESS}`);
  }

  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: dbUrl };
  const here = path.dirname(fileURLToPath(import.meta.url));
  startService('worker', path.join(here, '../worker/main.ts'), env);
  startService('sandbox-aggregator', path.join(here, '../sandbox-aggregator/main.ts'), env);
  startService('api', path.join(here, '../api/main.ts'), env);
  startService('outbox-publisher', path.join(here, '../outbox-publisher/main.ts'), env);

  const apiUrl = `http://${config.API_HOST}:${config.API_PORT}`;
  const sandboxUrl = `http://${config.SANDBOX_HOST}:${config.SANDBOX_PORT}`;
  await Promise.all([waitForHttp('API', `${apiUrl}/health`, 60_000), waitForHttp('sandbox aggregator', `${sandboxUrl}/health`, 60_000)]);

  // The worker is healthy when it has run a workflow end to end (Temporal -> worker -> PostgreSQL).
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const check = await runSelfCheck(createTemporalClient(connection, config.TEMPORAL_NAMESPACE), config.TEMPORAL_TASK_QUEUE);
    say(`worker self-check passed (workflow ${check.workflowId})`);
  } finally {
    await connection.close();
  }

  const rows = [
    ['API', apiUrl],
    ['OpenAPI docs', `${apiUrl}/docs`],
    ['Health', `${apiUrl}/health`],
    ['Metrics', `${apiUrl}/metrics`],
    ['Worker metrics', `http://${config.WORKER_METRICS_ADDRESS}/metrics`],
    ['Temporal UI', temporalUi ?? '(external Temporal)'],
    ['Temporal gRPC', config.TEMPORAL_ADDRESS],
    ['Sandbox aggregator', sandboxUrl],
    ['Outbox webhooks', config.OUTBOX_ENDPOINTS || '(none: set OUTBOX_ENDPOINTS; events wait in the outbox)'],
    ['PostgreSQL', redactPassword(dbUrl)],
    ['Logs', logsDir],
  ];
  const width = Math.max(...rows.map(([k]) => k!.length));
  process.stdout.write(`\nPayout platform is up in ${elapsed()}. Ctrl-C stops everything.\n\n${rows.map(([k, v]) => `  ${k!.padEnd(width)}  ${v}`).join('\n')}\n\n`);
}

function redactPassword(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

main().catch(async (err) => {
  say(`start failed: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
});
