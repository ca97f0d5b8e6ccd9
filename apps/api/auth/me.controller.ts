import { Controller, Get, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { RouteDoc } from '../docs/openapi';
import { ROLES } from './auth';

const principalBody = z.object({ sub: z.string(), role: z.enum(ROLES) });

/** Lets a client check which principal its token stands for. */
@Controller('v1/me')
export class MeController {
  @Get()
  me(@Req() request: FastifyRequest): z.infer<typeof principalBody> {
    return principalBody.parse(request.principal);
  }
}

export const meRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/me',
    summary: 'The principal of the bearer token',
    tag: 'auth',
    auth: 'any',
    responses: { 200: { description: 'Token is valid', schema: principalBody }, 401: { description: 'Missing, malformed, expired or forged token' } },
  },
];
