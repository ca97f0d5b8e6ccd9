// `npm run token -- <sub> <role> [expiry]`: prints a bearer token signed with AUTH_JWT_SECRET.
import { loadConfigOrExit } from '../lib/config';
import { signToken, type TokenRole } from '../lib/tokens';

const [sub, role = 'player', expiry = '12h'] = process.argv.slice(2);
if (!sub || !['player', 'service', 'staff'].includes(role)) {
  process.stderr.write('usage: npm run token -- <sub> <player|service|staff> [expiry, e.g. 12h]\n');
  process.exit(2);
}
const config = loadConfigOrExit();
process.stdout.write(`${await signToken({ sub, role: role as TokenRole }, config.AUTH_JWT_SECRET, expiry, { issuer: config.AUTH_JWT_ISSUER, audience: config.AUTH_JWT_AUDIENCE })}\n`);
