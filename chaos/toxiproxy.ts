/**
 * Toxiproxy (github.com/Shopify/toxiproxy), the fault-injection TCP proxy, built from its Go module at a pinned
 * version into the same cache as Temporal's builds, run as a process of its own, and driven through its HTTP
 * API. The client is a few fetch calls written here: the npm clients of that API are unmaintained, and the
 * chaos run needs four of its endpoints.
 */
import fs from 'node:fs';
import path from 'node:path';
import { killGroup, startProcess, type ManagedProcess } from '../lib/processes';
import { freePort, waitUntil } from '../lib/wait';
import { goCacheDir, goInstall, isExecutable } from '../temporal/go-build';

export const TOXIPROXY_VERSION = 'v2.5.0';

export function ensureToxiproxy(log: (msg: string) => void): string {
  const binary = goCacheDir('toxiproxy', TOXIPROXY_VERSION, 'toxiproxy-server');
  if (!isExecutable(binary)) goInstall({ what: 'Toxiproxy', pkg: 'github.com/Shopify/toxiproxy/v2/cmd/server', version: TOXIPROXY_VERSION, target: binary, log });
  return binary;
}

export interface Toxic {
  name: string;
  type: 'latency' | 'reset_peer' | 'timeout' | 'bandwidth' | 'slow_close' | 'limit_data';
  stream?: 'upstream' | 'downstream';
  toxicity?: number;
  attributes: Record<string, number>;
}

export interface Toxiproxy {
  apiUrl: string;
  /** A TCP proxy listening on a free loopback port in front of `upstream` (host:port); answers its listen address. */
  proxy(name: string, upstream: string): Promise<string>;
  addToxic(proxy: string, toxic: Toxic): Promise<void>;
  removeToxic(proxy: string, toxic: string): Promise<void>;
  /** Every proxy cut at once, with what it holds back (a latency toxic's bytes): SIGKILL of the server, synchronous. */
  kill(): void;
  stop(): Promise<void>;
}

export async function startToxiproxy(dataDir: string, log: (msg: string) => void): Promise<Toxiproxy> {
  const binary = ensureToxiproxy(log);
  const port = await freePort();
  const logFile = fs.createWriteStream(path.join(dataDir, 'toxiproxy.log'));
  const server: ManagedProcess = startProcess('toxiproxy', binary, ['-host', '127.0.0.1', '-port', String(port)], { onLine: (line) => logFile.write(`${line}\n`) });
  const apiUrl = `http://127.0.0.1:${port}`;
  await waitUntil('toxiproxy', async () => (await fetch(`${apiUrl}/version`)).ok, 30_000, 100);

  async function call(method: string, route: string, body?: unknown): Promise<void> {
    const res = await fetch(`${apiUrl}${route}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) throw new Error(`toxiproxy ${method} ${route}: ${res.status} ${await res.text()}`);
  }

  return {
    apiUrl,
    async proxy(name, upstream) {
      const listen = `127.0.0.1:${await freePort()}`;
      // Replaces a proxy of that name (the stack is wired again when its first ports were taken).
      await fetch(`${apiUrl}/proxies/${name}`, { method: 'DELETE' });
      await call('POST', '/proxies', { name, listen, upstream, enabled: true });
      return listen;
    },
    addToxic: (proxy, toxic) => call('POST', `/proxies/${proxy}/toxics`, { stream: 'downstream', toxicity: 1, ...toxic }),
    removeToxic: (proxy, toxic) => call('DELETE', `/proxies/${proxy}/toxics/${toxic}`),
    kill: () => void killGroup(server.child.pid!),
    async stop() {
      await server.stop(5_000);
      logFile.end();
    },
  };
}
