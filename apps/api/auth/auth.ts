import { type CanActivate, type ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, type JWTPayload, jwtVerify, type RemoteJWKSet } from 'jose';
import { z } from 'zod';
import { claimAt, type ClaimRules, DEFAULT_CLAIM_RULES, type JwtAlgorithm, PLATFORM_ROLES, type PlatformRole, roleFromClaim, SECRET_ALGORITHM } from '../../../lib/auth-claims';
import type { Config } from '../../../lib/config';
import { ProblemError } from '../common/problem';

export const ROLES = PLATFORM_ROLES;
export type Role = PlatformRole;

/** Who is calling, from a verified token. */
export interface Principal {
  sub: string;
  role: Role;
}

const subjectSchema = z.string().min(1).max(255);

const PUBLIC_KEY = 'auth:public';
const ROLES_KEY = 'auth:roles';
/** The route needs no bearer token (health, metrics, docs, signed webhooks). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);
/** Only these roles may call the route (default: any authenticated role). */
export const Roles = (...roles: Role[]) => SetMetadata(ROLES_KEY, roles);

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** What a token must satisfy beyond its signature. */
export interface TokenRules {
  issuer?: string;
  audience?: string;
  /** Longest accepted `exp` − `iat`, in seconds (AUTH_MAX_TOKEN_LIFETIME_SECONDS). */
  maxLifetimeSeconds: number;
  /** AUTH_JWT_ALGORITHMS; unset: HS256 only. */
  algorithms?: readonly JwtAlgorithm[];
  /** The identity provider's key set (AUTH_JWKS_*), for every algorithm but HS256. */
  jwks?: { url: string; cooldownMs: number; cacheMaxAgeMs: number; timeoutMs: number };
  /** AUTH_SUBJECT_CLAIM, AUTH_ROLE_CLAIM, AUTH_ROLE_MAP; unset: `sub` and `role`. */
  claims?: ClaimRules;
}

/** The guard's rules from the settings. */
export function tokenRules(config: Config): TokenRules {
  return {
    issuer: config.AUTH_JWT_ISSUER,
    audience: config.AUTH_JWT_AUDIENCE,
    maxLifetimeSeconds: config.AUTH_MAX_TOKEN_LIFETIME_SECONDS,
    algorithms: config.AUTH_JWT_ALGORITHMS,
    ...(config.AUTH_JWKS_URL
      ? { jwks: { url: config.AUTH_JWKS_URL, cooldownMs: config.AUTH_JWKS_COOLDOWN_MS, cacheMaxAgeMs: config.AUTH_JWKS_CACHE_MAX_AGE_MS, timeoutMs: config.AUTH_JWKS_TIMEOUT_MS } }
      : {}),
    claims: { subjectClaim: config.AUTH_SUBJECT_CLAIM, roleClaim: config.AUTH_ROLE_CLAIM, roleMap: config.AUTH_ROLE_MAP },
  };
}

/** Clock skew forgiven between the token issuer and us, on exp, nbf and iat. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** The key set could not be fetched: the identity provider's trouble, not the caller's token (503, not 401). */
export class KeySetUnavailable extends Error {
  readonly problem = new ProblemError('SERVICE_UNAVAILABLE', "The identity provider's signing keys could not be fetched; try again shortly");
}

/**
 * Verifies bearer tokens. Two verifiers, each pinned to its own algorithms so no token can pass one with
 * the other's key material (algorithm confusion): HS256 with the shared secret (development, the
 * operator's own tools), and the asymmetric algorithms with the identity provider's JWKS. The token's
 * `alg` picks the verifier; an algorithm not configured, `none` included, is refused before any key is used.
 */
export class TokenVerifier {
  private readonly secret?: Uint8Array;
  private readonly keySet?: RemoteJWKSet;
  private readonly asymmetric: JwtAlgorithm[];
  private readonly claims: ClaimRules;

  constructor(
    secret: string,
    private readonly rules: TokenRules,
  ) {
    const algorithms = rules.algorithms ?? [SECRET_ALGORITHM];
    if (algorithms.includes(SECRET_ALGORITHM)) this.secret = new TextEncoder().encode(secret);
    this.asymmetric = algorithms.filter((alg) => alg !== SECRET_ALGORITHM);
    // jose's remote set caches the keys (cacheMaxAge), and fetches again for an unknown kid once the
    // cooldown since the last fetch has passed: a rotated-in key works at once, a forged kid costs one fetch at most per cooldown.
    if (rules.jwks && this.asymmetric.length > 0) {
      this.keySet = createRemoteJWKSet(new URL(rules.jwks.url), {
        cooldownDuration: rules.jwks.cooldownMs,
        cacheMaxAge: rules.jwks.cacheMaxAgeMs,
        timeoutDuration: rules.jwks.timeoutMs,
      });
    }
    this.claims = rules.claims ?? DEFAULT_CLAIM_RULES;
  }

  /** Throws a ProblemError (401), or KeySetUnavailable when the JWKS cannot be fetched. */
  async verify(header: string | undefined): Promise<Principal> {
    const match = /^Bearer ([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*)$/.exec(header ?? '');
    if (!match) throw new ProblemError('UNAUTHENTICATED', 'Missing or malformed Authorization: Bearer <JWT> header');
    const token = match[1]!;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new ProblemError('UNAUTHENTICATED', 'The token is not valid');
    }
    try {
      const payload = await this.verifySignatureAndTimes(token, alg);
      return this.principalOf(payload);
    } catch (err) {
      if (err instanceof ProblemError || err instanceof KeySetUnavailable) throw err;
      throw new ProblemError('UNAUTHENTICATED', refusalReason(err));
    }
  }

  private async verifySignatureAndTimes(token: string, alg: unknown): Promise<JWTPayload> {
    // exp is required: a leaked token without one would never expire. iat is required (maxTokenAge makes
    // jose insist on it, and refuse one in the future): without it a token's lifetime cannot be bounded.
    const options = {
      requiredClaims: ['exp'],
      maxTokenAge: this.rules.maxLifetimeSeconds,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      ...(this.rules.issuer ? { issuer: this.rules.issuer } : {}),
      ...(this.rules.audience ? { audience: this.rules.audience } : {}),
    };
    let payload: JWTPayload;
    if (alg === SECRET_ALGORITHM && this.secret) {
      ({ payload } = await jwtVerify(token, this.secret, { ...options, algorithms: [SECRET_ALGORITHM] }));
    } else if (typeof alg === 'string' && (this.asymmetric as string[]).includes(alg) && this.keySet) {
      const keySet = this.keySet;
      const key = async (...args: Parameters<RemoteJWKSet>) => {
        try {
          return await keySet(...args);
        } catch (err) {
          // No key for the kid (or several: jwtVerify tries each) is the token's fault; a failed fetch is not.
          if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys || err instanceof joseErrors.JOSENotSupported) throw err;
          throw new KeySetUnavailable('JWKS fetch failed', { cause: err });
        }
      };
      ({ payload } = await jwtVerify(token, key, { ...options, algorithms: this.asymmetric }));
    } else {
      throw new ProblemError('UNAUTHENTICATED', `Tokens signed with alg ${JSON.stringify(typeof alg === 'string' ? alg.slice(0, 32) : (alg ?? null))} are not accepted`);
    }
    // maxTokenAge bounds the age; this bounds what the issuer granted, so a 10-year token is refused at once.
    if (payload.exp! - payload.iat! > this.rules.maxLifetimeSeconds) {
      throw new ProblemError('UNAUTHENTICATED', `The token's lifetime (exp − iat) exceeds ${this.rules.maxLifetimeSeconds} seconds`);
    }
    return payload;
  }

  private principalOf(payload: JWTPayload): Principal {
    const sub = subjectSchema.safeParse(claimAt(payload, this.claims.subjectClaim));
    if (!sub.success) throw new ProblemError('UNAUTHENTICATED', `The token lacks a valid ${this.claims.subjectClaim} claim (its subject)`);
    const role = roleFromClaim(claimAt(payload, this.claims.roleClaim), this.claims.roleMap);
    if (!role) throw new ProblemError('UNAUTHENTICATED', `The token's ${this.claims.roleClaim} claim grants no platform role`);
    return { sub: sub.data, role };
  }
}

const REQUIRED_CLAIMS = ['exp', 'iat'] as const;

function refusalReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? 'The token is older than the longest accepted lifetime' : 'The token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason !== 'missing') return `The token's ${err.claim} claim is not valid (${err.message})`;
    const missing = REQUIRED_CLAIMS.filter((claim) => !(claim in err.payload));
    // jose stops at the first missing claim; an expired token is worth saying so too.
    const expired = typeof err.payload.exp === 'number' && err.payload.exp < Date.now() / 1000 - CLOCK_TOLERANCE_SECONDS;
    return `The token ${expired ? 'has expired and ' : ''}lacks a required claim (${missing.join(', ') || err.claim})`;
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "The token is signed by a key the identity provider does not publish (unknown kid)";
  return 'The token is not valid';
}

/** A player acts only on its own account; service and staff act on any. */
export function assertMayActOnAccount(principal: Principal | undefined, accountId: string): void {
  if (!principal) throw new ProblemError('UNAUTHENTICATED');
  if (principal.role === 'player' && principal.sub !== accountId) {
    throw new ProblemError('FORBIDDEN', 'A player token may act only on its own account');
  }
}

@Injectable()
export class AuthGuard implements CanActivate {
  private readonly verifier: TokenVerifier;
  constructor(
    private readonly reflector: Reflector,
    jwtSecret: string,
    rules: TokenRules,
  ) {
    this.verifier = new TokenVerifier(jwtSecret, rules);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    let principal: Principal;
    try {
      principal = await this.verifier.verify(request.headers.authorization);
    } catch (err) {
      if (!(err instanceof KeySetUnavailable)) throw err;
      request.log.warn({ err: err.cause }, 'identity provider JWKS unavailable');
      throw err.problem;
    }
    request.principal = principal;
    request.log = request.log.child({ sub: principal.sub, role: principal.role });
    const allowed = this.reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, targets);
    if (allowed && !allowed.includes(principal.role)) {
      throw new ProblemError('FORBIDDEN', `This route needs role ${allowed.join(' or ')}`);
    }
    return true;
  }
}
