import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { workflowBundleOptions } from '../../apps/worker/create-worker';

/**
 * The workflows as the version before `patchId` ran them: the bundle with that `patched()` answering false. A saga
 * started on it and then run by today's workers is one started before the change was deployed (its history has
 * no marker, so today's `patched()` answers false on it too).
 */
export async function workflowBundleBefore(patchId: string): Promise<{ path: string; remove(): void }> {
  const bundle = await bundleWorkflowCode({
    ...workflowBundleOptions(false),
    logger: new DefaultLogger('WARN'),
    webpackConfigHook: (config) => {
      config.module?.rules?.unshift({ test: /\.ts$/, enforce: 'pre', use: [{ loader: path.join(__dirname, 'unpatch-loader.cjs'), options: { patchId } }] });
      return config;
    },
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-earlier-bundle-'));
  const file = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(file, bundle.code);
  return { path: file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
