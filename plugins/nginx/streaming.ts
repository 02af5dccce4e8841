// Which read bound an attempt gets: nginx takes no variable in proxy_read_timeout, so the generator
// renders the proxy locations twice — streaming requests ("stream": true in the OpenAI body) get
// timeouts.stream_idle_s, the others timeouts.response_s — and `route` (js_content, which has the
// body) sends each request to its kind. Pure: unit-tested in Node, used by the generator and the
// njs handlers alike.

import type { TimeoutsConfig } from '../../shared/config/types';

/**
 * Whether streaming and non-streaming requests need different proxy locations: only when their
 * bounds differ. With equal bounds the body need not be read to know (a strategy that does not read
 * it keeps the cheaper js_set path). A preloaded config without `timeouts` (an older generator) has one kind.
 */
export function splitsByStreaming(timeouts: TimeoutsConfig | undefined | null): boolean {
  return timeouts !== undefined && timeouts !== null && timeouts.stream_idle_s !== timeouts.response_s;
}

/**
 * Whether the request asks for a stream: its JSON body is an object whose top-level `stream` is
 * true. `parsed` is the body already parsed by the strategy's own read (undefined: not parsed);
 * otherwise the raw text is parsed only when it names a "stream" field at all, so a non-streaming
 * request that never mentions it costs one substring search, not a JSON parse. A body that is not
 * JSON (or absent, or too large to stay in memory) is not streaming: it gets the longer bound.
 */
export function streamRequested(parsed: unknown, text: string | null): boolean {
  let body = parsed;
  if (body === undefined) {
    if (text === null || text.indexOf('"stream"') < 0) return false;
    try {
      body = JSON.parse(text);
    } catch (e) {
      return false;
    }
  }
  return body !== null && typeof body === 'object' && !Array.isArray(body) && (body as { stream?: unknown }).stream === true;
}
