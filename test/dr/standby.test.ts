import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../lib/embedded-postgres';
import { replicationStatus, startStandby, type StandbyHandle, type StandbyOptions } from '../../lib/standby-postgres';
import { freePort, isPortFree, sleep, waitUntil } from '../../lib/wait';

/**
 * A standby made with the low-level backup API streams from a primary of our own (not the test run's database):
 * asynchronous, then failed over to; the promoted standby is then the primary of a synchronous one, which is
 * failed over to in turn. The tests run in order: each builds on the state the previous one left.
 */
describe('standby PostgreSQL (streaming replication)', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dr-standby-'));
  const servers: { handle: EmbeddedPostgresHandle; dataDir: string }[] = [];
  const clients: pg.Client[] = [];
  let primary: EmbeddedPostgresHandle;
  let standbyA: StandbyHandle;
  let optsB: StandbyOptions;
  let standbyB: StandbyHandle;

  const connect = async (url: string) => {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined); // servers are killed under open sessions on purpose
    clients.push(client);
    await client.connect();
    return client;
  };
  const ids = async (url: string, table = 'items') => {
    const client = await connect(url);
    try {
      return new Set((await client.query<{ id: string }>(`SELECT id FROM ${table}`)).rows.map((r) => Number(r.id)));
    } finally {
      await client.end();
    }
  };
  const standby = async (opts: StandbyOptions) => {
    const handle = await startStandby(opts);
    servers.push({ handle, dataDir: opts.dataDir });
    return handle;
  };
  /** The disaster: the whole server's process group, at once. */
  const kill = (handle: EmbeddedPostgresHandle) => handle.process.stop(0, 'SIGKILL');

  beforeAll(async () => {
    const dataDir = path.join(work, 'primary');
    primary = await startEmbeddedPostgres({ dataDir, port: await freePort(), database: 'dr' });
    servers.push({ handle: primary, dataDir });
    const db = await connect(primary.url);
    await db.query('CREATE TABLE items (id bigint PRIMARY KEY, session int NOT NULL DEFAULT 0)');
    await db.query('CREATE TABLE filler (id bigserial PRIMARY KEY, pad text NOT NULL)');
    await db.query('INSERT INTO items (id) SELECT generate_series(1, 100)');
    // Another database of the same cluster, as Temporal's are next to the ledger's.
    await db.query('CREATE DATABASE other');
    await db.end();
    const other = await connect(primary.url.replace(/\/dr$/, '/other'));
    await other.query('CREATE TABLE t (id int); INSERT INTO t VALUES (42)');
    await other.end();
    // Without initdb's replication lines: the standby's base backup must add one for 127.0.0.1.
    const hba = path.join(dataDir, 'pg_hba.conf');
    fs.writeFileSync(hba, fs.readFileSync(hba, 'utf8').split('\n').filter((line) => !/^host\s+replication\s/.test(line)).join('\n'));
    await (await connect(primary.url)).query('SELECT pg_reload_conf()');
  });

  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => undefined);
    for (const { handle } of servers.reverse()) await handle.process.stop(5_000, 'SIGINT');
    // Whatever a failed start may have left: the postmaster named in each data folder, if it still runs there.
    for (const dir of fs.existsSync(work) ? fs.readdirSync(work) : []) {
      const pidFile = path.join(work, dir, 'postmaster.pid');
      try {
        const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
        if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.join(work, dir))) process.kill(pid, 'SIGKILL');
      } catch {
        // no pid file, or its server is gone
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
    for (const { handle } of servers) expect(await isPortFree(handle.port), `port ${handle.port} released`).toBe(true);
  });

  describe('asynchronous (the default)', () => {
    beforeAll(async () => {
      standbyA = await standby({ primaryUrl: primary.url, primaryDataDir: path.join(work, 'primary'), dataDir: path.join(work, 'standby-a'), port: await freePort(), name: 'standby_a' });
    });

    it('is a copy of the whole cluster, made before it existed, owned by the server user with mode 0700; the primary allows its connection', async () => {
      expect(await ids(standbyA.url)).toEqual(new Set(Array.from({ length: 100 }, (_, i) => i + 1)));
      expect(await ids(standbyA.url.replace(/\/dr$/, '/other'), 't')).toEqual(new Set([42]));
      const dir = fs.statSync(path.join(work, 'standby-a'));
      expect(dir.mode & 0o777).toBe(0o700);
      if (os.userInfo().uid === 0) expect(dir.uid).toBe(Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })));
      expect(fs.existsSync(path.join(work, 'standby-a', 'standby.signal'))).toBe(true);
      expect(fs.readFileSync(path.join(work, 'primary', 'pg_hba.conf'), 'utf8')).toMatch(/^host\s+replication\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
    });

    it('streams: rows written on the primary appear within seconds; pg_stat_replication says streaming, async', async () => {
      const db = await connect(primary.url);
      await db.query('INSERT INTO items (id) SELECT generate_series(101, 150)');
      await waitUntil('rows 101..150 on the standby', async () => (await ids(standbyA.url)).has(150), 5_000, 50);
      expect((await ids(standbyA.url)).size).toBe(150);
      const rows = await replicationStatus(primary.url);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ applicationName: 'standby_a', state: 'streaming', syncState: 'async' });
      expect(await standbyA.replication()).toMatchObject({ state: 'streaming' });
    });

    it('refuses writes: read-only transaction (25006)', async () => {
      const db = await connect(standbyA.url);
      await expect(db.query('INSERT INTO items (id) VALUES (-1)')).rejects.toMatchObject({ code: '25006' });
    });

    it('reports a measurable lag in bytes while the primary writes, and catches up', async () => {
      const writer = await connect(primary.url);
      const samples: number[] = [];
      const until = Date.now() + 1_500;
      const writing = (async () => {
        while (Date.now() < until) await writer.query("INSERT INTO filler (pad) SELECT repeat('x', 500) FROM generate_series(1, 2000)");
      })();
      while (Date.now() < until) {
        const [row] = await replicationStatus(primary.url);
        if (row?.lagBytes != null) samples.push(row.lagBytes);
        await sleep(50);
      }
      await writing;
      expect(samples.length).toBeGreaterThan(5);
      expect(Math.max(...samples)).toBeGreaterThan(0);
      // Caught up: the standby reports a replay position at or past the primary's position after the writes.
      const target = (await writer.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
      await waitUntil('the standby replayed past the writes', async () => {
        const replayed = (await standbyA.replication())?.replayLsn;
        return !!replayed && (await writer.query('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn) >= 0 AS done', [replayed, target])).rows[0].done;
      }, 10_000, 100);
      const count = async (url: string) => {
        const c = await connect(url);
        return (await c.query('SELECT count(*)::int AS n FROM filler')).rows[0].n as number;
      };
      expect(await count(standbyA.url)).toBe(await count(primary.url));
    });

    it('fails over: the primary killed, the promoted standby takes writes and has every row that reached it', async () => {
      // Writes in flight when the primary dies: which of them reached the standby is what asynchronous replication risks.
      const writer = await connect(primary.url);
      const acknowledged: number[] = [];
      const writing = (async () => {
        for (let id = 1_000; ; id++) {
          await writer.query('INSERT INTO items (id) VALUES ($1)', [id]);
          acknowledged.push(id);
        }
      })().catch(() => undefined);
      await waitUntil('writes reaching the standby', async () => (await ids(standbyA.url)).has(1_020), 10_000, 50);
      const reached = await ids(standbyA.url);
      await kill(primary);
      await writing;

      await standbyA.promote();
      const after = await ids(standbyA.url);
      for (const id of reached) expect(after.has(id), `row ${id} seen on the standby before the kill`).toBe(true);
      const attempted = new Set([...Array.from({ length: 150 }, (_, i) => i + 1), ...acknowledged, (acknowledged.at(-1) ?? 999) + 1]);
      for (const id of after) expect(attempted.has(id), `row ${id} was written`).toBe(true);
      const db = await connect(standbyA.url);
      expect((await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
      await db.query('INSERT INTO items (id) VALUES (-1)');
      expect((await ids(standbyA.url)).has(-1)).toBe(true);
    });
  });

  describe('synchronous (RPO 0), the promoted standby as its primary', () => {
    beforeAll(async () => {
      optsB = { primaryUrl: standbyA.url, primaryDataDir: path.join(work, 'standby-a'), dataDir: path.join(work, 'standby-b'), port: await freePort(), name: 'standby_b', synchronous: true };
      standbyB = await standby(optsB);
    });

    it('is the primary\'s synchronous standby', async () => {
      expect(await standbyB.replication()).toMatchObject({ state: 'streaming', syncState: 'sync' });
      expect((await ids(standbyB.url)).has(-1)).toBe(true);
    });

    it('holds commits while the standby is down, and returns them once it is back (restarted on its data folder)', async () => {
      await standbyB.stop();
      const session = await connect(standbyA.url);
      const notices: string[] = [];
      session.on('notice', (notice) => notices.push(notice.message ?? ''));
      const pid = (await session.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const insert = session.query('INSERT INTO items (id) VALUES (-2)');
      expect(await Promise.race([insert.then(() => 'returned'), sleep(1_500).then(() => 'still waiting')])).toBe('still waiting');
      const admin = await connect(standbyA.url);
      expect((await admin.query('SELECT wait_event FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].wait_event).toBe('SyncRep');
      // Cancelling the wait returns the commit with a warning: it is committed locally, only not replicated.
      await admin.query('SELECT pg_cancel_backend($1)', [pid]);
      await insert;
      expect(notices.join('\n')).toMatch(/canceling wait for synchronous replication/);

      standbyB = await standby(optsB);
      expect(await standbyB.replication()).toMatchObject({ state: 'streaming', syncState: 'sync' });
      const returned = session.query('INSERT INTO items (id) VALUES (-3)');
      expect(await Promise.race([returned.then(() => 'returned'), sleep(5_000).then(() => 'still waiting')])).toBe('returned');
      const onStandby = await ids(standbyB.url);
      expect(onStandby.has(-2)).toBe(true); // streamed once it reconnected
      expect(onStandby.has(-3)).toBe(true); // no wait needed: a returned commit has reached the standby
    });

    it('loses no returned commit when the primary is killed mid-load (RPO 0)', async () => {
      const returned: number[] = [];
      let killed: Promise<void> | undefined;
      const sessions = await Promise.all(Array.from({ length: 4 }, () => connect(standbyA.url)));
      await Promise.all(
        sessions.map(async (session, s) => {
          for (let i = 0; i < 50; i++) {
            const id = 10_000 + s * 1_000 + i;
            try {
              await session.query('INSERT INTO items (id, session) VALUES ($1, $2)', [id, s]);
            } catch {
              return; // the primary is gone
            }
            returned.push(id);
            if (returned.length === 100) killed = kill(standbyA);
          }
        }),
      );
      await killed;
      expect(killed, 'the primary was killed mid-load').toBeDefined();
      expect(returned.length).toBeGreaterThanOrEqual(100);
      expect(returned.length).toBeLessThan(200);

      await standbyB.promote();
      const after = await ids(standbyB.url);
      const missing = returned.filter((id) => !after.has(id));
      expect(missing).toEqual([]);
    });
  });
});
