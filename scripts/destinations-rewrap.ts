// `npm run destinations:rewrap`: after a new current key was put first in DESTINATION_KEYS, re-wraps every
// payout destination's data key under it (ciphertexts untouched) and seals rows still in plain text. When it
// reports no row under an older key, that key can be removed from DESTINATION_KEYS.
import { databaseUrl, loadConfigOrExit } from '../lib/config';
import { createPool } from '../lib/db';
import { createDestinationVault, rewrapDestinations } from '../lib/destination-vault';

const config = loadConfigOrExit();
const ring = config.DESTINATION_KEYS;
const pool = createPool(databaseUrl(config), 2);
try {
  const report = await rewrapDestinations(pool, createDestinationVault(ring), ring);
  const { rows } = await pool.query<{ key_id: string; n: number }>('SELECT key_id, count(*)::int AS n FROM payout_destinations GROUP BY key_id ORDER BY key_id');
  process.stdout.write(`${JSON.stringify({ currentKeyId: ring.currentId, rewrapped: report.rewrapped, sealed: report.sealed, rowsByKey: Object.fromEntries(rows.map((r) => [r.key_id, r.n])) })}\n`);
  const removable = ring.ids.filter((id) => id !== ring.currentId && !rows.some((r) => r.key_id === id));
  if (removable.length > 0) process.stdout.write(`no row uses ${removable.join(', ')} any more: it can be removed from DESTINATION_KEYS\n`);
  if (report.unreadable.length > 0) process.stderr.write(`${report.unreadable.length} destination(s) do not authenticate (tampered?), left as they are: ${report.unreadable.join(', ')}\n`);
  for (const [keyId, n] of Object.entries(report.unknownKeys)) process.stderr.write(`${n} destination(s) are sealed under key ${keyId}, which DESTINATION_KEYS does not hold: add it back, then run this again\n`);
  process.exitCode = report.unreadable.length > 0 || Object.keys(report.unknownKeys).length > 0 ? 1 : 0;
} finally {
  await pool.end();
}
