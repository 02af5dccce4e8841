// Output tokens of a response, tallied chunk by chunk as its body passes the gateway (NGINX's
// body filter), and the time per output token (TPOT) they give.
//
// A streamed OpenAI response is Server-Sent Events: vLLM and SGLang send one `data:` event per
// generated token (plus a role-only opening delta on chat, the finish event, an optional usage
// event and `data: [DONE]`). With `stream_options.include_usage` the usage event names the exact
// `completion_tokens`, and a whole (non-streamed) response always carries it. So: the usage
// count when it was seen, else the SSE events less [DONE] (a few framing events too many, the
// same few on every replica: TPOT is compared between replicas, not reported as truth).
// Works on bytes (njs Buffer or Node Buffer): no decoding of every chunk, which njs would pay for
// per chunk. An event or the usage split across two chunks is missed or counted once: an estimate.

/** What the chunks so far showed. */
export interface OutputTally {
  /** `data:` events seen. */
  events: number;
  /** `data: [DONE]` events seen. */
  done: number;
  /** The last usage.completion_tokens seen, or -1. */
  usage: number;
}

/** The byte operations both Buffers have. */
export interface ByteChunk {
  readonly length: number;
  indexOf(value: string, byteOffset?: number): number;
  readonly [index: number]: number;
}

const EVENT = 'data:';
const DONE = 'data: [DONE]';
const COMPLETION_TOKENS = '"completion_tokens"';
const ZERO = 48;
const NINE = 57;
const COLON = 58;
const SPACE = 32;

export function newOutputTally(): OutputTally {
  return { events: 0, done: 0, usage: -1 };
}

/** Folds one body chunk into the tally. */
export function tallyChunk(tally: OutputTally, chunk: ByteChunk): void {
  if (chunk.length === 0) return;
  let at = chunk.indexOf(EVENT, 0);
  while (at >= 0) {
    tally.events++;
    at = chunk.indexOf(EVENT, at + EVENT.length);
  }
  at = chunk.indexOf(DONE, 0);
  while (at >= 0) {
    tally.done++;
    at = chunk.indexOf(DONE, at + DONE.length);
  }
  at = chunk.indexOf(COMPLETION_TOKENS, 0);
  while (at >= 0) {
    const value = numberAfterColon(chunk, at + COMPLETION_TOKENS.length);
    if (value >= 0) tally.usage = value;
    at = chunk.indexOf(COMPLETION_TOKENS, at + COMPLETION_TOKENS.length);
  }
}

/** The integer after `:` (spaces allowed around it) at `from`, or -1 (null, or cut by the chunk's end). */
function numberAfterColon(chunk: ByteChunk, from: number): number {
  let i = from;
  while (i < chunk.length && chunk[i] === SPACE) i++;
  if (i >= chunk.length || chunk[i] !== COLON) return -1;
  i++;
  while (i < chunk.length && chunk[i] === SPACE) i++;
  let value = 0;
  let digits = 0;
  while (i < chunk.length && chunk[i] >= ZERO && chunk[i] <= NINE) {
    value = value * 10 + (chunk[i] - ZERO);
    digits++;
    i++;
  }
  // Digits running to the chunk's end may continue in the next chunk: not trusted.
  return digits > 0 && i < chunk.length ? value : -1;
}

/** The response's output tokens (usage when seen, else SSE events) and whether it was streamed. */
export function outputTokensOf(tally: OutputTally): { tokens: number; streamed: boolean } {
  const streamed = tally.events > 0;
  if (tally.usage >= 0) return { tokens: tally.usage, streamed: streamed };
  const events = tally.events - tally.done;
  return { tokens: events > 0 ? events : 0, streamed: streamed };
}

/**
 * Time per output token in ms, or null when the response does not tell it.
 * Streamed: the decode time between the first and the last byte over the tokens after the first
 * (vLLM's definition); at least 2 tokens. Whole responses arrive at once, so there is no first
 * token to subtract: their time over their tokens (prefill included, documented).
 */
export function timePerOutputTokenMs(streamed: boolean, tokens: number, firstToLastByteMs: number | null, wholeMs: number): number | null {
  if (streamed) {
    if (tokens < 2 || firstToLastByteMs === null || !(firstToLastByteMs >= 0)) return null;
    return firstToLastByteMs / (tokens - 1);
  }
  if (tokens < 1 || !(wholeMs >= 0)) return null;
  return wholeMs / tokens;
}
