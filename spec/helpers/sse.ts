// A STRICT parser for the server-sent events of OpenAI-style streaming completions. The SSE
// standard tolerates much (comments, other fields, CR line ends, multi-line data); an
// OpenAI-compatible stream uses none of it, so anything beyond the exact shape is an error here:
//   - every event is `data: ` + payload + `\n\n`, payload on one line;
//   - a payload is JSON, except the last, which is exactly `[DONE]`;
//   - nothing follows `[DONE]`, and the stream ends right after it.
// Incremental: push() text as it arrives (decode bytes with a streaming TextDecoder or
// setEncoding('utf8') so a multi-byte character split across chunks stays whole) and get the
// events it completed (the caller timestamps them, e.g. for TTFT); end() checks the stream
// finished properly. parseStrictSse() does both for a whole body.

export class SseFormatError extends Error {}

export type SseEvent = { kind: 'data'; json: unknown; raw: string } | { kind: 'done' };

export interface StrictSseParser {
  /** Appends text; returns the events completed by it, in order. Throws SseFormatError. */
  push(text: string): SseEvent[];
  /** Throws unless the stream ended right after `data: [DONE]\n\n`. */
  end(): void;
  /** Events completed so far (the [DONE] marker included). */
  readonly eventCount: number;
}

const DATA_PREFIX = 'data: ';
const EVENT_END = '\n\n';
const DONE = '[DONE]';

export function createStrictSseParser(): StrictSseParser {
  let buffer = '';
  let events = 0;
  let done = false;

  function parseEvent(block: string): SseEvent {
    const where = `event ${events + 1}`;
    if (!block.startsWith(DATA_PREFIX)) throw new SseFormatError(`${where} does not start with 'data: ': ${JSON.stringify(block.slice(0, 80))}`);
    const payload = block.slice(DATA_PREFIX.length);
    if (payload.includes('\n') || payload.includes('\r')) throw new SseFormatError(`${where} spans several lines: ${JSON.stringify(block.slice(0, 80))}`);
    if (payload === DONE) return { kind: 'done' };
    try {
      return { kind: 'data', json: JSON.parse(payload), raw: payload };
    } catch {
      throw new SseFormatError(`${where} is not JSON: ${JSON.stringify(payload.slice(0, 80))}`);
    }
  }

  return {
    push(text) {
      if (text.length === 0) return [];
      if (done) throw new SseFormatError(`data after [DONE]: ${JSON.stringify(text.slice(0, 80))}`);
      buffer += text;
      const out: SseEvent[] = [];
      for (let end = buffer.indexOf(EVENT_END); end >= 0; end = buffer.indexOf(EVENT_END)) {
        if (done) throw new SseFormatError(`data after [DONE]: ${JSON.stringify(buffer.slice(0, 80))}`);
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + EVENT_END.length);
        events++;
        if (event.kind === 'done') done = true;
        out.push(event);
      }
      if (done && buffer.length > 0) throw new SseFormatError(`data after [DONE]: ${JSON.stringify(buffer.slice(0, 80))}`);
      return out;
    },
    end() {
      if (buffer.length > 0) throw new SseFormatError(`stream ended inside an event: ${JSON.stringify(buffer.slice(0, 80))}`);
      if (!done) throw new SseFormatError(`stream ended after ${events} events without data: [DONE]`);
    },
    get eventCount() {
      return events;
    },
  };
}

/** The JSON payloads of a whole, strictly formatted stream (the [DONE] marker checked, not returned). */
export function parseStrictSse(body: string): unknown[] {
  const parser = createStrictSseParser();
  const payloads: unknown[] = [];
  for (const event of parser.push(body)) if (event.kind === 'data') payloads.push(event.json);
  parser.end();
  return payloads;
}
