import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { ReceivedEvent } from './verdict';

/**
 * The operator's endpoint behind the outbox, as the chaos run plays it: verifies each delivery's Standard
 * Webhooks signature (`secret` in whsec_ form) with the standardwebhooks library,
 * records every event in arrival order (duplicates included), and refuses a few first deliveries (500) so
 * redelivery is exercised too.
 */
export async function startOutboxReceiver(secret: string, refuseShare = 0.03) {
  const webhook = new Webhook(secret);
  const received: ReceivedEvent[] = [];
  const badSignatures: string[] = [];
  const refusedOnce = new Set<string>();
  let arrival = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      try {
        webhook.verify(rawBody, req.headers as Record<string, string>);
      } catch {
        badSignatures.push(rawBody.slice(0, 200));
        res.writeHead(401).end();
        return;
      }
      const payload = JSON.parse(rawBody) as Record<string, unknown>;
      const eventId = String(payload.event_id);
      if (!refusedOnce.has(eventId) && Math.random() < refuseShare) {
        refusedOnce.add(eventId);
        res.writeHead(500).end();
        return;
      }
      received.push({ eventId, arrival: arrival++, payload });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ledger-events`,
    received,
    badSignatures,
    refused: () => refusedOnce.size,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
