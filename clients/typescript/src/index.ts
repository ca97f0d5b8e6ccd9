/**
 * Typed client of the payout saga platform's API. The types come from the OpenAPI document (`openapi.json`
 * at the repository's root, generated from the API's own zod schemas) by openapi-typescript; the calls are
 * openapi-fetch's. Paths, parameters, bodies and each status's body are checked by the compiler:
 *
 *   const api = createPayoutClient({ baseUrl: 'http://127.0.0.1:3000', token });
 *   const { data, error, response } = await api.POST('/v1/payouts', {
 *     params: { header: { 'Idempotency-Key': 'withdrawal-42' } },
 *     body: { account_id: 'player-1', amount: { minor_units: 2500, currency: 'EUR' }, destination: { method: 'ewallet', wallet_id: 'wallet-0001' } },
 *   });
 *   // data: the 201/202 body; error: the problem+json (with its stable `code`)
 */
import createClient, { type Client, type ClientOptions, type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema';

export type { components, paths } from './schema';
export type PayoutClient = Client<paths>;
/** RFC 9457 problem+json, as every error of the API. */
export type Problem = components['schemas']['Problem'];

export interface PayoutClientOptions extends ClientOptions {
  baseUrl: string;
  /** A bearer token, or a function giving the current one (called per request, so it may refresh). */
  token?: string | (() => string | Promise<string>);
}

export function createPayoutClient({ token, ...options }: PayoutClientOptions): PayoutClient {
  const client = createClient<paths>(options);
  if (token !== undefined) {
    const bearer: Middleware = {
      async onRequest({ request }) {
        request.headers.set('authorization', `Bearer ${typeof token === 'function' ? await token() : token}`);
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}
