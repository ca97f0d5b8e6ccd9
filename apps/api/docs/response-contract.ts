import type { FastifyInstance } from 'fastify';
import type { RouteDoc } from './openapi';

export interface ContractViolation {
  method: string;
  route: string;
  status: number;
  problem: string;
}

/**
 * Checks every answer against the route's documented response (RouteDoc, hence the OpenAPI document and
 * the generated client): a status the route does not document, or a body its schema refuses, is a
 * violation. Problems (4xx/5xx) are the problem filter's and not checked here. The tests turn this on
 * for every API they start, so a response that drifts from its schema fails the test that provoked it.
 */
export function checkResponsesAgainstDocs(fastify: FastifyInstance, routes: readonly RouteDoc[], onViolation: (violation: ContractViolation) => void): void {
  const docs = new Map(routes.map((route) => [`${route.method.toUpperCase()} ${route.path}`, route]));
  fastify.addHook('onSend', async (request, reply, payload) => {
    const route = request.routeOptions.url;
    const status = reply.statusCode;
    if (!route || status >= 400 || request.method === 'HEAD') return payload;
    const doc = docs.get(`${request.method} ${route}`);
    if (!doc) return payload; // not a documented API route (/docs, its assets)
    const violation = (problem: string) => onViolation({ method: request.method, route, status, problem });
    const response = doc.responses[status];
    if (!response) {
      violation(`status ${status} is not documented (documented: ${Object.keys(doc.responses).join(', ')})`);
      return payload;
    }
    if (!response.schema) return payload;
    if (typeof payload !== 'string') {
      violation('the body is not text');
      return payload;
    }
    let body: unknown = payload;
    if (!response.contentType || response.contentType.endsWith('json')) {
      try {
        body = JSON.parse(payload);
      } catch {
        violation('the body is not JSON');
        return payload;
      }
    }
    const parsed = response.schema.safeParse(body);
    if (!parsed.success) {
      violation(parsed.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; '));
    }
    return payload;
  });
}
