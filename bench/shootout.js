// `npm run bench`: the strategy shootout (bench/shootout/main.ts explains it).
//   node bench/shootout.js [--quick | --smoke | --nodes] [--out DIR]
// Builds the bundles, provisions nginx and redis-server, then runs the TypeScript through tsx (the emulator child
// process runs the same way). testbed/lib imports build/build.js, which imports esbuild: tsx loads it
// as it is, where a bundle would have to inline esbuild.

import { register } from 'tsx/esm/api';
import { build } from '../build/build.js';
import { ensureNginx } from '../build/fetch-nginx.js';
import { ensureRedis } from '../build/fetch-redis.js';

async function run() {
  await ensureNginx({ quiet: true });
  // The kong+redis node rows (and the smoke run's) start a real redis-server.
  await ensureRedis({ quiet: true });
  await build();
  register();
  const { main } = await import('./shootout/main.ts');
  await main(process.argv.slice(2));
}

run().catch((error) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
