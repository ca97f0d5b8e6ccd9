import { SignJWT } from 'jose';

export type TokenRole = 'player' | 'service' | 'staff';

/** Mints an HS256 bearer token as the API expects (for development, tests and the demo). */
export function signToken(claims: { sub: string; role: TokenRole }, secret: string, expiresIn: string | number = '1h'): Promise<string> {
  return new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}
