import { spawnSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPayoutClient } from '../../clients/typescript/src';
import { claimAt, parseRoleMap, roleFromClaim, type ClaimRules } from '../../lib/auth-claims';
import { ConfigError, DEV_JWT_SECRET, loadConfig, repoRoot } from '../../lib/config';
import { signToken, signTokenWithJwk } from '../../lib/tokens';
import { freePort, sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { startTestApi, type TestApi } from './support';

/** A stand-in for the identity provider's JWKS endpoint: serves whichever public keys the test sets, counting fetches. */
interface JwksServer {
  url: string;
  origin: string;
  serve(keys: TestKey[]): void;
  readonly fetches: number;
  close(): Promise<void>;
}

async function startJwksServer(): Promise<JwksServer> {
  let keys: JWK[] = [];
  let fetches = 0;
  const server: Server = createServer((req, res) => {
    if (req.url !== '/protocol/openid-connect/certs') return void res.writeHead(404).end();
    fetches += 1;
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: `${origin}/protocol/openid-connect/certs`,
    origin,
    serve: (next) => (keys = next.map((k) => k.publicJwk)),
    get fetches() {
      return fetches;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface TestKey {
  kid: string;
  alg: string;
  privateJwk: JWK;
  publicJwk: JWK;
  spki: string;
}

/** A signing key as an IdP publishes it: the private half signs, the public half (kid, alg, use) goes in the JWKS. */
async function newKey(alg: string, kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return {
    kid,
    alg,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    spki: await exportSPKI(publicKey),
  };
}

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
/** A JWT assembled by hand, HMAC-signed with whatever bytes an attacker has (e.g. the public key). */
function hmacJwt(header: Record<string, unknown>, payload: JWTPayload, secret: string | Buffer): string {
  const signingInput = `${b64url(header)}.${b64url(payload)}`;
  return `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
}
const now = () => Math.floor(Date.now() / 1000);

const AUDIENCE = 'payouts-api';
/** Keycloak-shaped: realm roles in realm_access.roles, mapped to the platform's roles. */
const KEYCLOAK_CLAIMS = { AUTH_ROLE_CLAIM: 'realm_access.roles', AUTH_ROLE_MAP: 'payments-admin:staff,payments-backend:service,player:player' };
const keycloakRules: ClaimRules = { subjectClaim: 'sub', roleClaim: 'realm_access.roles', roleMap: (parseRoleMap(KEYCLOAK_CLAIMS.AUTH_ROLE_MAP) as { map: ClaimRules['roleMap'] }).map };

describe('login through the identity provider (JWKS)', () => {
  let idp: JwksServer;
  let issuer: string;
  let api: TestApi;
  let rsa: TestKey;
  let ec: TestKey;
  let ps: TestKey;
  let ed: TestKey;
  const me = (target: TestApi, token: string) => target.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } });
  const mint = (key: TestKey, claims: { sub: string; role: 'player' | 'service' | 'staff' }, opts: { issuer?: string; audience?: string; expiresIn?: string } = {}) =>
    signTokenWithJwk(claims, key.privateJwk, opts.expiresIn ?? '10m', { issuer: opts.issuer ?? issuer, audience: opts.audience ?? AUDIENCE, claims: keycloakRules });

  beforeAll(async () => {
    idp = await startJwksServer();
    issuer = `${idp.origin}/realms/payouts`;
    [rsa, ec, ps, ed] = await Promise.all([newKey('RS256'), newKey('ES256'), newKey('PS256'), newKey('EdDSA')]);
    idp.serve([rsa, ec, ps, ed]);
    api = await startTestApi({
      AUTH_JWKS_URL: idp.url,
      AUTH_JWT_ALGORITHMS: 'HS256,RS256,ES256,PS256,EdDSA',
      AUTH_JWT_ISSUER: issuer,
      AUTH_JWT_AUDIENCE: AUDIENCE,
      AUTH_JWKS_COOLDOWN_MS: '100',
      ...KEYCLOAK_CLAIMS,
    });
  });
  afterAll(async () => {
    await api?.close();
    await idp?.close();
  });

  it.each([
    ['RS256', () => rsa],
    ['ES256', () => ec],
    ['PS256', () => ps],
    ['EdDSA', () => ed],
  ])('accepts a %s token from the JWKS, with the mapped role and the subject', async (_alg, key) => {
    const res = await me(api, await mint(key(), { sub: 'finance-ann', role: 'staff' }));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ sub: 'finance-ann', role: 'staff' });
    expect((await me(api, await mint(key(), { sub: 'backend', role: 'service' }))).json()).toEqual({ sub: 'backend', role: 'service' });
  });

  it('takes the first AUTH_ROLE_MAP entry the token carries, whatever its order; other IdP roles are ignored, none recognised is 401', async () => {
    const withRoles = (roles: unknown) =>
      new SignJWT({ realm_access: { roles } }).setProtectedHeader({ alg: 'ES256', kid: ec.kid }).setSubject('u-1').setIssuer(issuer).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('5m').sign(ec.privateJwk);
    expect((await me(api, await withRoles(['offline_access', 'player', 'payments-admin']))).json()).toEqual({ sub: 'u-1', role: 'staff' });
    expect((await me(api, await withRoles(['player', 'uma_authorization']))).json()).toEqual({ sub: 'u-1', role: 'player' });
    // With a map, only mapped values count: an IdP role that happens to be called "service" grants nothing.
    for (const roles of [['offline_access', 'service'], 'payments-admin-ish', [], 42]) {
      const res = await me(api, await withRoles(roles));
      expect(res.statusCode, JSON.stringify(roles)).toBe(401);
      expect(res.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringMatching(/realm_access\.roles/) });
    }
  });

  it('refuses a token signed by a key the JWKS does not list with 401 problem+json UNAUTHENTICATED, and one whose kid is borrowed', async () => {
    const stranger = await newKey('RS256', 'rsa-not-published');
    const res = await me(api, await mint(stranger, { sub: 'mallory', role: 'staff' }));
    expect(res.statusCode).toBe(401);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 401, code: 'UNAUTHENTICATED', detail: expect.stringMatching(/key/) });
    // A published kid on a token the attacker signed with its own key.
    const borrowed = await signTokenWithJwk({ sub: 'mallory', role: 'staff' }, { ...stranger.privateJwk, kid: rsa.kid }, '5m', { issuer, audience: AUDIENCE, claims: keycloakRules });
    expect((await me(api, borrowed)).json()).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
  });

  it('refuses HS256 tokens forged with the public key as the HMAC secret (algorithm confusion)', async () => {
    const payload = { sub: 'mallory', realm_access: { roles: ['payments-admin'] }, iss: issuer, aud: AUDIENCE, iat: now(), exp: now() + 300 };
    const secrets = [JSON.stringify(rsa.publicJwk), rsa.spki, JSON.stringify(ec.publicJwk), ec.spki, Buffer.from(rsa.publicJwk.n!, 'base64url')];
    for (const secret of secrets) {
      for (const header of [{ alg: 'HS256', typ: 'JWT', kid: rsa.kid }, { alg: 'HS256', typ: 'JWT' }]) {
        const res = await me(api, hmacJwt(header, payload, secret));
        expect(res.statusCode).toBe(401);
        expect(res.json().code).toBe('UNAUTHENTICATED');
      }
    }
    // The HS256 path itself still works, with its own secret only.
    expect((await me(api, hmacJwt({ alg: 'HS256', typ: 'JWT' }, payload, DEV_JWT_SECRET))).json()).toEqual({ sub: 'mallory', role: 'staff' });
  });

  it('refuses alg none, and algorithms that are not configured', async () => {
    const payload = { sub: 'mallory', realm_access: { roles: ['payments-admin'] }, iss: issuer, aud: AUDIENCE, iat: now(), exp: now() + 300 };
    for (const alg of ['none', 'None', 'NONE']) {
      const res = await me(api, `${b64url({ alg, typ: 'JWT', kid: rsa.kid })}.${b64url(payload)}.`);
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringMatching(/not accepted/) });
    }
    const es384 = await newKey('ES384');
    idp.serve([rsa, ec, ps, ed, es384]);
    try {
      const res = await me(api, await mint(es384, { sub: 'x', role: 'staff' }));
      expect(res.statusCode).toBe(401);
      expect(res.json().detail).toMatch(/ES384.*not accepted/);
    } finally {
      idp.serve([rsa, ec, ps, ed]);
    }
  });

  it('checks iss and aud on both paths, and still bounds the lifetime and requires iat', async () => {
    const claims = { sub: 'p-1', role: 'player' as const };
    expect((await me(api, await mint(rsa, claims, { issuer: 'https://evil.example/realms/payouts' }))).statusCode).toBe(401);
    expect((await me(api, await mint(ec, claims, { audience: 'another-api' }))).statusCode).toBe(401);
    const noAud = await new SignJWT({ realm_access: { roles: ['player'] } }).setProtectedHeader({ alg: 'RS256', kid: rsa.kid }).setSubject('p-1').setIssuer(issuer).setIssuedAt().setExpirationTime('5m').sign(rsa.privateJwk);
    expect((await me(api, noAud)).json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringMatching(/aud/) });
    // The development secret's tokens meet the same iss and aud.
    expect((await me(api, await signToken(claims, DEV_JWT_SECRET, '5m', { claims: keycloakRules }))).statusCode).toBe(401);
    expect((await me(api, await signToken(claims, DEV_JWT_SECRET, '5m', { issuer, audience: 'another-api', claims: keycloakRules }))).statusCode).toBe(401);
    expect((await me(api, await signToken(claims, DEV_JWT_SECRET, '5m', { issuer, audience: AUDIENCE, claims: keycloakRules }))).json()).toEqual({ sub: 'p-1', role: 'player' });

    const tooLong = await me(api, await mint(ec, claims, { expiresIn: '30d' }));
    expect(tooLong.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringMatching(/lifetime/) });
    const noIat = await new SignJWT({ realm_access: { roles: ['player'] } }).setProtectedHeader({ alg: 'ES256', kid: ec.kid }).setSubject('p-1').setIssuer(issuer).setAudience(AUDIENCE).setExpirationTime('5m').sign(ec.privateJwk);
    expect((await me(api, noIat)).json().detail).toMatch(/iat/);
    const expired = await new SignJWT({ realm_access: { roles: ['player'] } }).setProtectedHeader({ alg: 'ES256', kid: ec.kid }).setSubject('p-1').setIssuer(issuer).setAudience(AUDIENCE).setIssuedAt(now() - 600).setExpirationTime(now() - 300).sign(ec.privateJwk);
    expect((await me(api, expired)).json().detail).toMatch(/expired/);
  });

  it('a player token from the IdP acts on its own account only (through the generated client)', async () => {
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    const baseUrl = `http://127.0.0.1:${(api.app.getHttpServer().address() as AddressInfo).port}`;
    const own = uniqueId('player');
    const other = uniqueId('player');
    const service = createPayoutClient({ baseUrl, token: await mint(rsa, { sub: 'operator-backend', role: 'service' }) });
    for (const account_id of [own, other]) expect((await service.POST('/v1/accounts', { body: { account_id, currency: 'EUR' } })).response.status).toBe(201);

    const player = createPayoutClient({ baseUrl, token: await mint(ec, { sub: own, role: 'player' }) });
    expect((await player.GET('/v1/me')).data).toEqual({ sub: own, role: 'player' });
    expect((await player.GET('/v1/accounts/{accountId}/balance', { params: { path: { accountId: own } } })).data).toMatchObject({ account_id: own, available: 0 });
    const peek = await player.GET('/v1/accounts/{accountId}/balance', { params: { path: { accountId: other } } });
    expect(peek.response.status).toBe(403);
    expect(peek.error?.code).toBe('FORBIDDEN');
  });

  it('npm run jwks and npm run token --key mint a token the API accepts, as a new user would', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'jwks-'));
    try {
      const run = (script: string, args: string[], env: Record<string, string> = {}) => {
        const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_ENV: 'development', ...env } });
        expect(result.status, result.stderr).toBe(0);
        return result.stdout.trim();
      };
      const keyFile = run('scripts/dev-jwks.ts', ['new', dir, 'ES256']);
      expect(readdirSync(dir).sort()).toEqual([path.basename(keyFile), 'jwks.json'].sort());
      const published = JSON.parse(readFileSync(path.join(dir, 'jwks.json'), 'utf8')) as { keys: JWK[] };
      expect(published.keys).toHaveLength(1);
      expect(published.keys[0]).not.toHaveProperty('d');
      // The IdP now also publishes the new key; the API fetches it for the unknown kid (past the 100 ms cooldown).
      idp.serve([rsa, ec, ps, ed, { publicJwk: published.keys[0]! } as TestKey]);
      await sleep(150);
      const token = run('scripts/dev-token.ts', ['alice', 'staff', '15m', '--key', keyFile], { AUTH_JWT_ISSUER: issuer, AUTH_JWT_AUDIENCE: AUDIENCE, ...KEYCLOAK_CLAIMS });
      expect((await me(api, token)).json()).toEqual({ sub: 'alice', role: 'staff' });
    } finally {
      idp.serve([rsa, ec, ps, ed]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('custom claim names (Auth0-shaped: namespaced claims; only RS256 accepted)', () => {
  let idp: JwksServer;
  let api: TestApi;
  let rsa: TestKey;
  let ec: TestKey;
  const ISSUER = 'https://tenant.example.auth0.com/';
  const NS = 'https://payouts.example.com';
  const token = (key: TestKey, claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' }).setSubject('auth0|65f0c1a2').setIssuer(ISSUER).setAudience([AUDIENCE, `${ISSUER}userinfo`]).setIssuedAt().setExpirationTime('5m').sign(key.privateJwk);

  beforeAll(async () => {
    idp = await startJwksServer();
    [rsa, ec] = await Promise.all([newKey('RS256'), newKey('ES256')]);
    idp.serve([rsa, ec]);
    api = await startTestApi({
      AUTH_JWKS_URL: idp.url,
      AUTH_JWT_ALGORITHMS: 'RS256',
      AUTH_JWT_ISSUER: ISSUER,
      AUTH_JWT_AUDIENCE: AUDIENCE,
      AUTH_SUBJECT_CLAIM: `${NS}/account_id`,
      AUTH_ROLE_CLAIM: `${NS}/roles`,
      AUTH_ROLE_MAP: 'finance:staff,backend:service,customer:player',
    });
  });
  afterAll(async () => {
    await api?.close();
    await idp?.close();
  });

  it('reads the subject and the role from the configured claims, and scopes the player by that subject', async () => {
    const own = uniqueId('player');
    const service = `Bearer ${await token(rsa, { [`${NS}/account_id`]: 'm2m-backend', [`${NS}/roles`]: ['backend'] })}`;
    expect((await api.app.inject({ method: 'POST', url: '/v1/accounts', headers: { authorization: service, 'content-type': 'application/json' }, payload: { account_id: own, currency: 'EUR' } })).statusCode).toBe(201);

    const player = await token(rsa, { [`${NS}/account_id`]: own, [`${NS}/roles`]: ['customer'] });
    const res = await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${player}` } });
    expect(res.json()).toEqual({ sub: own, role: 'player' });
    const balance = (accountId: string) => api.app.inject({ method: 'GET', url: `/v1/accounts/${accountId}/balance`, headers: { authorization: `Bearer ${player}` } });
    expect((await balance(own)).statusCode).toBe(200);
    // The player is the account its configured claim names (not the IdP's own `sub`), and no other.
    const other = await balance(uniqueId('player'));
    expect(other.statusCode).toBe(403);
    expect(other.json().code).toBe('FORBIDDEN');
  });

  it('refuses a token without the configured subject claim, and any algorithm but RS256 (the dev secret included)', async () => {
    const noSubject = await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await token(rsa, { [`${NS}/roles`]: ['finance'] })}` } });
    expect(noSubject.json()).toMatchObject({ code: 'UNAUTHENTICATED', detail: expect.stringContaining(`${NS}/account_id`) });
    const es = await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await token(ec, { [`${NS}/account_id`]: 'a', [`${NS}/roles`]: ['finance'] })}` } });
    expect(es.statusCode).toBe(401);
    const hs = await signToken({ sub: 'a', role: 'staff' }, DEV_JWT_SECRET, '5m', { issuer: ISSUER, audience: AUDIENCE });
    expect((await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${hs}` } })).statusCode).toBe(401);
  });
});

describe('key rotation and the JWKS cache', () => {
  const servers: JwksServer[] = [];
  const apis: TestApi[] = [];
  afterAll(async () => {
    for (const api of apis) await api.close();
    for (const server of servers) await server.close();
  });
  async function setUp(settings: Record<string, string>) {
    const idp = await startJwksServer();
    servers.push(idp);
    const api = await startTestApi({ AUTH_JWKS_URL: idp.url, ...settings });
    apis.push(api);
    const status = async (key: TestKey) =>
      (await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await signTokenWithJwk({ sub: 'svc', role: 'service' }, key.privateJwk, '5m')}` } })).statusCode;
    return { idp, api, status };
  }

  it('a rotated-in key (new kid) is accepted without restarting the API; the old kid is refused once the JWKS no longer lists it', async () => {
    const { idp, status } = await setUp({ AUTH_JWKS_COOLDOWN_MS: '100' });
    const [oldKey, newKey_] = await Promise.all([newKey('RS256', 'rsa-2024'), newKey('RS256', 'rsa-2025')]);
    idp.serve([oldKey]);
    expect(await status(oldKey)).toBe(200);
    expect(idp.fetches).toBe(1);

    idp.serve([newKey_]);
    await sleep(150); // past the cooldown since the last fetch
    expect(await status(newKey_)).toBe(200);
    expect(idp.fetches).toBe(2);
    expect(await status(oldKey)).toBe(401);
  });

  it('a key the IdP removes is refused at the latest AUTH_JWKS_CACHE_MAX_AGE_MS later, even with no new kid to prompt a fetch', async () => {
    const { idp, status } = await setUp({ AUTH_JWKS_COOLDOWN_MS: '100', AUTH_JWKS_CACHE_MAX_AGE_MS: '1000' });
    const [a, b] = await Promise.all([newKey('ES256'), newKey('ES256')]);
    idp.serve([a, b]);
    expect(await status(a)).toBe(200);
    idp.serve([b]);
    expect(await status(a)).toBe(200); // still cached: the revocation window is the cache's max age
    await sleep(1_100);
    expect(await status(a)).toBe(401);
    expect(await status(b)).toBe(200);
  });

  it('tokens naming unknown kids cost the IdP no fetch within the cooldown', async () => {
    const { idp, status } = await setUp({ AUTH_JWKS_COOLDOWN_MS: '60000' });
    const known = await newKey('ES256');
    idp.serve([known]);
    expect(await status(known)).toBe(200);
    for (let i = 0; i < 10; i += 1) expect(await status(await newKey('ES256', `forged-${i}`))).toBe(401);
    expect(idp.fetches).toBe(1);
  });

  it('an unreachable JWKS is 503 SERVICE_UNAVAILABLE with Retry-After (not a bad token); HS256 development tokens still work', async () => {
    const api = await startTestApi({ AUTH_JWKS_URL: `http://127.0.0.1:${await freePort()}/certs`, AUTH_JWKS_TIMEOUT_MS: '1000' });
    apis.push(api);
    const key = await newKey('RS256');
    const res = await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await signTokenWithJwk({ sub: 's', role: 'service' }, key.privateJwk, '5m')}` } });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(res.headers['retry-after']).toBeDefined();
    expect((await api.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${await api.token('dev', 'staff')}` } })).json()).toEqual({ sub: 'dev', role: 'staff' });
  });
});

describe('claim paths and role precedence', () => {
  it('finds nested claims by dots, namespaced claims as they are, and client ids with dots', () => {
    const payload = { realm_access: { roles: ['a'] }, 'https://example.com/role': 'staff', resource_access: { 'payouts.api': { roles: ['b'] } }, ext: { account: { id: 'acc-1' } } };
    expect(claimAt(payload, 'realm_access.roles')).toEqual(['a']);
    expect(claimAt(payload, 'https://example.com/role')).toBe('staff');
    expect(claimAt(payload, 'resource_access.payouts.api.roles')).toEqual(['b']);
    expect(claimAt(payload, 'ext.account.id')).toBe('acc-1');
    expect(claimAt(payload, 'ext.missing')).toBeUndefined();
    expect(claimAt(payload, 'realm_access.roles.0')).toBeUndefined();
  });

  it('without a map takes player, then service, then staff; a string claim is space-separated values (scope)', () => {
    expect(roleFromClaim(['staff', 'player'], [])).toBe('player');
    expect(roleFromClaim('openid staff profile', [])).toBe('staff');
    expect(roleFromClaim(['admin'], [])).toBeUndefined();
    const map = (parseRoleMap('payouts:write:service,finance:staff') as { map: ClaimRules['roleMap'] }).map;
    expect(roleFromClaim('openid payouts:write', map)).toBe('service');
    expect(roleFromClaim(['finance', 'payouts:write'], map)).toBe('service');
    expect(roleFromClaim(['staff'], map)).toBeUndefined();
  });
});

describe('auth settings', () => {
  const problemsOf = (env: Record<string, string>): { setting: string; message: string }[] => {
    try {
      loadConfig(env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };
  const settingsIn = (env: Record<string, string>) => problemsOf(env).map((p) => p.setting);

  it('in production the JWKS URL must be https, unless it is loopback', () => {
    const prod = { NODE_ENV: 'production', AUTH_JWT_ALGORITHMS: 'RS256' };
    expect(problemsOf({ ...prod, AUTH_JWKS_URL: 'http://idp.internal/certs' })).toContainEqual({ setting: 'AUTH_JWKS_URL', message: expect.stringMatching(/https/) });
    for (const url of ['https://idp.example.com/realms/p/protocol/openid-connect/certs', 'http://127.0.0.1:8080/certs', 'http://localhost:8080/certs', 'http://[::1]:8080/certs']) {
      expect(settingsIn({ ...prod, AUTH_JWKS_URL: url }), url).not.toContain('AUTH_JWKS_URL');
    }
    expect(settingsIn({ NODE_ENV: 'development', AUTH_JWKS_URL: 'http://idp.internal/certs' })).not.toContain('AUTH_JWKS_URL');
  });

  it('the dev secret is refused in production only while HS256 is accepted', () => {
    expect(settingsIn({ NODE_ENV: 'production' })).toContain('AUTH_JWT_SECRET');
    expect(settingsIn({ NODE_ENV: 'production', AUTH_JWT_ALGORITHMS: 'RS256,ES256', AUTH_JWKS_URL: 'https://idp.example.com/certs' })).not.toContain('AUTH_JWT_SECRET');
  });

  it('refuses none, algorithms without a verifier, a JWKS without an algorithm, and a bad role map', () => {
    expect(settingsIn({ AUTH_JWT_ALGORITHMS: 'none' })).toContain('AUTH_JWT_ALGORITHMS');
    expect(settingsIn({ AUTH_JWT_ALGORITHMS: 'HS256,none' })).toContain('AUTH_JWT_ALGORITHMS');
    expect(problemsOf({ AUTH_JWT_ALGORITHMS: 'RS256' })).toContainEqual({ setting: 'AUTH_JWT_ALGORITHMS', message: expect.stringMatching(/AUTH_JWKS_URL/) });
    expect(settingsIn({ AUTH_JWT_ALGORITHMS: 'HS256', AUTH_JWKS_URL: 'https://idp.example.com/certs' })).toContain('AUTH_JWT_ALGORITHMS');
    expect(settingsIn({ AUTH_ROLE_MAP: 'finance:admin' })).toContain('AUTH_ROLE_MAP');
    expect(settingsIn({ AUTH_ROLE_MAP: 'finance:staff,finance:player' })).toContain('AUTH_ROLE_MAP');
    expect(settingsIn({ AUTH_ROLE_MAP: 'finance' })).toContain('AUTH_ROLE_MAP');
    expect(settingsIn({ AUTH_ROLE_MAP: 'payments-admin:staff, finance:staff' })).toEqual([]);
  });
});
