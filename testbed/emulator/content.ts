// What an emulated replica answers: how many tokens, and which words. Seeded, so the same requests
// in the same order get the same token counts and the same text from a replica with the same seed
// (timing is not part of this: it follows the real clock).

import { fmix32 } from '../../shared/hash';
import { createSeededRandom } from '../../shared/random';
import type { Random } from '../../shared/types';
import type { OutputLengthDistribution } from './profiles';

/**
 * A seeded Random whose seed is first scrambled: xorshift32 started from small neighbouring seeds
 * (1, 2, 3, ...) gives tiny, correlated first draws; fmix32 spreads them over the whole state space.
 */
export function seededRandom(seed: number): Random {
  return createSeededRandom(fmix32(seed));
}

/** One output token = one of these words. Short, common and cheap to produce. */
export const FILLER_WORDS: readonly string[] = [
  'the', 'model', 'answers', 'with', 'a', 'short', 'and', 'plain', 'sentence', 'about', 'load', 'balancing',
  'of', 'requests', 'across', 'replicas', 'that', 'share', 'one', 'prompt', 'prefix', 'cache', 'while', 'each',
  'token', 'arrives', 'in', 'its', 'own', 'step', 'so', 'latency', 'grows', 'when', 'batches', 'fill', 'up',
  'queue', 'waits', 'for', 'free', 'blocks', 'then', 'decode', 'continues', 'until', 'done', 'is', 'reached',
  'gateway', 'picks', 'fast', 'slow', 'card', 'time', 'first', 'next', 'every', 'stream', 'ends', 'here',
  'again', 'more', 'text',
];

/** 2^32: turns a draw in [0, 1) into a 32-bit seed. */
const TWO_POW_32 = 4294967296;

/** ln(length) ~ Normal(ln(median), sigma), rounded and clamped to [minTokens, maxTokens]. */
export function drawOutputLength(distribution: OutputLengthDistribution, random: Random): number {
  // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
  const u1 = random.next();
  const u2 = random.next();
  const normal = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
  const length = Math.round(distribution.medianTokens * Math.exp(distribution.sigma * normal));
  return Math.min(distribution.maxTokens, Math.max(distribution.minTokens, length));
}

export type FinishReason = 'length' | 'stop';

export interface CompletionPlan {
  outputTokens: number;
  /** KV reservation: max_tokens when given, else the distribution's maximum (the default max_tokens). */
  reservedOutputTokens: number;
  /** 'length' when the answer stops at the client's max_tokens, 'stop' when it "reaches EOS" first. */
  finishReason: FinishReason;
  /** The next output token's text: the first word bare, the others after a space. */
  nextWord(): string;
}

export interface CompletionPlanner {
  plan(maxTokens: number | undefined): CompletionPlan;
}

export function createCompletionPlanner(seed: number, output: OutputLengthDistribution): CompletionPlanner {
  const random = seededRandom(seed);
  return {
    plan(maxTokens) {
      // Always the same number of draws per request, so one request's max_tokens does not shift
      // the lengths and words of the requests after it.
      const drawn = drawOutputLength(output, random);
      const words = createSeededRandom(Math.floor(random.next() * TWO_POW_32));
      let produced = 0;
      const nextWord = () => {
        const word = FILLER_WORDS[Math.floor(words.next() * FILLER_WORDS.length)];
        return produced++ === 0 ? word : ' ' + word;
      };
      if (maxTokens !== undefined) return { outputTokens: maxTokens, reservedOutputTokens: maxTokens, finishReason: 'length', nextWord };
      return { outputTokens: drawn, reservedOutputTokens: Math.max(drawn, output.maxTokens), finishReason: 'stop', nextWord };
    },
  };
}
