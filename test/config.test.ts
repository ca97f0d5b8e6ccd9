import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEV_JWT_SECRET, loadConfig, repoRoot, settings } from '../lib/config';

describe('configuration', () => {
  it('runs on documented defaults with an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ API_PORT: 3000, SANDBOX_PORT: 4010, PG_PORT: 5433, TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_UI_PORT: 8233, TEMPORAL_EMBEDDED: true });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.AUTH_JWT_SECRET).toBe(DEV_JWT_SECRET);
  });

  it('parses values from the environment', () => {
    expect(loadConfig({ API_PORT: '8080', TEMPORAL_EMBEDDED: 'false', DATABASE_URL: 'postgres://u:p@db:5432/x' })).toMatchObject({
      API_PORT: 8080,
      TEMPORAL_EMBEDDED: false,
      DATABASE_URL: 'postgres://u:p@db:5432/x',
    });
  });

  it('reads a renamed setting under its former name too, and refuses the two names set differently', () => {
    expect(loadConfig({ PAYOUT_POLL_INITIAL_MS: '1234', PAYOUT_SYNC_DEADLINE_MS: '900' })).toMatchObject({ PROVIDER_POLL_INITIAL_MS: 1234, SAGA_SYNC_DEADLINE_MS: 900 });
    expect(loadConfig({ PROVIDER_STUCK_AFTER_MS: '5000', PAYOUT_STUCK_AFTER_MS: '5000' })).toMatchObject({ PROVIDER_STUCK_AFTER_MS: 5000 });
    expect(() => loadConfig({ SAGA_CONTINUE_AS_NEW_AFTER_EVENTS: '500', PAYOUT_CONTINUE_AS_NEW_AFTER_EVENTS: '600' })).toThrow(/SAGA_CONTINUE_AS_NEW_AFTER_EVENTS: set differently under its former name PAYOUT_CONTINUE_AS_NEW_AFTER_EVENTS/);
    expect(() => loadConfig({ PAYOUT_POLL_MAX_MS: 'often' })).toThrow(/PROVIDER_POLL_MAX_MS: "often" is not valid/);
  });

  it('FOUR_EYES_ACTIONS: every manual money action by default, a list, or none; an unknown action is refused', () => {
    expect(loadConfig({}).FOUR_EYES_ACTIONS).toEqual(['payout_resolve', 'payout_review', 'account_unfreeze', 'chargeback']);
    expect(loadConfig({ FOUR_EYES_ACTIONS: 'account_unfreeze' }).FOUR_EYES_ACTIONS).toEqual(['account_unfreeze']);
    expect(loadConfig({ FOUR_EYES_ACTIONS: 'none' }).FOUR_EYES_ACTIONS).toEqual([]);
    expect(() => loadConfig({ FOUR_EYES_ACTIONS: 'payout_resolve,refund' })).toThrow(/FOUR_EYES_ACTIONS/);
  });

  it('names every bad setting in one error', () => {
    try {
      loadConfig({ API_PORT: 'eighty', TEMPORAL_ADDRESS: 'no-port', AUTH_JWT_SECRET: 'short' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.setting).sort()).toEqual(['API_PORT', 'AUTH_JWT_SECRET', 'TEMPORAL_ADDRESS']);
      expect((err as Error).message).toMatch(/API_PORT: "eighty" is not valid/);
    }
  });

  it('refuses the dev secrets in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/AUTH_JWT_SECRET: the dev default is refused in production/);
  });

  it('parses DESTINATION_KEYS as a key ring (first key current), never echoing a key, and refuses the dev key in production', () => {
    const k1 = Buffer.alloc(32, 1).toString('base64');
    const k2 = Buffer.alloc(32, 2).toString('base64');
    const ring = loadConfig({ DESTINATION_KEYS: `k2:${k2}, k1:${k1}` }).DESTINATION_KEYS;
    expect(ring.currentId).toBe('k2');
    expect(ring.ids).toEqual(['k2', 'k1']);
    expect(JSON.stringify(ring)).not.toContain(k2);
    const short = Buffer.alloc(16, 3).toString('base64');
    for (const [value, message] of [
      [`k1:${short}`, /key k1 is 16 bytes; it must be 32/],
      [`k1:${k1},k1:${k2}`, /key id k1 appears twice/],
      [k1, /not id:base64key/],
      ['k1:not*base64', /key k1 is not base64/],
    ] as const) {
      try {
        loadConfig({ DESTINATION_KEYS: value });
        expect.unreachable();
      } catch (err) {
        expect((err as ConfigError).message).toMatch(message);
        expect((err as ConfigError).message).not.toContain(value.split(':').pop());
      }
    }
    const productionSecrets = { NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(40), SANDBOX_WEBHOOK_SECRET: 'y'.repeat(20), SANDBOX_B_WEBHOOK_SECRET: 'w'.repeat(20), OUTBOX_WEBHOOK_SECRET: 'z'.repeat(20) };
    expect(() => loadConfig(productionSecrets)).toThrow(/DESTINATION_KEYS: the dev key is refused in production/);
    expect(loadConfig({ ...productionSecrets, DESTINATION_KEYS: `k1:${k1}` }).DESTINATION_KEYS.currentId).toBe('k1');
  });

  it('stops a process at start with a message naming the setting', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'apps/api/main.ts'], {
      cwd: repoRoot,
      env: { ...process.env, API_PORT: '99999' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.status).toBe(78);
    expect(result.stderr).toMatch(/API_PORT: "99999" is not valid/);
  });

  it('is documented: the README configuration table lists every setting with its default', () => {
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    for (const [name, s] of Object.entries(settings)) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
      expect(row, `README row for ${name}`).toBeDefined();
      if (s.default) expect(row, name).toContain(`\`${s.default}\``);
    }
  });
});
