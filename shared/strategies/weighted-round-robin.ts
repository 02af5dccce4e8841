// weighted-round-robin — deterministic, smooth rotation in proportion to weight.
// Algorithm: nginx's smooth weighted round robin (each step every replica gains its weight, the
// richest is picked and pays the total) generates one cycle of sum(weights) picks; a single shared
// counter indexes into that cycle. Over ANY window of sum(weights) consecutive picks each replica
// gets exactly its weight, picks are interleaved (5,5,4,4 gives a b c d a b c d ... not aaaaabbbbb),
// and because the only state is one atomic counter, the shares stay exact across nginx worker
// processes (nginx's own per-worker state cannot promise that without its upstream zone lock).
// Weights: fractional weights (the seed's 1.0, 1.0, 0.8, 0.8) are scaled to integers at the
// finest of 1, 0.1, 0.01, 0.001 that represents them, then divided by their gcd (→ 5, 5, 4, 4).
// A cycle longer than MAX_CYCLE is scaled down proportionally (each weight keeps at least 1).
// Cost: O(position × N) to replay the cycle up to the counter; memoised per weight vector where
// module state persists (Node), recomputed per request under njs, where cycles are short in practice.
// Reads: weight. Options: none.

import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { memoise } from '../memo';

/** Longest cycle we replay. 1000 picks keeps 0.1% resolution between weights and bounds the work. */
const MAX_CYCLE = 1000;

function greatestCommonDivisor(a: number, b: number): number {
  while (b !== 0) {
    const r = a % b;
    a = b;
    b = r;
  }
  return a;
}

function isNearInteger(value: number): boolean {
  return Math.abs(value - Math.round(value)) < 1e-9;
}

/** Positive integer weights with the same ratios (within 0.1%), reduced by their gcd. */
export function integerWeights(weights: number[]): number[] {
  let scale = 1;
  for (let s = 1; s <= 1000; s *= 10) {
    scale = s;
    let exact = true;
    for (let i = 0; i < weights.length; i++) {
      if (!isNearInteger(weights[i] * s)) exact = false;
    }
    if (exact) break;
  }
  let ints: number[] = [];
  for (let i = 0; i < weights.length; i++) ints.push(Math.max(1, Math.round(weights[i] * scale)));
  let sum = 0;
  for (let i = 0; i < ints.length; i++) sum += ints[i];
  if (sum > MAX_CYCLE) {
    const shrunk: number[] = [];
    for (let i = 0; i < ints.length; i++) shrunk.push(Math.max(1, Math.round((ints[i] * MAX_CYCLE) / sum)));
    ints = shrunk;
  }
  let divisor = ints[0];
  for (let i = 1; i < ints.length; i++) divisor = greatestCommonDivisor(divisor, ints[i]);
  const reduced: number[] = [];
  for (let i = 0; i < ints.length; i++) reduced.push(ints[i] / divisor);
  return reduced;
}

/** One full cycle of nginx's smooth weighted round robin, as candidate indexes. */
export function smoothCycle(weights: number[]): number[] {
  let total = 0;
  const current: number[] = [];
  for (let i = 0; i < weights.length; i++) {
    total += weights[i];
    current.push(0);
  }
  const cycle: number[] = [];
  for (let step = 0; step < total; step++) {
    let best = 0;
    for (let i = 0; i < weights.length; i++) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    cycle.push(best);
  }
  return cycle;
}

// The cycle of the previous call: almost every pick sees the same weights as the one before,
// and comparing them is far cheaper than building the memo key.
let lastWeights: number[] = [];
let lastCycle: number[] = [];

function sameWeights(candidates: ReplicaView[]): boolean {
  if (candidates.length !== lastWeights.length) return false;
  for (let i = 0; i < candidates.length; i++) {
    if (candidates[i].weight !== lastWeights[i]) return false;
  }
  return true;
}

function cycleFor(candidates: ReplicaView[]): number[] {
  if (sameWeights(candidates)) return lastCycle;
  const weights: number[] = [];
  for (let i = 0; i < candidates.length; i++) weights.push(candidates[i].weight);
  lastWeights = weights;
  lastCycle = memoisedCycle(weights);
  return lastCycle;
}

/** Cycles by weight vector ("5,5,4,4"); 64 distinct healthy sets cover any realistic churn. */
const cycleOfSignature = memoise((signature: string) => {
  const weights = signature.split(',');
  const numbers: number[] = [];
  for (let i = 0; i < weights.length; i++) numbers.push(parseFloat(weights[i]));
  return smoothCycle(integerWeights(numbers));
}, 64);

function memoisedCycle(weights: number[]): number[] {
  return cycleOfSignature(weights.join(','));
}

export function createWeightedRoundRobin(): Strategy {
  return {
    name: 'weighted-round-robin',
    reads: { inFlight: false, latency: false, hashKey: false, tokens: false, body: false, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const cycle = cycleFor(candidates);
      const position = context.nextCursor('weighted-round-robin') % cycle.length;
      const result: ReplicaView[] = [];
      // Alternates: the replicas the rotation would serve next, skipping repeats.
      for (let step = 0; step < cycle.length && result.length < count; step++) {
        const replica = candidates[cycle[(position + step) % cycle.length]];
        if (result.indexOf(replica) < 0) result.push(replica);
      }
      return result;
    },
  };
}
