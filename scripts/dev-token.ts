// `npm run token -- <sub> <role> [expiry]`: prints a bearer token signed with AUTH_JWT_SECRET.
import { decodeJwt } from 'jose';
import { loadConfigOrExit } from '../lib/config';
import { signToken, type TokenRole } from '../lib/tokens';

const [sub, role = 'player', expiry = '12h'] = process.argv.slice(2);
if (!sub || !['player', 'service', 'staff'].includes(role)) {
  process.stderr.write('usage: npm run token -- <sub> <player|service|staff> [expiry, e.g. 12h]\n');
  process.exit(2);
}
const config = loadConfigOrExit();
const token = await signToken({ sub, role: role as TokenRole }, config.AUTH_JWT_SECRET, expiry, { issuer: config.AUTH_JWT_ISSUER, audience: config.AUTH_JWT_AUDIENCE });
const { exp, iat } = decodeJwt(token);
if (exp! - iat! > config.AUTH_MAX_TOKEN_LIFETIME_SECONDS) {
  process.stderr.write(`expiry ${expiry} is longer than AUTH_MAX_TOKEN_LIFETIME_SECONDS (${config.AUTH_MAX_TOKEN_LIFETIME_SECONDS}s): the API would refuse the token\n`);
  process.exit(2);
}
process.stdout.write(`${token}\n`);
