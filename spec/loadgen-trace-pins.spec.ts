// Pins the seeded traces of every existing mix, byte for byte: a change to the request generator
// (a new mix, a new random stream) must not shift what a seed produced before, or benchmark rows
// recorded with that seed stop being comparable with new ones. The digests were taken from the
// generator as it was before the multi-lora and multi-model mixes were added; if one changes on
// purpose, say so in the commit and re-record it.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildTrace } from '../testbed/loadgen/index';

/** First 16 hex digits of sha256(JSON of the trace) for seed 7, 10 requests/s over 30 s. */
const PINNED_TRACE_DIGESTS: Record<string, string> = {
  'short-chat': '69ee9b806ec8b47c',
  'long-prompt': '081424cd937f43c1',
  'long-generation': '332cf29eede53c81',
  'shared-prefix': '0455c8a87b7c2715',
  'hot-prefix': '21c1fd1e2c31bdb7',
  'many-prefixes': '37fba6642d112734',
  'fleet-prefixes': '066ae0e0137612d6',
  mixed: 'b5ed90b7ca881457',
};

function traceDigest(mix: string): string {
  const trace = buildTrace({ seed: 7, ratePerS: 10, durationS: 30, mix });
  return createHash('sha256').update(JSON.stringify(trace)).digest('hex').slice(0, 16);
}

describe('seeded traces of the existing mixes', () => {
  it.each(Object.entries(PINNED_TRACE_DIGESTS))('%s: seed 7 gives the pinned trace', (mix, digest) => {
    expect(traceDigest(mix)).toBe(digest);
  });
});
