// `npm run bench:core`: picks per second of every strategy at 4, 16 and 64 replicas, under Node
// (where the Kong plugin runs) and under the real njs interpreters (where the NGINX module runs):
// njs 0.8.9's engine, and njs 1.0's QuickJS when the forky nginx could be provisioned.
// The same source (bench/core-cases.ts) is bundled for both engines. Prints a table and writes
// bench/results/core.json. A benchmark, not a test: nothing here asserts a speed.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, buildNjsBundle, buildNodeModule } from '../build/build.js';
import { ensureNginx } from '../build/fetch-nginx.js';

const WORK = path.join(REPO_ROOT, '.cache', 'bench');
const RESULTS = path.join(REPO_ROOT, 'bench', 'results', 'core.json');
// Iterations per case: enough for ~0.2 s or more per loop on this 2-core machine.
const NODE_ITERATIONS = { 4: 400000, 16: 200000, 64: 50000 };
const NJS_ITERATIONS = { 4: 40000, 16: 20000, 64: 5000 };

async function nodeResults() {
  const outfile = path.join(WORK, 'core-node.mjs');
  await buildNodeModule(path.join(REPO_ROOT, 'bench', 'core-cases.ts'), outfile);
  const module = pathToFileURL(outfile).href;
  const { STRATEGIES } = await import(module);
  const results = [];
  for (const strategy of STRATEGIES) {
    const worker = new Worker(new URL('./core-worker.js', import.meta.url), { workerData: { module, strategy, iterations: NODE_ITERATIONS } });
    const [rows] = await Promise.all([once(worker, 'message'), once(worker, 'exit')]);
    results.push(...rows[0]);
  }
  return results;
}

/**
 * Every strategy's rows in one interpreter: `argv` runs the njs CLI (with `-n QuickJS -m` for
 * QuickJS). One process per strategy, as the Node side uses one isolate per strategy.
 */
function interpreterResults(argv, strategies, bundle) {
  const runner = path.join(WORK, 'run-core-njs.js');
  const results = [];
  for (const strategy of strategies) {
    fs.writeFileSync(
      runner,
      `import bench from '${path.basename(bundle)}';\n` +
        `var iterations = ${JSON.stringify(NJS_ITERATIONS)};\n` +
        `console.log(JSON.stringify(bench.runStrategy(${JSON.stringify(strategy)}, function (n) { return iterations[n]; }, function () { return Date.now(); })));\n`,
    );
    const stdout = execFileSync(argv[0], argv.slice(1).concat(['-p', WORK, runner]), { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = stdout.trim().split('\n').filter((l) => l.startsWith('[')).pop();
    if (!line) throw new Error('njs printed no results:\n' + stdout);
    results.push(...JSON.parse(line));
  }
  return results;
}

/**
 * The njs engine of Debian stable's njs (0.8.9), and QuickJS of njs 1.0 (forky's, the engine
 * nginx recommends now) when that nginx generation could be provisioned (null otherwise).
 */
async function njsResults() {
  const env = await ensureNginx();
  const bundle = path.join(WORK, 'core_njs.js');
  await buildNjsBundle(path.join(REPO_ROOT, 'bench', 'core-njs-entry.ts'), bundle);
  const strategies = (await import(pathToFileURL(path.join(WORK, 'core-node.mjs')).href)).STRATEGIES;
  const results = interpreterResults(env.njsArgv, strategies, bundle);
  let quickjs = null;
  try {
    const forky = await ensureNginx({ generation: 'forky', quiet: true });
    if (forky.njsQjsArgv) quickjs = { results: interpreterResults(forky.njsQjsArgv, strategies, bundle), version: forky.njsVersion };
  } catch (error) {
    console.error('bench:core: no QuickJS column (' + (error instanceof Error ? error.message : String(error)) + ')');
  }
  return { results, version: env.njsVersion, quickjs };
}

function formatRate(perSecond) {
  if (perSecond >= 1e6) return (perSecond / 1e6).toFixed(2) + ' M';
  if (perSecond >= 1e3) return (perSecond / 1e3).toFixed(1) + ' k';
  return String(perSecond);
}

function table(node, njs, quickjs) {
  const header = ['strategy', 'replicas', 'Node picks/s', 'Node cycles/s', 'njs picks/s', 'njs cycles/s', 'Node/njs'];
  if (quickjs) header.push('QuickJS picks/s', 'QuickJS cycles/s', 'QuickJS µs/pick');
  const rows = node.map((n, i) => {
    const j = njs[i];
    const row = [n.strategy, String(n.replicas), formatRate(n.picksPerSecond), formatRate(n.cyclesPerSecond), formatRate(j.picksPerSecond), formatRate(j.cyclesPerSecond), (n.picksPerSecond / j.picksPerSecond).toFixed(1) + 'x'];
    if (quickjs) row.push(formatRate(quickjs[i].picksPerSecond), formatRate(quickjs[i].cyclesPerSecond), (1e6 / quickjs[i].picksPerSecond).toFixed(1));
    return row;
  });
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells) => '| ' + cells.map((cell, c) => cell.padEnd(widths[c])).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)].join('\n');
}

async function main() {
  fs.mkdirSync(WORK, { recursive: true });
  const node = await nodeResults();
  const njs = await njsResults();
  console.log('Core pick throughput (a pick = filter + strategy + failover list of 2; a cycle = pick + onStart + onEnd)\n');
  console.log(table(node, njs.results, njs.quickjs === null ? null : njs.quickjs.results));
  const simple = node.filter((r) => r.replicas === 16 && ['round-robin', 'weighted-round-robin', 'least-connections'].includes(r.strategy));
  console.log(`\nTarget: >= 1 M picks/s for the simple strategies at 16 replicas under Node: ${simple.map((r) => `${r.strategy} ${formatRate(r.picksPerSecond)}`).join(', ')}`);
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(
    RESULTS,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, njs: njs.version, quickjsNjs: njs.quickjs === null ? null : njs.quickjs.version },
        node,
        njs: njs.results,
        quickjs: njs.quickjs === null ? null : njs.quickjs.results,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${path.relative(REPO_ROOT, RESULTS)}`);
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
