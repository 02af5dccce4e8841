// `npm start`. At this stage of the project: build both plugins, provision nginx + njs, prove the
// nginx bundle picks in real njs, and say what exists and what comes next. The live demo (real
// nginx in front of emulated LLM replicas, with a terminal view) replaces this with the benchmark work.

import path from 'node:path';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { REPO_ROOT, build } from './build.js';
import { ensureNginx } from './fetch-nginx.js';

const relative = (file) => path.relative(REPO_ROOT, file);

async function main() {
  const bundles = await build();
  const env = await ensureNginx();
  for (const bundle of bundles) console.log(`built ${relative(bundle.outfile)} (${(bundle.bytes / 1024).toFixed(1)} KiB)`);
  console.log(`nginx ${env.nginxVersion} + njs ${env.njsVersion} ready (${env.source})`);

  // One real pick in the real njs interpreter, from the same bundle nginx will load.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-balancer-start-'));
  try {
    fs.copyFileSync(path.join(REPO_ROOT, 'dist', 'nginx', 'llm_balancer.js'), path.join(dir, 'llm_balancer.js'));
    // The example balancer file through the real generator: it validates and writes the JSON nginx preloads.
    const example = path.join(dir, 'balancer.yaml');
    fs.copyFileSync(path.join(REPO_ROOT, 'plugins', 'nginx', 'example', 'balancer.yaml'), example);
    const conf = execFileSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'llm-balancer.js'), 'nginx-config', example], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    console.log(`generated an nginx config for plugins/nginx/example/balancer.yaml (${conf.split('\n').length} lines)`);
    const preloaded = fs.readFileSync(path.join(dir, 'llm-balancer.json'), 'utf8');
    fs.writeFileSync(
      path.join(dir, 'demo.js'),
      `import m from 'llm_balancer.js';\nconsole.log(m.pickForTest(${JSON.stringify(preloaded)}, '{}'));\n`,
    );
    const out = execFileSync(env.njsArgv[0], env.njsArgv.slice(1).concat(['-p', dir, path.join(dir, 'demo.js')]), { encoding: 'utf8' });
    console.log(`njs ${env.njsVersion} picked: ${out.trim()}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  console.log(`
What exists now: the strategy core (shared/), its config schema, the NGINX module and its config
generator (npx llm-balancer nginx-config), the Kong plugin bundle, and the benchmarks
(npm run bench:core, npm run bench:gateway). Next: the Kong plugin reading targets from the Admin
API, then \`npm start\` as a live demo in front of emulated LLM replicas. See README.md.`);
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
