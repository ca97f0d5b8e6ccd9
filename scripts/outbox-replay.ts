/**
 * `npm run outbox:replay -- --event <event_id> [--endpoint <url>]` or `-- --all [--endpoint <url>]`:
 * moves dead-lettered outbox deliveries back to pending (the dead letters keep their row, marked
 * replayed_at); a running publisher delivers them again. Prints one JSON line per replayed dead letter.
 * Exits 0 when something was replayed, 1 when nothing matched, 2 on bad arguments or a database error.
 */
import { parseArgs } from 'node:util';
import { replayDeadLetters } from '../apps/outbox-publisher/store';
import { databaseUrl, loadConfigOrExit } from '../lib/config';
import { createPool } from '../lib/db';

const USAGE = 'usage: outbox-replay (--event <event_id> [--endpoint <url>] | --all [--endpoint <url>])';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let args: { event?: string; endpoint?: string; all?: boolean };
try {
  ({ values: args } = parseArgs({ options: { event: { type: 'string' }, endpoint: { type: 'string' }, all: { type: 'boolean' } }, strict: true }));
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
  process.exit(2);
}
if (Boolean(args.event) === Boolean(args.all) || (args.event !== undefined && !UUID.test(args.event))) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

const config = loadConfigOrExit();
const pool = createPool(databaseUrl(config), 2);
try {
  const replayed = await replayDeadLetters(pool, { eventId: args.event, endpoint: args.endpoint });
  for (const r of replayed) process.stdout.write(`${JSON.stringify(r)}\n`);
  const configured = new Set(config.OUTBOX_ENDPOINTS.split(',').map((u) => u.trim()));
  const unserved = [...new Set(replayed.map((r) => r.endpoint))].filter((e) => !configured.has(e));
  if (unserved.length > 0) process.stderr.write(`outbox: ${unserved.length} endpoint(s) of replayed events are not in OUTBOX_ENDPOINTS here; a publisher serving them must run\n`);
  process.stderr.write(
    replayed.length > 0
      ? `outbox: ${replayed.length} dead letter(s) moved back to pending\n`
      : `outbox: no dead letter matched${args.event ? ` event ${args.event}` : ''}${args.endpoint ? ` at ${args.endpoint}` : ''}\n`,
  );
  process.exitCode = replayed.length > 0 ? 0 : 1;
} catch (err) {
  process.stderr.write(`outbox: cannot replay: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
} finally {
  await pool.end();
}
