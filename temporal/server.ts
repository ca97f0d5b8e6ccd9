import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { msToTs } from '@temporalio/common/lib/time';
import pg from 'pg';
import { startProcess, whenReady, withoutStackTrace, type ManagedProcess } from '../lib/processes';
import { waitUntil } from '../lib/wait';
import { TEMPORAL_CLI_VERSION } from './cli';
import { goCacheDir, goInstall, goModuleDir, isExecutable } from './go-build';
import { CUSTOM_SEARCH_ATTRIBUTES } from './search-attributes';

/**
 * The production topology's Temporal: the server itself (frontend, history, matching and worker services over
 * history shards) on PostgreSQL, with SQL visibility, and the Web UI server, both built from their Go modules
 * at the versions the pinned CLI bundles (temporal/cli.ts), so development and cluster mode run the same server.
 */
export const TEMPORAL_SERVER_MODULE = 'go.temporal.io/server';
export const TEMPORAL_SERVER_VERSION = 'v1.29.1';
export const TEMPORAL_UI_MODULE = 'github.com/temporalio/ui-server/v2';
export const TEMPORAL_UI_VERSION = 'v2.42.1';
/** Kept by the server for closed workflows (a payout's saga stays open through its 7-day return window). */
const RETENTION_DAYS = 30;
export const TEMPORAL_DATABASES = { main: 'temporal', visibility: 'temporal_visibility' } as const;

export interface TemporalServerTools {
  server: string;
  sqlTool: string;
  ui: string;
  /** `schema/postgresql/v12/{temporal,visibility}/versioned` of the server's module. */
  schemaDir: string;
}

/** Finds the cached builds, or builds them (the server and its SQL tool ~3 minutes, the UI server ~1). */
export function ensureTemporalServerTools(log: (msg: string) => void): TemporalServerTools {
  const serverDir = goCacheDir('temporal-server', TEMPORAL_SERVER_VERSION);
  const tools: TemporalServerTools = {
    server: path.join(serverDir, 'temporal-server'),
    sqlTool: path.join(serverDir, 'temporal-sql-tool'),
    ui: path.join(goCacheDir('temporal-ui-server', TEMPORAL_UI_VERSION), 'temporal-ui-server'),
    schemaDir: path.join(serverDir, 'schema', 'postgresql', 'v12'),
  };
  const version = TEMPORAL_SERVER_VERSION;
  if (!isExecutable(tools.server)) goInstall({ what: 'Temporal server', pkg: `${TEMPORAL_SERVER_MODULE}/cmd/server`, version, target: tools.server, log });
  if (!isExecutable(tools.sqlTool)) goInstall({ what: 'Temporal SQL tool', pkg: `${TEMPORAL_SERVER_MODULE}/cmd/tools/sql`, version, target: tools.sqlTool, log });
  if (!fs.existsSync(path.join(tools.schemaDir, 'temporal', 'versioned'))) {
    const source = path.join(goModuleDir(TEMPORAL_SERVER_MODULE, version), 'schema', 'postgresql', 'v12');
    const staging = `${tools.schemaDir}.partial-${process.pid}`;
    fs.cpSync(source, staging, { recursive: true });
    makeWritable(staging); // the module cache is read-only; the copy need not be (so the cache can be removed)
    fs.renameSync(staging, tools.schemaDir);
  }
  if (!isExecutable(tools.ui)) goInstall({ what: 'Temporal Web UI server', pkg: `${TEMPORAL_UI_MODULE}/cmd/server`, version: TEMPORAL_UI_VERSION, target: tools.ui, log });
  return tools;
}

function makeWritable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) makeWritable(full);
    else fs.chmodSync(full, 0o644);
  }
}

/** Where Temporal's two databases live: the ledger's PostgreSQL server (databases `temporal`, `temporal_visibility`). */
export interface TemporalPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
}

export function temporalPostgresOf(databaseUrl: string): TemporalPostgres {
  const url = new URL(databaseUrl);
  return { host: url.hostname, port: Number(url.port || 5432), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
}

/**
 * Creates Temporal's databases if missing and brings both schemas to the version this server expects, with
 * the server's own SQL tool (`setup-schema` once, then `update-schema`, which applies only what is new).
 */
export async function setupTemporalSchema(tools: TemporalServerTools, db: TemporalPostgres, log: (msg: string) => void): Promise<void> {
  const connect = async (database: string) => {
    const client = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database });
    await client.connect();
    return client;
  };
  const admin = await connect('postgres');
  try {
    for (const database of Object.values(TEMPORAL_DATABASES)) {
      const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1;
      // The names are constants; CREATE DATABASE takes no parameters.
      if (!exists) await admin.query(`CREATE DATABASE ${database}`);
    }
  } finally {
    await admin.end();
  }
  const versions: string[] = [];
  for (const [kind, database] of Object.entries(TEMPORAL_DATABASES)) {
    const sql = (...args: string[]) =>
      execFileSync(tools.sqlTool, ['--plugin', 'postgres12', '--ep', db.host, '--port', String(db.port), '--user', db.user, '--db', database, ...args], {
        // The password through the environment, not the command line (visible to every local user).
        env: { ...process.env, SQL_PASSWORD: db.password },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const client = await connect(database);
    try {
      const hasVersioning = (await client.query(`SELECT to_regclass('public.schema_version') IS NOT NULL AS present`)).rows[0]!.present as boolean;
      if (!hasVersioning) sql('setup-schema', '-v', '0.0');
      sql('update-schema', '-d', path.join(tools.schemaDir, kind === 'main' ? 'temporal' : 'visibility', 'versioned'));
      const { rows } = await client.query<{ curr_version: string }>('SELECT curr_version FROM schema_version LIMIT 1');
      versions.push(`${database} ${rows[0]?.curr_version ?? '?'}`);
    } finally {
      await client.end();
    }
  }
  log(`Temporal schema: ${versions.join(', ')}`);
}

/** The server's ports: the frontend's is TEMPORAL_ADDRESS's; the internal ones follow it. */
export function clusterPorts(frontendPort: number) {
  return {
    frontend: frontendPort,
    history: frontendPort + 1,
    matching: frontendPort + 2,
    worker: frontendPort + 3,
    membership: { frontend: frontendPort + 4, history: frontendPort + 5, matching: frontendPort + 6, worker: frontendPort + 7 },
    metrics: frontendPort + 8,
  };
}

export interface TemporalServerOptions {
  tools: TemporalServerTools;
  /** Config files, written here at each start (they hold the database password: mode 0600). */
  dir: string;
  ip: string;
  port: number;
  db: TemporalPostgres;
  historyShards: number;
  namespace: string;
  onLine?: (line: string) => void;
  startTimeoutMs?: number;
}

/** Writes the server's configuration (JSON, which YAML reads) and its dynamic configuration. */
function writeServerConfig(opts: TemporalServerOptions): { root: string; env: string } {
  const ports = clusterPorts(opts.port);
  const root = path.join(opts.dir, 'server');
  fs.mkdirSync(path.join(root, 'config'), { recursive: true, mode: 0o700 });
  const store = (databaseName: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `${opts.db.host}:${opts.db.port}`,
      connectProtocol: 'tcp',
      user: opts.db.user,
      password: opts.db.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const service = (grpcPort: number, membershipPort: number) => ({ rpc: { grpcPort, membershipPort, bindOnIP: opts.ip } });
  const frontend = `${opts.ip}:${opts.port}`;
  const config = {
    log: { stdout: true, level: 'warn', format: 'json' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      // Fixed when the database is first set up; the server refuses to start with another count.
      numHistoryShards: opts.historyShards,
      datastores: { 'postgres-default': store(TEMPORAL_DATABASES.main, 20), 'postgres-visibility': store(TEMPORAL_DATABASES.visibility, 10) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: opts.ip === '0.0.0.0' ? '127.0.0.1' : opts.ip },
      metrics: { prometheus: { framework: 'tally', timerType: 'histogram', listenAddress: `${opts.ip}:${ports.metrics}` } },
    },
    services: {
      frontend: service(ports.frontend, ports.membership.frontend),
      history: service(ports.history, ports.membership.history),
      matching: service(ports.matching, ports.membership.matching),
      worker: service(ports.worker, ports.membership.worker),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: frontend } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } },
    namespaceDefaults: { archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } } },
    // The worker service's system workflows (schedules among them) reach the frontend here.
    publicClient: { hostPort: frontend },
    dynamicConfigClient: { filepath: path.join(root, 'config', 'dynamic.yaml'), pollInterval: '10s' },
  };
  fs.writeFileSync(path.join(root, 'config', 'cluster.yaml'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  const dynamic: Record<string, unknown> = {
    // Update-with-start (early payout answers) needs multi-operations; stated explicitly, as for the dev server.
    'frontend.enableExecuteMultiOperation': true,
    'frontend.enableUpdateWorkflowExecution': true,
    // A namespace or search attribute registered at start is usable within seconds rather than after the default 10 s.
    'system.namespaceCacheRefreshInterval': '2s',
    // Nexus needs the frontend's HTTP port, which this topology does not open; said here so the server does not warn.
    'system.enableNexus': false,
    // As the dev server: visibility queries of staff and the API's listings are not throttled at 10/s.
    'frontend.namespaceRPS.visibility': 100,
  };
  fs.writeFileSync(path.join(root, 'config', 'dynamic.yaml'), `${Object.entries(dynamic).map(([k, v]) => `${k}:\n  - value: ${JSON.stringify(v)}`).join('\n')}\n`);
  return { root, env: 'cluster' };
}

export interface TemporalServerHandle {
  address: string;
  metricsUrl: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** Starts the server, registers the namespace and the custom search attributes (once), and waits until both are usable. */
export async function startTemporalServer(opts: TemporalServerOptions): Promise<TemporalServerHandle> {
  const { root, env } = writeServerConfig(opts);
  const tail: string[] = [];
  const proc = startProcess('temporal', opts.tools.server, ['--root', root, '--config', 'config', '--env', env, '--allow-no-auth', 'start'], {
    onLine: (line) => {
      tail.push(withoutStackTrace(line));
      if (tail.length > 30) tail.shift();
      opts.onLine?.(line);
    },
  });
  const address = `${opts.ip === '0.0.0.0' ? '127.0.0.1' : opts.ip}:${opts.port}`;
  await whenReady(proc, prepareNamespace(address, opts.namespace, opts.startTimeoutMs ?? 120_000), 'temporal server', { lastLines: tail, stopGraceMs: 5_000 });
  return { address, metricsUrl: `http://${address.split(':')[0]}:${clusterPorts(opts.port).metrics}/metrics`, process: proc, stop: () => proc.stop(20_000) };
}

const { IndexedValueType } = proto.temporal.api.enums.v1;
const INDEXED_TYPES: Record<string, proto.temporal.api.enums.v1.IndexedValueType> = {
  Keyword: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  Int: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Bool: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
};

/** A visibility query naming every custom search attribute: refused until the frontend knows them all. */
const PROBE_QUERY = Object.entries(CUSTOM_SEARCH_ATTRIBUTES)
  .map(([name, type]) => `${name} = ${type === 'Int' ? '0' : type === 'Bool' ? 'true' : "'probe'"}`)
  .join(' AND ');

async function prepareNamespace(address: string, namespace: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1_000, deadline - Date.now());
  let connection: Connection | undefined;
  await waitUntil(`Temporal server at ${address}`, async () => {
    connection ??= await Connection.connect({ address, connectTimeout: 1_000 });
    // The gRPC health check, not an API call: the frontend logs every call it refuses while it starts.
    const { status } = await connection.healthService.check({ service: 'temporal.api.workflowservice.v1.WorkflowService' });
    return status === proto.grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING;
  }, left(), 500);
  try {
    const service = connection!.workflowService;
    try {
      await service.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(RETENTION_DAYS * 24 * 3600 * 1000) });
    } catch (err) {
      if ((err as { code?: number }).code !== 6) throw err; // ALREADY_EXISTS: registered by an earlier start
    }
    await waitUntil(`namespace ${namespace}`, async () => Boolean(await service.describeNamespace({ namespace })), left(), 500);
    const { customAttributes } = await connection!.operatorService.listSearchAttributes({ namespace });
    const missing = Object.entries(CUSTOM_SEARCH_ATTRIBUTES).filter(([name]) => !(name in (customAttributes ?? {})));
    if (missing.length > 0) {
      await connection!.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, INDEXED_TYPES[type]!])) });
    }
    await waitUntil(`search attributes of ${namespace}`, async () => Boolean(await service.countWorkflowExecutions({ namespace, query: PROBE_QUERY })), left(), 500);
  } finally {
    await connection?.close();
  }
}

export interface TemporalUiOptions {
  binary: string;
  dir: string;
  ip: string;
  port: number;
  temporalAddress: string;
  namespace: string;
  onLine?: (line: string) => void;
}

/** The Web UI server (the one the CLI embeds) against the cluster's frontend. */
export async function startTemporalUi(opts: TemporalUiOptions): Promise<{ url: string; process: ManagedProcess; stop(): Promise<void> }> {
  const root = path.join(opts.dir, 'ui');
  fs.mkdirSync(path.join(root, 'config'), { recursive: true });
  const config = { temporalGrpcAddress: opts.temporalAddress, host: opts.ip, port: opts.port, enableUi: true, defaultNamespace: opts.namespace, cors: { cookieInsecure: true }, hideLogs: true };
  fs.writeFileSync(path.join(root, 'config', 'cluster.yaml'), `${JSON.stringify(config, null, 2)}\n`);
  const proc = startProcess('temporal-ui', opts.binary, ['--root', root, '--config', 'config', '--env', 'cluster', 'start'], { onLine: opts.onLine });
  const url = `http://${opts.ip === '0.0.0.0' ? '127.0.0.1' : opts.ip}:${opts.port}`;
  await whenReady(proc, waitUntil('Temporal Web UI', async () => (await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok, 30_000, 300), 'Temporal Web UI server');
  return { url, process: proc, stop: () => proc.stop(5_000) };
}

// `npm run temporal:server` builds (or finds) the cluster's Temporal programs and prints where they are.
if (import.meta.url === `file://${process.argv[1]}`) {
  const tools = ensureTemporalServerTools((m) => process.stderr.write(`${m}\n`));
  process.stdout.write(`${JSON.stringify(tools, null, 2)}\n(the CLI ${TEMPORAL_CLI_VERSION} bundles the same server ${TEMPORAL_SERVER_VERSION} and UI ${TEMPORAL_UI_VERSION})\n`);
}
