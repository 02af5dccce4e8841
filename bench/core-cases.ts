// The core micro-benchmark, written in the njs language subset so the SAME code runs under Node
// and under the real njs interpreter (bench/core.js bundles it for both and prints the table).
// Each case: one strategy, N replicas with mixed weights, in-flight counts and latency history
// already in the store, then a timed loop of picks, and a timed loop of whole request cycles
// (pick + onStart + onEnd). Timing uses the injected `now` (performance.now / Date.now).
// bench/core.js runs each strategy in a fresh engine (a worker thread, an njs process), so one
// strategy's JIT history cannot slow the next.

import { createBalancer, createMemoryStore, createSeededRandom, replicasFromConfig, validate, formatErrors } from '../shared/index';
import type { Replica } from '../shared/index';

export interface CaseResult {
  strategy: string;
  replicas: number;
  picksPerSecond: number;
  cyclesPerSecond: number;
}

export const STRATEGIES = ['round-robin', 'weighted-round-robin', 'least-connections', 'response-time', 'consistent-hash', 'hybrid'];
export const SIZES = [4, 16, 64];
const ROUNDS = 5;

function median(values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}


function replicaList(n: number): Array<{ address: string; weight: number }> {
  const list: Array<{ address: string; weight: number }> = [];
  // A realistic heterogeneous fleet: fast cards weight 1, slower ones 0.8 (the seed's example).
  for (let i = 0; i < n; i++) list.push({ address: '10.1.' + Math.floor(i / 250) + '.' + ((i % 250) + 1) + ':8000', weight: i % 2 === 0 ? 1 : 0.8 });
  return list;
}

export function runCase(strategy: string, n: number, iterations: number, now: () => number): CaseResult {
  const checked = validate({
    strategy: strategy,
    retries: 1,
    replicas: replicaList(n),
    hash_key: { source: 'header', name: 'x-session-id' },
  });
  if (!checked.ok) throw new Error(formatErrors(checked.errors));
  let fakeTime = 1000000;
  const clock = { now: () => fakeTime };
  const random = createSeededRandom(12345);
  const balancer = createBalancer(checked.config, { store: createMemoryStore(), clock: clock, random: random });
  const replicas: Replica[] = replicasFromConfig(checked.config);
  // Warm state: some requests in flight everywhere, a latency history for every replica.
  for (let i = 0; i < n * 4; i++) {
    const id = replicas[i % n].id;
    balancer.onStart(id);
    if (i % 3 !== 0) balancer.onEnd(replicas, id, { status: 200, latencyMs: 50 + ((i * 37) % 400), ttftMs: 20 });
    fakeTime += 5;
  }
  const keys: Array<{ headers: Record<string, string> }> = [];
  for (let i = 0; i < 256; i++) keys.push({ headers: { 'x-session-id': 'session-' + i } });

  // Each loop runs in ROUNDS rounds; the median round's rate is reported, so one GC pause or a
  // neighbour's burst on this 2-core machine does not decide the number.
  let sink = 0;
  const perRound = Math.max(1, Math.floor(iterations / ROUNDS));
  const pickRates: number[] = [];
  const cycleRates: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const pickStart = now();
    for (let i = 0; i < perRound; i++) {
      const result = balancer.pick(replicas, keys[i & 255]);
      if (result.ok) sink += result.replicas.length;
    }
    pickRates.push(perRound / ((now() - pickStart) / 1000));

    const cycleStart = now();
    for (let i = 0; i < perRound; i++) {
      const result = balancer.pick(replicas, keys[i & 255]);
      if (!result.ok) continue;
      const id = result.replicas[0].id;
      balancer.onStart(id);
      fakeTime += 1;
      balancer.onEnd(replicas, id, { status: 200, latencyMs: 40 + (i % 200), ttftMs: 15 });
    }
    cycleRates.push(perRound / ((now() - cycleStart) / 1000));
  }
  if (sink < 0) throw new Error('unreachable: keeps the pick loop from being optimised away');
  return {
    strategy: strategy,
    replicas: n,
    picksPerSecond: Math.round(median(pickRates)),
    cyclesPerSecond: Math.round(median(cycleRates)),
  };
}

/** Every size for one strategy, `iterationsFor(n)` iterations each. */
export function runStrategy(strategy: string, iterationsFor: (n: number) => number, now: () => number): CaseResult[] {
  const results: CaseResult[] = [];
  for (let z = 0; z < SIZES.length; z++) results.push(runCase(strategy, SIZES[z], iterationsFor(SIZES[z]), now));
  return results;
}
