import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../lib/config';

/**
 * A run that saves its report in `--results` (`chaos/main.ts`, `dr/main.ts`), started as a user starts it: its exit
 * code, output, the JSON report it saved and every file it wrote there.
 */
export function runReportingScript(entry: string, resultsDir: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; report: any; files: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, '--results', resultsDir, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    // Past its time the run is stopped as a user stops it (it stops the processes it started), then killed.
    const stop = setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 45_000).unref();
    }, timeoutMs);
    child.on('exit', () => clearTimeout(stop));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      const files = fs.readdirSync(resultsDir);
      const json = files.find((f) => f.endsWith('.json'));
      resolve({ code, stdout, stderr, report: json ? JSON.parse(fs.readFileSync(path.join(resultsDir, json), 'utf8')) : undefined, files });
    });
  });
}
