/**
 * How a bearer token's claims become a principal: which claim holds the subject and which the role
 * (AUTH_SUBJECT_CLAIM, AUTH_ROLE_CLAIM, both possibly nested as identity providers put them), and how the
 * provider's role or group names map to the platform's roles (AUTH_ROLE_MAP). Shared by the API's guard,
 * the config and the token scripts, so a minted token reads back as the principal it was minted for.
 */

export const PLATFORM_ROLES = ['player', 'service', 'staff'] as const;
export type PlatformRole = (typeof PLATFORM_ROLES)[number];

/** Signature algorithms a token may use: HS256 with AUTH_JWT_SECRET, the others with the keys at AUTH_JWKS_URL. */
export const JWT_ALGORITHMS = ['HS256', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];
/** The one algorithm of the shared-secret path; every other one is verified against the key set only. */
export const SECRET_ALGORITHM = 'HS256';

/** An identity-provider value and the platform role it grants; the order is the precedence. */
export type RoleMap = readonly { value: string; role: PlatformRole }[];

export interface ClaimRules {
  /** Claim path of the subject (`sub`; a player's account id). */
  subjectClaim: string;
  /** Claim path of the role: a string (space-separated values, as in `scope`) or an array of strings. */
  roleClaim: string;
  /** Empty: the values `player`, `service`, `staff` themselves, in that precedence. */
  roleMap: RoleMap;
}

export const DEFAULT_CLAIM_RULES: ClaimRules = { subjectClaim: 'sub', roleClaim: 'role', roleMap: [] };

const MAX_PATH_DEPTH = 8;

/**
 * The value at a claim path. A claim named exactly so wins (`https://example.com/role` is one claim,
 * dots and all); otherwise dots descend into objects (`realm_access.roles`), the longest matching key
 * first, so `resource_access.payouts.api.roles` finds client `payouts.api`.
 */
export function claimAt(payload: unknown, path: string, depth = 0): unknown {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload) || depth > MAX_PATH_DEPTH) return undefined;
  const record = payload as Record<string, unknown>;
  if (Object.hasOwn(record, path)) return record[path];
  for (let dot = path.lastIndexOf('.'); dot > 0; dot = path.lastIndexOf('.', dot - 1)) {
    const head = path.slice(0, dot);
    if (!Object.hasOwn(record, head)) continue;
    const found = claimAt(record[head], path.slice(dot + 1), depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Claims that put `value` at `path` as claimAt reads it: namespaced names (with `:` or `/`, as Auth0
 * wants custom claims) stay one claim, dotted names nest (`realm_access.roles` → `{realm_access: {roles}}`).
 */
export function claimsWith(path: string, value: unknown): Record<string, unknown> {
  if (/[:/]/.test(path) || !path.includes('.')) return { [path]: value };
  const parts = path.split('.');
  return parts.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>;
}

/** The values a role claim carries: a string is split on whitespace (as `scope` is), an array keeps its strings. */
function roleValues(claim: unknown): string[] {
  if (typeof claim === 'string') return claim.split(/\s+/).filter((v) => v !== '');
  if (Array.isArray(claim)) return claim.filter((v): v is string => typeof v === 'string');
  return [];
}

/**
 * The platform role a role claim grants. Precedence is fixed, never the token's order (which IdPs do
 * not define): the first AUTH_ROLE_MAP entry whose value the token carries, or without a map the first
 * of player, service, staff it carries. With a map only mapped values count, so an unrelated IdP group
 * that happens to be called `staff` grants nothing.
 */
export function roleFromClaim(claim: unknown, roleMap: RoleMap): PlatformRole | undefined {
  const carried = new Set(roleValues(claim));
  const entries: RoleMap = roleMap.length > 0 ? roleMap : PLATFORM_ROLES.map((role) => ({ value: role, role }));
  return entries.find((entry) => carried.has(entry.value))?.role;
}

/** The IdP value a minted token carries for a role: the first map entry granting it (or the role itself). */
export function roleClaimValue(role: PlatformRole, roleMap: RoleMap): string | undefined {
  if (roleMap.length === 0) return role;
  return roleMap.find((entry) => entry.role === role)?.value;
}

/**
 * Parses AUTH_ROLE_MAP: `idp-value:role` entries, comma-separated (`payments-admin:staff,finance:staff`).
 * A value may itself hold colons (`payouts:write:service`): the role is after the last one.
 */
export function parseRoleMap(text: string): { map: RoleMap } | { problems: string[] } {
  const problems: string[] = [];
  const map: { value: string; role: PlatformRole }[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const colon = entry.lastIndexOf(':');
    const value = entry.slice(0, colon).trim();
    const role = entry.slice(colon + 1).trim();
    if (colon <= 0 || value === '') problems.push(`"${entry}" is not idp-value:role`);
    else if (!(PLATFORM_ROLES as readonly string[]).includes(role)) problems.push(`"${entry}": role must be one of ${PLATFORM_ROLES.join(', ')}`);
    else if (map.some((m) => m.value === value)) problems.push(`"${value}" is mapped twice`);
    else map.push({ value, role: role as PlatformRole });
  }
  return problems.length > 0 ? { problems } : { map };
}
