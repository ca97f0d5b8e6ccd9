import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { grpcStatusOf } from '../../../lib/temporal-client';
import { DEFAULT_RETRY_AFTER_SECONDS, PROBLEM_CONTENT_TYPE, problemBody, ProblemError, type ProblemBody, type ProblemCode } from './problem';

const STATUS_TO_CODE: Record<number, ProblemCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  503: 'SERVICE_UNAVAILABLE',
};

/** Fastify's own request errors (body parsing, limits), mapped to our stable codes. */
const FASTIFY_CODES: Record<string, ProblemCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
};

/** Turns anything thrown while handling a request into an RFC 9457 problem. */
export function toProblem(error: unknown): ProblemBody {
  if (error instanceof ProblemError) return problemBody(error.code, error.detail, error.extensions);
  const fastifyCode = (error as { code?: string })?.code;
  if (fastifyCode && FASTIFY_CODES[fastifyCode]) return problemBody(FASTIFY_CODES[fastifyCode], (error as Error).message);
  if (error instanceof SyntaxError) return problemBody('MALFORMED_JSON', error.message);
  if (isUnavailable(error)) return problemBody('SERVICE_UNAVAILABLE', 'Temporal is unreachable or too slow; retry (with the same Idempotency-Key)');
  if (isDatabaseUnavailable(error)) return problemBody('SERVICE_UNAVAILABLE', 'The database is unreachable (restarting?); retry with the same Idempotency-Key');
  // The update was delivered but its answer did not come in time: it may still apply, so say so.
  if ((error as Error)?.name === 'WorkflowUpdateRPCTimeoutOrCancelledError') {
    return problemBody('SERVICE_UNAVAILABLE', 'The saga did not answer in time; the action may still apply. Check the payout before retrying');
  }
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const code = STATUS_TO_CODE[status];
    if (code) return problemBody(code, error.message);
    return { ...problemBody('INTERNAL_ERROR'), status, title: error.message };
  }
  const statusCode = (error as { statusCode?: number })?.statusCode;
  if (statusCode && statusCode >= 400 && statusCode < 500 && STATUS_TO_CODE[statusCode]) {
    return problemBody(STATUS_TO_CODE[statusCode]!, (error as Error).message);
  }
  return problemBody('INTERNAL_ERROR');
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: ProblemBody, retryAfterSeconds?: number): void {
  const body = { ...problem, instance: request.url, request_id: String(request.id) };
  // Every "not now" says when to come back (README: how a client retries).
  const retryAfter = retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS[problem.status];
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  if (problem.status >= 500) request.log.error({ problem: body }, 'request failed');
  else request.log.info({ code: problem.code, status: problem.status }, 'request refused');
  void reply.status(problem.status).header('content-type', PROBLEM_CONTENT_TYPE).send(body);
}

@Catch()
export class ProblemFilter implements ExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const request = ctx.getRequest<FastifyRequest>();
    const problem = toProblem(exception);
    if (problem.code === 'INTERNAL_ERROR') request.log.error({ err: exception }, 'unhandled error');
    sendProblem(request, ctx.getResponse<FastifyReply>(), problem, exception instanceof ProblemError ? exception.retryAfterSeconds : undefined);
  }
}

/** gRPC UNAVAILABLE or DEADLINE_EXCEEDED from the Temporal client: a dependency is down, not a bug (503, not 500). */
function isUnavailable(error: unknown): boolean {
  const code = grpcStatusOf(error);
  return (error as Error)?.name === 'ServiceError' && (code === 14 || code === 4);
}

/**
 * PostgreSQL down, restarting or refusing connections (seen in the chaos run while it restarts): a dependency is
 * down, not a bug. Network errors of the driver, the pool's connect timeout, and the server's shutdown and
 * connection-failure SQLSTATEs (classes 08 and 57P).
 */
const DATABASE_DOWN_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string' && DATABASE_DOWN_CODES.has(code)) return true;
  const message = (error as Error)?.message ?? '';
  return /^(Connection terminated|timeout exceeded when trying to connect)/.test(message);
}
