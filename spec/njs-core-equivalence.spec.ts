// The strategy core behaves IDENTICALLY under njs (where the NGINX module runs) and Node (where
// the Kong plugin runs): the same scripted run of every strategy, bundled for njs and run in the
// real njs 0.8.9 interpreter, must print the same transcript as under Node, pick for pick.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildNjsBundle } from '../build/build.js';
import { simulate } from './fixtures/core-simulation';
import { REPO_ROOT, runWithBundle } from './helpers/nginx-env';

const REPLICAS = [
  { address: '10.0.0.1:8000', weight: 1 },
  { address: '10.0.0.2:8000', weight: 1 },
  { address: '10.0.0.3:8000', weight: 0.8 },
  { address: '10.0.0.4:8000', weight: 0.8, id: 'slow-card' },
  { address: '[::1]:8000', weight: 2 },
];

const CASES: Array<[string, Record<string, unknown>]> = [
  ['round-robin', { strategy: 'round-robin' }],
  ['weighted-round-robin', { strategy: 'weighted-round-robin' }],
  ['least-connections', { strategy: 'least-connections' }],
  ['least-connections (power of two)', { strategy: 'least-connections', least_connections: { choices: 2 } }],
  ['response-time', { strategy: 'response-time', response_time: { half_life_s: 2 } }],
  ['consistent-hash (header)', { strategy: 'consistent-hash', hash_key: { source: 'header', name: 'x-user' } }],
  ['consistent-hash (body, tight bound)', { strategy: 'consistent-hash', hash_key: { source: 'body', name: 'user' }, consistent_hash: { balance_factor: 1 } }],
  ['hybrid', { strategy: 'hybrid', hash_key: { source: 'header', name: 'x-user' }, hybrid: { max_concurrent: 3 } }],
  ['least-tokens', { strategy: 'least-tokens', least_tokens: { max_output_tokens: 800 } }],
  ['prefix-affinity', { strategy: 'prefix-affinity', prefix_affinity: { block_tokens: 16, table_slots: 64, balance_abs: 4 } }],
  // min_match 1 and a tiny table: most picks miss the table and go through the rendezvous owner.
  ['prefix-affinity (rendezvous placement of unknown prefixes)', { strategy: 'prefix-affinity', prefix_affinity: { block_tokens: 16, table_slots: 16, min_match: 1, balance_abs: 4 } }],
  ['least-tokens (least-load placement)', { strategy: 'least-tokens', prefix_affinity: { block_tokens: 16, table_slots: 16, placement: 'least-load' } }],
  ['llm (no replica metrics: in-flight, tokens, prefix)', { strategy: 'llm', prefix_affinity: { block_tokens: 16, table_slots: 64 } }],
  ['consistent-hash falling back to least-tokens', { strategy: 'consistent-hash', hash_key: { source: 'header', name: 'x-none' }, consistent_hash: { fallback: 'least-tokens' } }],
];
const STEPS = 400;

let dir = '';
let bundle = '';
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-equivalence-'));
  bundle = path.join(dir, 'simulation.js');
  await buildNjsBundle(path.join(REPO_ROOT, 'spec', 'fixtures', 'core-simulation-njs.ts'), bundle);
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('the core under njs and under Node', () => {
  it.each(CASES)('%s: the same transcript, pick for pick', async (_name, options) => {
    const config = JSON.stringify({
      retries: 2,
      replicas: REPLICAS,
      passive_health: { consecutive_failures: 2, base_ejection_s: 5, max_ejected_percent: 40 },
      ...options,
    });
    const expected = simulate(config, STEPS);
    expect(expected.filter((line) => line.startsWith('pick')).length).toBeGreaterThan(STEPS / 3);
    const run = await runWithBundle(bundle, `console.log(JSON.stringify(m.simulate(${JSON.stringify(config)}, ${STEPS})));`);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout.trim())).toEqual(expected);
  });
});
