#!/usr/bin/env node
// The llm-balancer command (`npx llm-balancer nginx-config balancer.yaml -o llm/nginx.conf`).
// The CLI itself is bundled by `npm run build` (npm test and npm start build it too).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = new URL('../dist/cli/llm-balancer.js', import.meta.url);
if (!fs.existsSync(fileURLToPath(bundle))) {
  process.stderr.write('llm-balancer: dist/cli/llm-balancer.js is missing: run `npm run build` first\n');
  process.exit(2);
}
await import(bundle.href);
