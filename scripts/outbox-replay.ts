/**
 * `npm run outbox:replay -- --event <event_id> [--endpoint <id>] [--reason <text>]`, or `-- --all [--endpoint <id>]`:
 * replays open dead letters: their deliveries are reopened (a running publisher sends them again, then the
 * accounts' later events they held follow). `-- --skip --event <event_id> --endpoint <id> --reason <text>`
 * skips one instead (given up for good; the account's later events go on). `--endpoint` is an endpoint id
 * (GET /v1/ops/outbox/endpoints), or its URL. Each action is written to the staff audit log as
 * `cli:<os user>`. Prints one JSON line per dead letter acted on. Exits 0 when something was done, 1 when
 * nothing matched, 2 on bad arguments or a database error. Staff without database access use
 * POST /v1/ops/outbox/dead-letters/{endpoint}/{eventSeq}/replay (or /skip).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { appendAudit } from '../apps/api/ops/ops.stores';
import { listDeadLetters, replayDeadLetters, skipDeadLetter, type DeadLetter } from '../apps/outbox-publisher/store';
import { databaseUrl, loadConfigOrExit } from '../lib/config';
import { createPool, inTransaction } from '../lib/db';

const USAGE =
  'usage: outbox-replay (--event <event_id> [--endpoint <id>] | --all [--endpoint <id>]) [--reason <text>]\n' +
  '       outbox-replay --skip --event <event_id> --endpoint <id> --reason <text>';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let args: { event?: string; endpoint?: string; all?: boolean; skip?: boolean; reason?: string };
try {
  ({ values: args } = parseArgs({
    options: { event: { type: 'string' }, endpoint: { type: 'string' }, all: { type: 'boolean' }, skip: { type: 'boolean' }, reason: { type: 'string' } },
    strict: true,
  }));
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
  process.exit(2);
}
const badEvent = args.event !== undefined && !UUID.test(args.event);
const badReplay = !args.skip && Boolean(args.event) === Boolean(args.all);
const badSkip = args.skip && (!args.event || !args.endpoint || args.all || (args.reason ?? '').trim().length < 3);
if (badEvent || badReplay || badSkip) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

const config = loadConfigOrExit();
const pool = createPool(databaseUrl(config), 2);
const actor = `cli:${os.userInfo().username}`;
const reason = args.reason?.trim() || 'outbox-replay command';
try {
  const done = await inTransaction(pool, async (db) => {
    let acted: DeadLetter[];
    if (args.skip) {
      const [target] = await listDeadLetters(db, { endpoint: args.endpoint, eventId: args.event });
      const skipped = target ? await skipDeadLetter(db, target.endpoint, target.eventSeq, { actor, reason }) : undefined;
      acted = skipped ? [skipped] : [];
    } else {
      acted = await replayDeadLetters(db, { eventId: args.event, endpoint: args.endpoint }, { actor, reason });
    }
    const action = args.skip ? 'skip' : 'replay';
    for (const d of acted) {
      await appendAudit(db, {
        actor,
        action: `outbox:${action}`,
        target: `outbox-dead-letter:${d.endpoint}:${d.eventSeq}`,
        reason,
        request: { endpoint: d.endpoint, event_seq: d.eventSeq, via: 'scripts/outbox-replay.ts' },
        outcome: 'applied',
        detail: `${action === 'skip' ? 'skipped' : 'replayed'} event ${d.eventId} (${d.eventType}) of account ${d.accountId} after ${d.attempts} attempt(s)`,
      });
    }
    return acted;
  });
  for (const d of done) process.stdout.write(`${JSON.stringify({ ...d, reopened: !args.skip })}\n`);
  const what = args.skip ? 'skipped' : 'moved back to pending';
  process.stderr.write(
    done.length > 0
      ? `outbox: ${done.length} dead letter(s) ${what}\n`
      : `outbox: no open dead letter matched${args.event ? ` event ${args.event}` : ''}${args.endpoint ? ` at ${args.endpoint}` : ''}\n`,
  );
  process.exitCode = done.length > 0 ? 0 : 1;
} catch (err) {
  process.stderr.write(`outbox: cannot ${args.skip ? 'skip' : 'replay'}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
} finally {
  await pool.end();
}
