import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { payoutBody, sandboxSchema, sleep, startReceiver, startSandbox, type Receiver, type Sandbox } from '../support/sandbox';

const waitOpts = { timeout: 5_000, interval: 20 };

/**
 * The sandbox keeps its state in its own database, as a real provider does: a sandbox stopped and started
 * again on the same store still has every payout and remembered answer, and plays what was due meanwhile.
 */
describe('sandbox restart', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function receiver(): Promise<Receiver> {
    const r = await startReceiver();
    cleanups.push(() => r.close());
    return r;
  }

  /** A sandbox on `schema`; stop() closes it (idempotent), as a restart's first half. */
  async function sandboxOn(schema: string, webhookUrl: string, options: Partial<Parameters<typeof startSandbox>[0]> = {}) {
    const sandbox: Sandbox = await startSandbox({ webhookUrl, schema, ...options });
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await sandbox.close();
    };
    cleanups.push(stop);
    return { ...sandbox, stop };
  }

  it('keeps payouts and answers: the replay after a restart is the same payout, the callback due meanwhile is sent once', async () => {
    const hooks = await receiver();
    const schema = sandboxSchema();
    const first = await sandboxOn(schema, hooks.url);
    const body = payoutBody({ metadata: { sandbox_scenario: { scenario: 'settle', callback_delay_ms: 600 } } });
    const key = randomUUID();
    const created = await first.submitPayout(body, key);
    expect(created.status).toBe(201);
    await first.stop(); // before the callback is due

    await sleep(700); // the callback falls due while no sandbox runs
    expect(hooks.forReference(body.reference)).toHaveLength(0);
    const second = await sandboxOn(schema, hooks.url);
    const replay = await second.submitPayout(body, key);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(created.body.id);
    const again = await second.submitPayout(body, randomUUID());
    expect([again.status, again.body.error.code, again.body.error.existing_id]).toEqual([409, 'duplicate_reference', created.body.id]);

    await vi.waitFor(() => expect(hooks.forReference(body.reference)).toHaveLength(1), waitOpts);
    expect(hooks.forReference(body.reference)[0]!.event.type).toBe('payout.settled');
    expect((await second.get(`/v1/payouts/${created.body.id}`)).body.status).toBe('settled');
    await sleep(200);
    expect(hooks.forReference(body.reference)).toHaveLength(1);
  });

  it('a webhook still being retried when the sandbox stops is retried after it starts, with its attempts on record', async () => {
    const hooks = await receiver();
    hooks.respondWith(() => 503);
    const schema = sandboxSchema();
    const retry = { attempts: 6, baseDelayMs: 300, maxDelayMs: 300, timeoutMs: 2_000 };
    const first = await sandboxOn(schema, hooks.url, { webhookRetry: retry });
    const body = payoutBody();
    await first.submitPayout(body);
    await vi.waitFor(async () => expect((await first.events(body.reference))[0]?.attempts).toHaveLength(1), waitOpts);
    await first.stop();

    hooks.respondWith(() => 200);
    const second = await sandboxOn(schema, hooks.url, { webhookRetry: retry });
    await vi.waitFor(async () => expect((await second.events(body.reference))[0]?.state).toBe('delivered'), waitOpts);
    const [delivery] = await second.events(body.reference);
    expect(delivery.attempts.map((a: { status_code: number }) => a.status_code)).toEqual([503, 200]);
    expect(new Set(hooks.forReference(body.reference).map((h) => h.event.id)).size).toBe(1);
  });

  it('out of order across a restart: both steps fall due while it is down, and the return still arrives before the settlement', async () => {
    const hooks = await receiver();
    const schema = sandboxSchema();
    const first = await sandboxOn(schema, hooks.url);
    const body = payoutBody({ metadata: { sandbox_scenario: { scenario: 'out_of_order', callback_delay_ms: 300, return_delay_ms: 100 } } });
    const created = await first.submitPayout(body);
    await first.stop();
    await sleep(500);

    const second = await sandboxOn(schema, hooks.url);
    await vi.waitFor(() => expect(hooks.forReference(body.reference)).toHaveLength(2), waitOpts);
    expect(hooks.forReference(body.reference).map((h) => h.event.type)).toEqual(['payout.returned', 'payout.settled']);
    expect((await second.get(`/v1/payouts/${created.body.id}`)).body.status).toBe('returned');
  });

  it('error_then_ok remembers the 503s it answered, and the settlement report is the same after a restart', async () => {
    const hooks = await receiver();
    const schema = sandboxSchema();
    const first = await sandboxOn(schema, hooks.url);
    const body = payoutBody({ metadata: { sandbox_scenario: 'error_then_ok:1' } });
    const key = randomUUID();
    expect((await first.submitPayout(body, key)).status).toBe(503);
    const settledBody = payoutBody();
    const settled = await first.submitPayout(settledBody);
    await vi.waitFor(async () => expect((await first.get(`/v1/payouts/${settled.body.id}`)).body.status).toBe('settled'), waitOpts);
    const since = new Date(Date.now() - 60_000).toISOString();
    const report = (await first.get(`/v1/reports/settlements?since=${since}`)).body.items;
    await first.stop();

    const second = await sandboxOn(schema, hooks.url);
    expect((await second.submitPayout(body, key)).status).toBe(201); // the one 503 was already answered
    const after = (await second.get(`/v1/reports/settlements?since=${since}`)).body.items;
    expect(after.find((item: { id: string }) => item.id === settled.body.id)).toEqual(report.find((item: { id: string }) => item.id === settled.body.id));
  });
});
