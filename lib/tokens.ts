import { SignJWT } from 'jose';

export type TokenRole = 'player' | 'service' | 'staff';

/** Mints an HS256 bearer token as the API expects (for development, tests and the demo). */
export function signToken(claims: { sub: string; role: TokenRole }, secret: string, expiresIn: string | number = '1h', scope: { issuer?: string; audience?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ role: claims.role }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
  if (scope.issuer) jwt.setIssuer(scope.issuer);
  if (scope.audience) jwt.setAudience(scope.audience);
  return jwt
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}
