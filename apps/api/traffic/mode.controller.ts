import { Body, Controller, Get, Inject, Put, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Roles } from '../auth/auth';
import { parseOrProblem } from '../common/problem';
import type { RouteDoc } from '../docs/openapi';
import { TRAFFIC } from '../tokens';
import { modeChange, modeView } from './platform-mode';
import { OpenWhenReadOnly } from './traffic.guard';
import type { TrafficControl } from './traffic-control';

/** Staff read and switch the platform's degradation mode; every switch is audited. */
@Controller('v1/ops/mode')
@Roles('staff')
export class ModeController {
  constructor(@Inject(TRAFFIC) private readonly traffic: TrafficControl) {}

  @Get()
  get() {
    return modeView.parse(this.traffic.modes.view());
  }

  @Put()
  @OpenWhenReadOnly()
  async change(@Body() body: unknown, @Req() request: FastifyRequest) {
    const change = parseOrProblem(modeChange, body);
    return modeView.parse(await this.traffic.modes.change(change, `${request.principal!.role}:${request.principal!.sub}`));
  }
}

export const modeRoutes: RouteDoc[] = [
  {
    method: 'get',
    path: '/v1/ops/mode',
    summary: 'The degradation mode in force: normal, no-new-payouts or read-only',
    tag: 'ops',
    auth: ['staff'],
    responses: { 200: { description: 'The mode, who set it, when and why', schema: modeView } },
  },
  {
    method: 'put',
    path: '/v1/ops/mode',
    summary: 'Switch the degradation mode (applies on every API instance within PLATFORM_MODE_REFRESH_MS); audited',
    tag: 'ops',
    auth: ['staff'],
    body: modeChange,
    responses: { 200: { description: 'The mode now in force', schema: modeView } },
  },
];
