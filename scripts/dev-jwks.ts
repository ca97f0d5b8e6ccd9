// A local stand-in for an identity provider's signing keys, to try AUTH_JWKS_URL without one:
//   npm run jwks -- new <dir> [RS256|PS256|ES256|ES384|EdDSA]   a key pair: <dir>/<kid>.private.jwk.json, and <dir>/jwks.json
//   npm run jwks -- serve <dir> [port, default 4100]            serves the public keys at http://127.0.0.1:<port>/jwks.json
// Then AUTH_JWKS_URL=http://127.0.0.1:4100/jwks.json for the API, and `npm run token -- <sub> <role> --key <dir>/<kid>.private.jwk.json`.
// Rotation: `new` adds a key, deleting a *.private.jwk.json file removes one; `serve` reads the folder on every request.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

const [command, dir, arg] = process.argv.slice(2);
const PRIVATE_SUFFIX = '.private.jwk.json';

/** The public halves of the folder's private keys, as a JWKS. */
function publicKeys(folder: string): { keys: JWK[] } {
  const keys = readdirSync(folder)
    .filter((name) => name.endsWith(PRIVATE_SUFFIX))
    .sort()
    .map((name) => {
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = JSON.parse(readFileSync(path.join(folder, name), 'utf8')) as JWK;
      return { ...publicJwk, use: 'sig' };
    });
  return { keys };
}

if (command === 'new' && dir) {
  const alg = arg ?? 'RS256';
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${kid}${PRIVATE_SUFFIX}`);
  writeFileSync(file, `${JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg }, null, 2)}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, 'jwks.json'), `${JSON.stringify(publicKeys(dir), null, 2)}\n`);
  process.stdout.write(`${file}\n`);
} else if (command === 'serve' && dir) {
  const port = Number(arg ?? 4100);
  createServer((req, res) => {
    if (req.url !== '/jwks.json') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify(publicKeys(dir)));
  }).listen(port, '127.0.0.1', () => process.stdout.write(`JWKS at http://127.0.0.1:${port}/jwks.json\n`));
} else {
  process.stderr.write('usage: npm run jwks -- new <dir> [RS256|PS256|ES256|ES384|EdDSA] | serve <dir> [port]\n');
  process.exit(2);
}
