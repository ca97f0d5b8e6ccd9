import { type CanActivate, type ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ProblemError } from '../common/problem';
import { MODE_RETRY_AFTER_SECONDS, type TrafficControl } from './traffic-control';

const OPEN_WHEN_READ_ONLY = 'traffic:open-when-read-only';
/** The route still changes things in read-only mode: provider webhooks (money in flight) and the mode switch itself. */
export const OpenWhenReadOnly = () => SetMetadata(OPEN_WHEN_READ_ONLY, true);

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Runs after authentication, on every route: in read-only mode a change is refused (503 READ_ONLY) before
 * any handler runs; then the caller's token subject spends one request of its per-minute limit.
 */
@Injectable()
export class TrafficGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly traffic: TrafficControl,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const open = this.reflector.getAllAndOverride<boolean>(OPEN_WHEN_READ_ONLY, [context.getHandler(), context.getClass()]);
    if (!READS.has(request.method) && !open && this.traffic.modes.mode === 'read-only') {
      throw new ProblemError('READ_ONLY', 'The operator has made the platform read-only for now; retry later', {}, MODE_RETRY_AFTER_SECONDS);
    }
    if (request.principal) await this.traffic.rateLimits.consume('subject', request.principal.sub);
    return true;
  }
}
