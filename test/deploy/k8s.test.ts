import fs from 'node:fs';
import path from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { repoRoot, settings } from '../../lib/config';
import { LIVE_PATH, READY_PATH, splitAddress } from '../../lib/health-server';
import { TEMPORAL_SERVER_VERSION, TEMPORAL_UI_VERSION } from '../../temporal/server';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../temporal/search-attributes';
import { sourceOfBuiltEntry } from './build-output';

const dir = path.join(repoRoot, 'deploy/k8s');
/** Files that are not Kubernetes objects: kustomize's own, and the Temporal chart's values. */
const NOT_OBJECTS = ['kustomization.yaml', 'temporal-values.yaml'];
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
const manifestFiles = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') && !NOT_OBJECTS.includes(f));
const objects: (K8sObject & { file: string })[] = manifestFiles.flatMap((file) =>
  parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8')).map((doc) => {
    expect(doc.errors, file).toEqual([]);
    return { ...(doc.toJS() as K8sObject), file };
  }),
);
const kustomization = parse(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[]; images: { name: string }[] };
const byKind = <T>(kind: string) => objects.filter((o) => o.kind === kind) as unknown as (T & K8sObject & { file: string })[];
type DeploymentObject = { spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: IPodSpec } } };
const deployments = byKind<DeploymentObject>('Deployment');
const deployment = (name: string) => deployments.find((d) => d.metadata.name === name)!;
const configMap = byKind<{ data: Record<string, string> }>('ConfigMap')[0]!;
const secretExample = byKind<{ stringData: Record<string, string> }>('Secret')[0]!;
const podSpecs: [string, IPodSpec][] = [
  ...deployments.map((d): [string, IPodSpec] => [d.metadata.name, d.spec.template.spec]),
  ...byKind<{ spec: { template: { spec: IPodSpec } } }>('Job').map((j): [string, IPodSpec] => [j.metadata.name, j.spec.template.spec]),
];
const containers: [string, IContainer][] = podSpecs.flatMap(([name, spec]) => spec.containers.map((c): [string, IContainer] => [name, c]));

describe('deploy/k8s manifests', () => {
  it('are each valid against the Kubernetes schema of their kind (kubernetes-models)', () => {
    expect(objects.length).toBeGreaterThanOrEqual(9);
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${object.file}: ${object.apiVersion} ${object.kind}`).toBeDefined();
      const { file: _, ...data } = object;
      expect(() => new Model!(data as never).validate(), `${object.file}: ${object.kind} ${object.metadata.name}`).not.toThrow();
    }
  });

  it('catches a broken manifest (the validation is real)', () => {
    const { file: _, ...api } = structuredClone(deployment('api')) as unknown as Record<string, never>;
    (api as unknown as DeploymentObject).spec.template.spec.containers[0]!.readinessProbe!.httpGet!.port = undefined as never;
    expect(() => new Deployment(api).validate()).toThrow(/port/);
  });

  it('kustomization.yaml applies every manifest but the Secret example, which holds no real secret', () => {
    expect([...kustomization.resources].sort()).toEqual(manifestFiles.filter((f) => f !== 'secret.example.yaml').sort());
    for (const value of Object.values(secretExample.stringData)) expect(value).toMatch(/CHANGE-ME/);
    for (const [, container] of containers) expect(container.image).toBe(kustomization.images[0]!.name);
  });

  it('runs api (2), worker (2) and outbox-publisher (1+), each a file the production build produces, with plain node', () => {
    expect(deployment('api').spec.replicas).toBe(2);
    expect(deployment('worker').spec.replicas).toBe(2);
    expect(deployment('outbox-publisher').spec.replicas).toBeGreaterThanOrEqual(1);
    // Publishers of two releases never serve the same deliveries side by side.
    expect((deployment('outbox-publisher').spec as { strategy?: unknown }).strategy).toEqual({ type: 'Recreate' });
    const sources = Object.fromEntries(containers.map(([name, c]) => {
      expect(c.command?.[0], name).toBe('node');
      expect(c.command, name).toHaveLength(2);
      return [name, sourceOfBuiltEntry(c.command![1]!)];
    }));
    expect(sources).toEqual({ api: 'apps/api/main.ts', worker: 'apps/worker/main.ts', 'outbox-publisher': 'apps/outbox-publisher/main.ts', migrate: 'scripts/migrate.ts' });
  });

  it('probes liveness and readiness on the health routes, on the port each process binds from its settings', () => {
    const healthPort = { api: Number(configMap.data.API_PORT), worker: splitAddress(configMap.data.WORKER_HEALTH_ADDRESS!).port, 'outbox-publisher': splitAddress(configMap.data.OUTBOX_HEALTH_ADDRESS!).port };
    // Bound on all of the pod's interfaces, or the kubelet could not reach them.
    expect([configMap.data.API_HOST, splitAddress(configMap.data.WORKER_HEALTH_ADDRESS!).host, splitAddress(configMap.data.OUTBOX_HEALTH_ADDRESS!).host]).toEqual(['0.0.0.0', '0.0.0.0', '0.0.0.0']);
    expect(splitAddress(configMap.data.WORKER_HEALTH_ADDRESS!).port).not.toBe(splitAddress(configMap.data.WORKER_METRICS_ADDRESS!).port);
    for (const [name, port] of Object.entries(healthPort)) {
      const container = deployment(name).spec.template.spec.containers[0]!;
      const portOf = (p: string | number | undefined) => (typeof p === 'number' ? p : container.ports?.find((cp) => cp.name === p)?.containerPort);
      for (const [probe, route] of [['startupProbe', LIVE_PATH], ['livenessProbe', LIVE_PATH], ['readinessProbe', READY_PATH]] as const) {
        const httpGet = container[probe]?.httpGet;
        expect(httpGet?.path, `${name} ${probe}`).toBe(route);
        expect(portOf(httpGet?.port as string | number), `${name} ${probe} port`).toBe(port);
      }
    }
  });

  it('names only settings lib/config.ts knows, and every secret the platform needs from the Secret', () => {
    const named = new Set<string>(Object.keys(configMap.data));
    for (const [name, container] of containers) {
      for (const env of container.env ?? []) {
        named.add(env.name);
        const ref = env.valueFrom?.secretKeyRef;
        if (ref) {
          expect(ref.name, `${name} ${env.name}`).toBe(secretExample.metadata.name);
          expect(Object.keys(secretExample.stringData), `${name} ${env.name}`).toContain(ref.key);
        }
      }
      for (const from of container.envFrom ?? []) expect(from.configMapRef?.name, name).toBe(configMap.metadata.name);
      expect(container.env?.map((e) => e.name), name).toEqual(expect.arrayContaining(['DATABASE_URL', 'AUTH_JWT_SECRET', 'DESTINATION_KEYS', 'OUTBOX_WEBHOOK_SECRET']));
    }
    for (const key of Object.keys(secretExample.stringData)) named.add(key);
    expect([...named].filter((key) => !(key in settings))).toEqual([]);
    expect(configMap.data.NODE_ENV).toBe('production');
  });

  it('runs as non-root with a read-only root filesystem, no privilege escalation, and bounded resources', () => {
    for (const [name, spec] of podSpecs) {
      expect(spec.securityContext?.runAsNonRoot, name).toBe(true);
      for (const container of spec.containers) {
        expect(container.securityContext, name).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        expect(container.resources?.requests, name).toMatchObject({ cpu: expect.anything(), memory: expect.anything() });
        expect(container.resources?.limits?.memory, name).toBeDefined();
      }
    }
  });

  it('selects real pods: each Service and PodDisruptionBudget matches a Deployment, on ports its container names', () => {
    const matches = (selector: Record<string, string>) => deployments.filter((d) => Object.entries(selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
    for (const d of deployments) expect(matches(d.spec.selector.matchLabels), d.metadata.name).toEqual([d]);
    for (const service of byKind<{ spec: { selector: Record<string, string>; ports: { targetPort: string }[] } }>('Service')) {
      const [target] = matches(service.spec.selector);
      expect(target, service.metadata.name).toBeDefined();
      for (const port of service.spec.ports) expect(target!.spec.template.spec.containers[0]!.ports?.map((p) => p.name), service.metadata.name).toContain(port.targetPort);
    }
    const budgets = byKind<{ spec: { selector: { matchLabels: Record<string, string> }; minAvailable: number } }>('PodDisruptionBudget');
    expect(budgets.map((b) => matches(b.spec.selector.matchLabels)[0]?.metadata.name).sort()).toEqual(['api', 'worker']);
    for (const b of budgets) expect(b.spec.minAvailable).toBeLessThan(matches(b.spec.selector.matchLabels)[0]!.spec.replicas);
  });
});

describe('deploy/k8s/temporal-values.yaml (Temporal\'s official Helm chart)', () => {
  const values = parse(fs.readFileSync(path.join(dir, 'temporal-values.yaml'), 'utf8')) as {
    server: { image: { tag: string }; config: { persistence: { defaultStore: string; visibilityStore: string; datastores: Record<string, { sql: { pluginName: string; databaseName: string; existingSecret?: string; password?: string } }> }; namespaces: { create: boolean; namespace: { name: string }[] } } };
    admintools: { image: { tag: string } };
    web: { image: { tag: string } };
    extraObjects: string[];
  };

  it('persists to PostgreSQL (history and SQL visibility) with the password from a Secret, and creates the namespace the platform uses', () => {
    const { persistence, namespaces } = values.server.config;
    for (const store of [persistence.defaultStore, persistence.visibilityStore]) {
      expect(persistence.datastores[store]!.sql.pluginName).toMatch(/^postgres12/);
      expect(persistence.datastores[store]!.sql.existingSecret).toBeDefined();
      expect(persistence.datastores[store]!.sql.password).toBeUndefined();
    }
    expect(persistence.datastores[persistence.defaultStore]!.sql.databaseName).toBe('temporal');
    expect(persistence.datastores[persistence.visibilityStore]!.sql.databaseName).toBe('temporal_visibility');
    expect(namespaces.create).toBe(true);
    expect(namespaces.namespace.map((n) => n.name)).toContain(settings.TEMPORAL_NAMESPACE.default);
    expect([values.server.image.tag, values.admintools.image.tag, values.web.image.tag]).toEqual([TEMPORAL_SERVER_VERSION.slice(1), TEMPORAL_SERVER_VERSION.slice(1), TEMPORAL_UI_VERSION.slice(1)]);
  });

  it('registers every custom search attribute of the platform, in a valid Job the chart renders', () => {
    expect(values.extraObjects).toHaveLength(1);
    const job = parse(values.extraObjects[0]!) as K8sObject & { spec: { template: { spec: IPodSpec } } };
    expect(() => new Job(job as never).validate()).not.toThrow();
    const script = job.spec.template.spec.containers[0]!.args!.join(' ');
    for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) expect(script).toContain(`${name}=${type}`);
    expect(script).toContain(`--namespace ${settings.TEMPORAL_NAMESPACE.default}`);
    expect(job.spec.template.spec.containers[0]!.image).toBe(`temporalio/admin-tools:${TEMPORAL_SERVER_VERSION.slice(1)}`);
  });

  it('puts the frontend where the platform looks for it (release `temporal`, namespace `temporal`)', () => {
    expect(configMap.data.TEMPORAL_ADDRESS).toBe('temporal-frontend.temporal.svc.cluster.local:7233');
  });
});
