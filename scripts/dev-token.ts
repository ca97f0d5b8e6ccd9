// `npm run token -- <sub> <role> [expiry] [--key <private JWK file>]`: prints a bearer token. Without --key it is
// signed HS256 with AUTH_JWT_SECRET; with --key it is signed as an identity provider would (RS256, ES256, ...:
// the JWK's `alg`, else its key type's usual one; its `kid` in the header), for an API whose AUTH_JWKS_URL
// serves the public half (`npm run jwks`). Either way iss, aud and the subject and role claims follow
// AUTH_JWT_ISSUER, AUTH_JWT_AUDIENCE, AUTH_SUBJECT_CLAIM, AUTH_ROLE_CLAIM and AUTH_ROLE_MAP.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeJwt, type JWK } from 'jose';
import { PLATFORM_ROLES, SECRET_ALGORITHM } from '../lib/auth-claims';
import { loadConfigOrExit } from '../lib/config';
import { algorithmOf, signToken, signTokenWithJwk, type TokenRole } from '../lib/tokens';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { key: { type: 'string' } } });
const [sub, role = 'player', expiry = '12h'] = positionals;
const fail = (message: string): never => {
  process.stderr.write(`${message}\n`);
  process.exit(2);
};
if (!sub || !(PLATFORM_ROLES as readonly string[]).includes(role)) {
  fail('usage: npm run token -- <sub> <player|service|staff> [expiry, e.g. 12h] [--key private.jwk.json]');
}
const config = loadConfigOrExit();
const scope = {
  issuer: config.AUTH_JWT_ISSUER,
  audience: config.AUTH_JWT_AUDIENCE,
  claims: { subjectClaim: config.AUTH_SUBJECT_CLAIM, roleClaim: config.AUTH_ROLE_CLAIM, roleMap: config.AUTH_ROLE_MAP },
};
const claims = { sub: sub!, role: role as TokenRole };
let token: string;
try {
  if (values.key) {
    const jwk = JSON.parse(readFileSync(values.key, 'utf8')) as JWK;
    const alg = algorithmOf(jwk);
    if (!(config.AUTH_JWT_ALGORITHMS as string[]).includes(alg) || alg === SECRET_ALGORITHM) fail(`the key signs ${alg}, which AUTH_JWT_ALGORITHMS (${config.AUTH_JWT_ALGORITHMS.join(',')}) does not accept through AUTH_JWKS_URL`);
    if (!jwk.kid) process.stderr.write('warning: the key has no "kid"; an API whose JWKS lists several keys of its type will try each\n');
    token = await signTokenWithJwk(claims, jwk, expiry, scope);
  } else {
    if (!config.AUTH_JWT_ALGORITHMS.includes(SECRET_ALGORITHM)) fail('AUTH_JWT_ALGORITHMS leaves out HS256: the API would refuse a secret-signed token; pass --key <private JWK file>');
    token = await signToken(claims, config.AUTH_JWT_SECRET, expiry, scope);
  }
} catch (err) {
  token = fail((err as Error).message);
}
const { exp, iat } = decodeJwt(token);
if (exp! - iat! > config.AUTH_MAX_TOKEN_LIFETIME_SECONDS) {
  fail(`expiry ${expiry} is longer than AUTH_MAX_TOKEN_LIFETIME_SECONDS (${config.AUTH_MAX_TOKEN_LIFETIME_SECONDS}s): the API would refuse the token`);
}
process.stdout.write(`${token}\n`);
