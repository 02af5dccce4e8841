// The NGINX bundle loads and runs in the real njs 0.8.9 interpreter: the final word on the njs
// subset (lint rules only approximate it). Builds nothing itself: `npm test`'s pretest runs
// build/build.js and build/fetch-nginx.js.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildNjsBundle, NGINX_OUTFILE } from '../build/build.js';
import { loadNginxEnv, REPO_ROOT, runNjs, runWithBundle } from './helpers/nginx-env';
import { configOf } from './helpers/core';
import { preloadedConfig } from '../plugins/nginx/generator/generate';

const ADDRESSES = ['127.0.0.1:9001', '127.0.0.1:9002'];
// What the generator preloads: a config validated in Node (the bundle carries no validator).
const CONFIG = JSON.stringify(
  preloadedConfig(configOf({ strategy: 'round-robin', replicas: ADDRESSES.map((address) => ({ address })) }), { plus_api: null, consumer_variable: 'remote_user' }),
);
const PICKS = 4;

function requireBundle(): string {
  if (!fs.existsSync(NGINX_OUTFILE)) {
    throw new Error(`${path.relative(REPO_ROOT, NGINX_OUTFILE)} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  }
  return NGINX_OUTFILE;
}

describe('njs CLI', () => {
  it('is provisioned at version 0.8.x or newer', () => {
    const env = loadNginxEnv();
    const parts = env.njsVersion.split('.').map(Number);
    expect(parts[0] > 0 || parts[1] >= 8, env.njsVersion).toBe(true);
  });
});

describe('dist/nginx/llm_balancer.js in the real njs', () => {
  it('carries no config validator or schema (njs evaluates the whole bundle on every request)', () => {
    const text = fs.readFileSync(requireBundle(), 'utf8');
    expect(text).not.toContain('must be one of');
    expect(text).not.toContain('Options of the least-connections strategy');
  });

  it('keeps the cold handlers out of the top level: inside llmBalancerCold(), which no request calls', () => {
    // The njs engine instantiates the top level for every request's VM: status, metrics, the
    // js_periodic tasks and their helpers cost there only when defined inside the function.
    const text = fs.readFileSync(requireBundle(), 'utf8');
    const cold = text.indexOf('\nfunction llmBalancerCold() {');
    expect(cold).toBeGreaterThan(0);
    expect(text.indexOf('\nexport default {')).toBeLessThan(cold);
    // Defined only in the cold part (the top level has one-line forwarders of the handlers).
    for (const name of ['function statusDocument(', 'function prometheusText(', 'function createMemoryStore(', 'async function healthCheck(', 'async function scrapeMetrics(', 'async function discoverModels(', 'async function syncPeers(']) {
      expect(text.indexOf(name), name).toBeGreaterThan(cold);
    }
    // The request path stays at the top level.
    for (const name of ['route(r)', 'pick(r)', 'outcome(r)', 'createBalancer(']) expect(text.indexOf('function ' + name), name).toBeLessThan(cold);
  });

  it('loads and exports pickForTest through `export default`', async () => {
    const r = await runWithBundle(requireBundle(), "console.log(typeof m + ' ' + typeof m.pickForTest);");
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('object function');
  });

  it(`picks one of the configured replicas (${PICKS} calls)`, async () => {
    const body = [
      `var config = ${JSON.stringify(CONFIG)};`,
      `for (var i = 0; i < ${PICKS}; i++) {`,
      "  console.log(m.pickForTest(config, '{}'));",
      '}',
    ].join('\n');
    const r = await runWithBundle(requireBundle(), body);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(PICKS);
    for (const line of lines) {
      const result = JSON.parse(line) as { ok: boolean; replicas: { address: string }[] };
      expect(result.ok, line).toBe(true);
      expect(ADDRESSES).toContain(result.replicas[0].address);
    }
  });
});

describe('the njs check is real', () => {
  let dir = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-njs-spec-'));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a bundle of njs-safe code loads and runs', async () => {
    const out = path.join(dir, 'ok.js');
    await buildNjsBundle(path.join(REPO_ROOT, 'spec/fixtures/njs-entry.ts'), out);
    const r = await runWithBundle(out, 'console.log(m.hello());');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('hi hi');
  });

  // The njs engine's limitation (QuickJS has classes): checked on the njs engine of whichever
  // nginx the run targets; the subset lint keeps the bundle loadable by both.
  it('a bundle containing `class` fails to load with a SyntaxError on the njs engine', async () => {
    const out = path.join(dir, 'class.js');
    await buildNjsBundle(path.join(REPO_ROOT, 'spec/fixtures/njs-class-entry.ts'), out);
    expect(fs.readFileSync(out, 'utf8')).toMatch(/\bclass\b/);
    const r = await runWithBundle(out, "console.log('loaded ' + m.next());", { engine: 'njs' });
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('loaded');
    expect(r.stderr).toContain('SyntaxError');
  });

  it('a runtime exception exits non-zero', async () => {
    const r = await runNjs("throw new Error('boom');");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('boom');
  });

  it('the build refuses named exports, which njs cannot load', async () => {
    const out = path.join(dir, 'named.js');
    await expect(buildNjsBundle(path.join(REPO_ROOT, 'spec/fixtures/njs-named-export-entry.ts'), out)).rejects.toThrow(/export default/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
