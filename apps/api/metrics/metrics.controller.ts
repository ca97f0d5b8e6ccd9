import { Controller, Get, Header, Inject } from '@nestjs/common';
import { Public } from '../auth/auth';
import { METRICS } from '../tokens';
import type { ApiMetrics } from './metrics';

@Controller()
export class MetricsController {
  constructor(@Inject(METRICS) private readonly metrics: ApiMetrics) {}

  @Public()
  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  render(): Promise<string> {
    return this.metrics.render();
  }
}
