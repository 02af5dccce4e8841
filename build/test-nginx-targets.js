#!/usr/bin/env node
// `npm test`'s second part: the specs that run the real nginx + njs again on the other nginx
// targets (testbed/lib/nginx-env.ts nginxTarget, LLMB_NGINX_TARGET). The first part (plain
// `vitest run`) covers trixie/njs: Debian stable's nginx 1.26 + njs 0.8.9, njs engine only.
//   forky/qjs  Debian testing's nginx 1.30 + njs 1.0 with QuickJS, the engine nginx recommends
//              from njs 1.0 on: every real-nginx spec (reused contexts, flushing, the config module)
//   forky/njs  the same nginx with its deprecated njs engine: the specs where the engine's
//              version could matter (the generated config passes nginx -t, routing, streaming,
//              the bundle in the njs CLI)
// A target whose nginx was not provisioned (build/fetch-nginx.js --generation forky --optional
// printed why) is skipped with one line; a failing target fails the run.
//
// Usage: node build/test-nginx-targets.js [--target forky/qjs]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SPEC_DIR = path.join(REPO_ROOT, 'spec');

/** Spec files that start the real nginx or njs (nginx-forky.spec.ts picks its generations itself). */
export function realNginxSpecs(names) {
  return names.filter((name) => /^(nginx|njs)-.*\.spec\.ts$/.test(name) && name !== 'nginx-forky.spec.ts').concat(names.includes('readme-walkthrough.spec.ts') ? ['readme-walkthrough.spec.ts'] : []);
}

const FORKY_NJS = ['nginx-generator.spec.ts', 'nginx-routing.spec.ts', 'nginx-ttft.spec.ts', 'njs-bundle.spec.ts', 'njs-core-equivalence.spec.ts'];

export const TARGETS = [
  { target: 'forky/qjs', generation: 'forky', specs: (names) => realNginxSpecs(names) },
  { target: 'forky/njs', generation: 'forky', specs: (names) => FORKY_NJS.filter((name) => names.includes(name)) },
];

function envPath(generation) {
  return path.join(REPO_ROOT, '.cache', generation === 'trixie' ? 'nginx' : 'nginx-' + generation, 'env.json');
}

function main(argv) {
  const only = argv.indexOf('--target') >= 0 ? argv[argv.indexOf('--target') + 1] : null;
  const chosen = TARGETS.filter((t) => only === null || t.target === only);
  if (chosen.length === 0) {
    console.error('usage: node build/test-nginx-targets.js [--target ' + TARGETS.map((t) => t.target).join('|') + ']');
    return 2;
  }
  const names = fs.readdirSync(SPEC_DIR).sort();
  for (const t of chosen) {
    if (!fs.existsSync(envPath(t.generation))) {
      console.log(`nginx target ${t.target}: skipped, nginx ${t.generation} is not provisioned (node build/fetch-nginx.js --generation ${t.generation})`);
      continue;
    }
    const files = t.specs(names).map((name) => path.join('spec', name));
    console.log(`\nnginx target ${t.target}: ${files.length} spec files`);
    const run = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...files], {
      cwd: REPO_ROOT,
      stdio: 'inherit',
      env: Object.assign({}, process.env, { LLMB_NGINX_TARGET: t.target }),
    });
    if (run.status !== 0) {
      console.error(`nginx target ${t.target}: FAILED`);
      return run.status === null ? 1 : run.status;
    }
  }
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
