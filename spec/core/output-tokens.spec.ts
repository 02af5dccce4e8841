// Output-token tally of a response body, chunk by chunk, and the TPOT it gives (shared/output-tokens.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newOutputTally, outputTokensOf, tallyChunk, timePerOutputTokenMs } from '../../shared/output-tokens';

function tallyOf(chunks: string[]): { tokens: number; streamed: boolean } {
  const tally = newOutputTally();
  for (const chunk of chunks) tallyChunk(tally, Buffer.from(chunk, 'utf8'));
  return outputTokensOf(tally);
}

const event = (payload: unknown) => 'data: ' + JSON.stringify(payload) + '\n\n';
const token = (text: string) => event({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] });
const usage = (n: number) => event({ choices: [], usage: { prompt_tokens: 9, completion_tokens: n, total_tokens: 9 + n } });
const DONE = 'data: [DONE]\n\n';

describe('output-token tally', () => {
  it.each([
    ['three token events and [DONE]', [token('a'), token('b'), token('c'), DONE], { tokens: 3, streamed: true }],
    ['events arriving together in one chunk', [token('a') + token('b') + DONE], { tokens: 2, streamed: true }],
    ['the usage event wins over counting', [token('a'), token('b'), usage(57), DONE], { tokens: 57, streamed: true }],
    ['usage with spaces around the colon', [token('a'), 'data: {"usage": {"completion_tokens" :  12}}\n\n', DONE], { tokens: 12, streamed: true }],
    ['usage: null on every chunk (include_usage) is not a count', [event({ choices: [], usage: null }), token('a'), DONE], { tokens: 2, streamed: true }],
    ['a whole JSON answer with usage', ['{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}'], { tokens: 4, streamed: false }],
    ['a whole JSON answer split in the middle of its usage', ['{"usage":{"completion_tokens":4', '2}}'], { tokens: 0, streamed: false }],
    ['a whole answer without usage', ['{"error":{"message":"no"}}'], { tokens: 0, streamed: false }],
    ['nothing at all', [], { tokens: 0, streamed: false }],
    ['only [DONE]', [DONE], { tokens: 0, streamed: true }],
    ['a null completion_tokens is no count', ['data: {"usage":{"completion_tokens":null}}\n\n', token('a')], { tokens: 2, streamed: true }],
  ])('%s', (_name, chunks, expected) => {
    expect(tallyOf(chunks as string[])).toEqual(expected);
  });

  it('the count does not depend on how the body was cut between events', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 30 }),
        fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }),
        fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
        (words, reported, cuts) => {
          const events = words.map(token);
          if (reported !== null) events.push(usage(reported));
          events.push(DONE);
          const chunks: string[] = [];
          let current = '';
          events.forEach((e, i) => {
            current += e;
            if (cuts[i % cuts.length] || i === events.length - 1) {
              chunks.push(current);
              current = '';
            }
          });
          const expected = reported !== null ? reported : words.length;
          expect(tallyOf(chunks)).toEqual({ tokens: expected, streamed: true });
        },
      ),
    );
  });
});

describe('timePerOutputTokenMs', () => {
  it.each([
    ['streamed: first-to-last over the tokens after the first', true, 11, 500, 9999, 50],
    ['streamed: one token tells no decode time', true, 1, 500, 9999, null],
    ['streamed: first byte not timed', true, 11, null, 9999, null],
    ['whole answer: its time over its tokens', false, 10, null, 300, 30],
    ['whole answer without tokens', false, 0, null, 300, null],
    ['a negative span (clock step) is no sample', true, 5, -3, 100, null],
  ])('%s', (_name, streamed, tokens, span, whole, expected) => {
    expect(timePerOutputTokenMs(streamed as boolean, tokens as number, span as number | null, whole as number)).toBe(expected);
  });
});
