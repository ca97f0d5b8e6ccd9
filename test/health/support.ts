import net from 'node:net';
import { repoRoot } from '../../lib/config';
import { startProcess, type ManagedProcess } from '../../lib/processes';
import { waitUntil } from '../../lib/wait';

/**
 * A TCP proxy in front of PostgreSQL: `cut()` closes it and drops every connection through it (the database
 * is unreachable for whoever uses the proxy's port), `restore()` listens again on the same port.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => (socket === client ? upstream : client).destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        resolve((s.address() as net.AddressInfo).port);
      });
    });
  const port = await listen(0);
  const cut = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise((resolve) => s.close(resolve));
  };
  return { port, cut, restore: async () => void (server ? undefined : await listen(port)), close: cut };
}

/** The database URL with its host and port replaced by the proxy's. */
export function throughProxy(databaseUrl: string, port: number): string {
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

export function hostAndPort(databaseUrl: string): { host: string; port: number } {
  const url = new URL(databaseUrl);
  return { host: url.hostname, port: Number(url.port || 5432) };
}

export interface HealthAnswer {
  status: number;
  body: { status: string; service?: string; draining?: boolean; checks?: Record<string, { status: 'up' | 'down'; error?: string }> };
}

export async function getHealth(url: string): Promise<HealthAnswer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: (await res.json()) as HealthAnswer['body'] };
}

/** Polls until `url` answers `status` (the last answer is returned, for its body). */
export async function waitForHealth(url: string, status: number, timeoutMs = 90_000): Promise<HealthAnswer> {
  let last: HealthAnswer | undefined;
  await waitUntil(`${url} answering ${status}`, async () => {
    last = await getHealth(url).catch(() => undefined);
    return last?.status === status;
  }, timeoutMs, 200);
  return last!;
}

/**
 * One of the platform's entry points as its own process, as the launcher runs it: `node --import tsx <entry>`
 * from the sources, or `node <entry>` for compiled JavaScript (test/deploy/build.test.ts).
 */
export function startEntryPoint(name: string, entry: string, env: NodeJS.ProcessEnv, output: string[] = []): ManagedProcess {
  const full: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'info', ...env };
  delete full.LAUNCHER_PID;
  const args = entry.endsWith('.ts') ? ['--import', 'tsx', entry] : [entry];
  return startProcess(name, process.execPath, args, { cwd: repoRoot, env: full, onLine: (line) => output.push(line) });
}
