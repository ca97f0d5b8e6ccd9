import { Controller, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Public } from '../auth/auth';
import type { RouteDoc } from '../docs/openapi';
import { WEBHOOK_INTAKE } from '../tokens';
import { OpenWhenReadOnly } from '../traffic/traffic.guard';
import { ackBody, type Ack, type WebhookIntake } from './webhook-intake.service';

/** Provider callbacks: public (the signature is the authentication), open in read-only mode. */
@Controller('v1/webhooks')
export class WebhooksController {
  constructor(@Inject(WEBHOOK_INTAKE) private readonly intake: WebhookIntake) {}

  @Public()
  @OpenWhenReadOnly()
  @Post(':provider')
  @HttpCode(200)
  receive(@Param('provider') provider: string, @Req() request: FastifyRequest): Promise<Ack> {
    return this.intake.receive(provider, request.headers['x-signature'], request.rawBody ?? Buffer.alloc(0), request.log);
  }
}

export const webhookRoutes: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/webhooks/:provider',
    summary: 'Signed provider callback (X-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>)',
    tag: 'webhooks',
    auth: 'public',
    responses: {
      200: { description: "Verified and stored, and signalled to the saga once as a claim (the saga acts only on the provider's own record)", schema: ackBody },
      400: { description: 'Signed, but not a provider event (VALIDATION_FAILED): nothing stored' },
      401: { description: 'WEBHOOK_SIGNATURE_INVALID: nothing stored' },
      404: { description: 'Unknown provider' },
      409: { description: 'WEBHOOK_EVENT_CONFLICT: this event id was received before with a different body; not acted on' },
      503: { description: 'Stored but not yet delivered to the saga: retry' },
    },
  },
];
