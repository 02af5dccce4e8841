// `npm start`: build both plugins, provision nginx + njs, then run the live demo (testbed/demo/):
// real nginx with the njs module in front of four emulated LLM replicas, gentle open-loop demo
// traffic and a live view per replica. `npm start -- --help` lists the flags (strategy, replicas,
// rate, --no-traffic, port, time scale, duration). Ctrl-C stops everything it started.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, build, buildNodeModule } from './build.js';
import { ensureNginx } from './fetch-nginx.js';

// Two folders below the repository root, like testbed/lib/nginx-env.ts: the bundled demo finds the
// repository (dist/, .cache/nginx/env.json) relative to its own location.
const DEMO_BUNDLE = path.join(REPO_ROOT, '.cache', 'start', 'demo.mjs');

async function main() {
  const bundles = await build();
  const env = await ensureNginx();
  for (const bundle of bundles) console.log(`built ${path.relative(REPO_ROOT, bundle.outfile)} (${(bundle.bytes / 1024).toFixed(1)} KiB)`);
  console.log(`nginx ${env.nginxVersion} + njs ${env.njsVersion} ready (${env.source})`);
  await buildNodeModule(path.join(REPO_ROOT, 'testbed', 'demo', 'cli.ts'), DEMO_BUNDLE);
  const demo = await import(pathToFileURL(DEMO_BUNDLE).href);
  process.exitCode = await demo.main(process.argv.slice(2));
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
