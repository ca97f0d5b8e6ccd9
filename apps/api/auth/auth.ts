import { type CanActivate, type ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { ProblemError } from '../common/problem';

export const ROLES = ['player', 'service', 'staff'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, from a verified token. */
export interface Principal {
  sub: string;
  role: Role;
}

const claimsSchema = z.object({ sub: z.string().min(1).max(255), role: z.enum(ROLES) });

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
}

/** Clock skew forgiven between the token issuer and us, on exp, nbf and iat. */
export const CLOCK_TOLERANCE_SECONDS = 30;

export async function verifyBearer(header: string | undefined, secret: Uint8Array, rules: TokenRules): Promise<Principal> {
  const match = /^Bearer ([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+)$/.exec(header ?? '');
  if (!match) throw new ProblemError('UNAUTHENTICATED', 'Missing or malformed Authorization: Bearer <JWT> header');
  try {
    // exp is required: a leaked token without one would never expire. iat is required (maxTokenAge makes
    // jose insist on it, and refuse one in the future): without it a token's lifetime cannot be bounded.
    const { payload } = await jwtVerify(match[1]!, secret, {
      algorithms: ['HS256'],
      requiredClaims: ['exp', 'sub'],
      maxTokenAge: rules.maxLifetimeSeconds,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      ...(rules.issuer ? { issuer: rules.issuer } : {}),
      ...(rules.audience ? { audience: rules.audience } : {}),
    });
    // maxTokenAge bounds the age; this bounds what the issuer granted, so a 10-year token is refused at once.
    if (payload.exp! - payload.iat! > rules.maxLifetimeSeconds) {
      throw new ProblemError('UNAUTHENTICATED', `The token's lifetime (exp − iat) exceeds ${rules.maxLifetimeSeconds} seconds`);
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw new ProblemError('UNAUTHENTICATED', 'The token lacks a valid sub or role claim');
    return claims.data;
  } catch (err) {
    if (err instanceof ProblemError) throw err;
    throw new ProblemError('UNAUTHENTICATED', refusalReason(err));
  }
}

const REQUIRED_CLAIMS = ['exp', 'iat', 'sub'] as const;

function refusalReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? 'The token is older than the longest accepted lifetime' : 'The token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason !== 'missing') return `The token's ${err.claim} claim is not valid (${err.message})`;
    const missing = REQUIRED_CLAIMS.filter((claim) => !(claim in err.payload));
    // jose stops at the first missing claim; an expired token is worth saying so too.
    const expired = typeof err.payload.exp === 'number' && err.payload.exp < Date.now() / 1000 - CLOCK_TOLERANCE_SECONDS;
    return `The token ${expired ? 'has expired and ' : ''}lacks a required claim (${missing.join(', ') || err.claim})`;
  }
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
  private readonly secret: Uint8Array;
  constructor(
    private readonly reflector: Reflector,
    jwtSecret: string,
    private readonly rules: TokenRules,
  ) {
    this.secret = new TextEncoder().encode(jwtSecret);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const principal = await verifyBearer(request.headers.authorization, this.secret, this.rules);
    request.principal = principal;
    request.log = request.log.child({ sub: principal.sub, role: principal.role });
    const allowed = this.reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, targets);
    if (allowed && !allowed.includes(principal.role)) {
      throw new ProblemError('FORBIDDEN', `This route needs role ${allowed.join(' or ')}`);
    }
    return true;
  }
}
