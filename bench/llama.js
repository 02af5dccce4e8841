// `npm run bench:llama`: the strategies in front of two real llama-server replicas
// (bench/llama/main.ts explains it).
//   node bench/llama.js [--quick] [--seed N] [--rate R] [--duration S] [--cache slots|ram]... [--row NAME]... [--out FILE]
// Provisions nginx and llama-server, builds the bundles, then runs the TypeScript through tsx.

import { register } from 'tsx/esm/api';
import { build } from '../build/build.js';
import { ensureLlama } from '../build/fetch-llama.js';
import { ensureNginx } from '../build/fetch-nginx.js';

async function run() {
  await ensureNginx({ quiet: true });
  await ensureLlama({ quiet: true });
  await build();
  register();
  const { main } = await import('./llama/main.ts');
  await main(process.argv.slice(2));
}

run().catch((error) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
