// `npm run migrate`: applies pending migrations to DATABASE_URL (docker-compose runs this once before api/worker).
import { databaseUrl, loadConfigOrExit } from '../lib/config';
import { migrateDatabase } from '../lib/migrate';

const config = loadConfigOrExit();
if (!config.DATABASE_URL) {
  process.stderr.write('DATABASE_URL must be set for `npm run migrate` (the launcher migrates the embedded database itself).\n');
  process.exit(2);
}
const { applied, sealed } = await migrateDatabase(databaseUrl(config), config.DESTINATION_KEYS, (msg) => process.stderr.write(`${msg}\n`));
process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'migrations up to date\n');
if (sealed > 0) process.stdout.write(`sealed ${sealed} payout destination(s) stored before encryption at rest\n`);
