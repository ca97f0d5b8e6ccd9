import { importJWK, type JWK, SignJWT } from 'jose';
import { claimsWith, DEFAULT_CLAIM_RULES, type ClaimRules, type JwtAlgorithm, type PlatformRole, roleClaimValue } from './auth-claims';

export type TokenRole = PlatformRole;

/** Mints an HS256 bearer token as the API expects (for development, tests and the demo). */
export function signToken(claims: { sub: string; role: TokenRole }, secret: string, expiresIn: string | number = '1h', scope: { issuer?: string; audience?: string; claims?: ClaimRules } = {}): Promise<string> {
  return sign(claims, 'HS256', undefined, new TextEncoder().encode(secret), expiresIn, scope);
}

/** The algorithm a JWK signs with: its own `alg`, else the usual one for its key type. */
export function algorithmOf(jwk: JWK): JwtAlgorithm {
  if (jwk.alg) return jwk.alg as JwtAlgorithm;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return ({ 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' } as const)[jwk.crv as 'P-256'] ?? 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  throw new Error(`cannot tell the signing algorithm of a ${jwk.kty} key: give the JWK an "alg"`);
}

/**
 * Mints a token as an identity provider would: signed with a private JWK (its `kid` in the header, so
 * the API picks the public key from its JWKS), with the subject and role at the configured claims.
 */
export async function signTokenWithJwk(claims: { sub: string; role: TokenRole }, privateJwk: JWK, expiresIn: string | number = '1h', scope: { issuer?: string; audience?: string; claims?: ClaimRules } = {}): Promise<string> {
  if (!privateJwk.d) throw new Error('the JWK is a public key; minting a token needs the private key (with "d")');
  const alg = algorithmOf(privateJwk);
  return sign(claims, alg, privateJwk.kid, await importJWK(privateJwk, alg), expiresIn, scope);
}

async function sign(
  claims: { sub: string; role: TokenRole },
  alg: string,
  kid: string | undefined,
  key: Parameters<SignJWT['sign']>[0],
  expiresIn: string | number,
  scope: { issuer?: string; audience?: string; claims?: ClaimRules },
): Promise<string> {
  const rules = scope.claims ?? DEFAULT_CLAIM_RULES;
  const role = roleClaimValue(claims.role, rules.roleMap);
  if (role === undefined) throw new Error(`AUTH_ROLE_MAP maps nothing to ${claims.role}`);
  // As IdPs put it: roles and groups claims (Keycloak's realm_access.roles, Okta's groups) are arrays; the plain `role` claim a string.
  const payload = claimsWith(rules.roleClaim, rules.roleClaim === DEFAULT_CLAIM_RULES.roleClaim ? role : [role]);
  if (rules.subjectClaim !== 'sub') mergeInto(payload, claimsWith(rules.subjectClaim, claims.sub));
  const jwt = new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) });
  if (scope.issuer) jwt.setIssuer(scope.issuer);
  if (scope.audience) jwt.setAudience(scope.audience);
  return jwt
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

/** Deep-merges claim objects, so `ext.role` and `ext.account_id` share their `ext`. */
function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(existing) && isObject(value)) mergeInto(existing, value);
    else target[key] = value;
  }
}
