// Kong's side of the plugin-server protocol lives in testbed/lib/kong-harness.ts (the shootout's Kong
// gateway uses it too); the specs import it from here.
export * from '../../testbed/lib/kong-harness';

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KONG_OUTFILE } from '../../build/build.js';
import { KongRpc, KongSide, startPluginServer } from '../../testbed/lib/kong-harness';
import type { PluginServer } from '../../testbed/lib/kong-harness';

/** The built Kong plugin in a real kong-js-pluginserver, with Kong's side connected to it. */
export interface BuiltPlugin {
  server: PluginServer;
  kong: KongSide;
  /** Closes the connection, stops the server, removes the plugin directory. */
  stop(): Promise<void>;
}

/** Copies dist/kong/llm-balancer.js into a fresh plugin directory and starts the real plugin server on it. */
export async function startBuiltPlugin(label: string): Promise<BuiltPlugin> {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-' + label + '-'));
  fs.copyFileSync(KONG_OUTFILE, path.join(dir, path.basename(KONG_OUTFILE)));
  let server: PluginServer | null = null;
  try {
    server = await startPluginServer(dir);
    const rpc = await KongRpc.connect(server.socketPath);
    const started = server;
    return {
      server: started,
      kong: new KongSide(rpc),
      async stop() {
        rpc.close();
        await started.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (server !== null) await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
