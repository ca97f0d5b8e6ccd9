import { z } from 'zod';
import { PROBLEM_CODES } from '../common/problem';

/**
 * OpenAPI is generated from the same zod schemas the controllers parse with, so the document
 * cannot disagree with the code. Each feature exports the RouteDoc list of its routes.
 */
export interface RouteDoc {
  method: 'get' | 'post' | 'put';
  path: string;
  summary: string;
  tag: string;
  /** Roles allowed; 'public' needs no token. */
  auth: 'public' | 'any' | ('player' | 'service' | 'staff')[];
  idempotencyKey?: boolean;
  /** The query string's schema (the one the controller parses with): each key becomes a query parameter. */
  query?: z.ZodObject;
  body?: z.ZodType;
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
}

const problemSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string', enum: Object.keys(PROBLEM_CODES) },
    detail: { type: 'string' },
    instance: { type: 'string' },
    request_id: { type: 'string' },
    errors: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
  },
};

function jsonSchema(schema: z.ZodType): unknown {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export function buildOpenApiDocument(routes: RouteDoc[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const oasPath = route.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const parameters: unknown[] = [...route.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (route.idempotencyKey) {
      parameters.push({
        name: 'Idempotency-Key',
        in: 'header',
        required: true,
        description: '1-255 printable ASCII characters, scoped to the account. A repeat returns the first answer with `Idempotent-Replayed: true`.',
        schema: { type: 'string', minLength: 1, maxLength: 255 },
      });
    }
    for (const [name, field] of Object.entries(route.query?.shape ?? {}) as [string, z.ZodType][]) {
      const { description, ...schema } = jsonSchema(field) as { description?: string };
      parameters.push({ name, in: 'query', required: !field.safeParse(undefined).success, ...(description ? { description } : {}), schema });
    }
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      const isProblem = Number(status) >= 400;
      const contentType = response.contentType ?? (isProblem ? 'application/problem+json' : 'application/json');
      const schema = response.schema ? jsonSchema(response.schema) : isProblem ? { $ref: '#/components/schemas/Problem' } : undefined;
      responses[status] = { description: response.description, ...(schema ? { content: { [contentType]: { schema } } } : {}) };
    }
    paths[oasPath] ??= {};
    paths[oasPath]![route.method] = {
      summary: route.summary,
      tags: [route.tag],
      ...(route.auth === 'public' ? { security: [] } : {}),
      ...(Array.isArray(route.auth) ? { description: `Roles: ${route.auth.join(', ')}` } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body) } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Payout saga platform API',
      version,
      description: 'Exactly-once payouts and deposits. Errors are RFC 9457 problem+json with a stable `code`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT: HS256 with the development secret, or RS256/ES256/PS256/EdDSA from the identity provider (AUTH_JWKS_URL); subject and role claims as configured' } },
      schemas: { Problem: problemSchema },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
