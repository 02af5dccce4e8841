// The timeouts the access phase hands Kong with kong.service.set_timeouts(connect, write, read) (ms):
//   connect  timeouts.connect_s: a replica that does not accept the connection fails fast
//   read     nginx's proxy_read_timeout, the longest silence between two reads — before the
//            response headers and between body chunks. A request known to stream ("stream": true
//            in its body) gets timeouts.stream_idle_s: its headers and tokens come within seconds,
//            so a long silence means a hung replica. Any other request gets timeouts.response_s:
//            a non-streaming answer arrives whole after its whole generation.
//   write    the same bound as read: a replica that stops reading the request for that long is
//            as stuck as one that stops answering (nginx's proxy_send_timeout, also per write).
// When the attempt times out Kong answers the client 504 itself (and with retries 0 moves on to the
// log phase, where the plugin records a timeout).
// Whether a request streams is only known from its body, and the body is read only when the
// strategy or the hash key needs it, or kong.stream_timeouts is on (see options.ts for the cost).

import type { TimeoutsConfig } from '../../shared/config/types';

export interface UpstreamTimeouts {
  connectMs: number;
  writeMs: number;
  readMs: number;
}

/** Kong's set_timeouts takes integers 1 – 2147483646 ms and raises a Lua error (a 500) otherwise. */
const MAX_KONG_TIMEOUT_MS = 2147483646;

function milliseconds(seconds: number): number {
  return Math.min(MAX_KONG_TIMEOUT_MS, Math.max(1, Math.round(seconds * 1000)));
}

/** Whether a parsed request body asks for a streamed answer (OpenAI's "stream": true). */
export function requestStreams(body: unknown): boolean {
  return body !== null && typeof body === 'object' && (body as { stream?: unknown }).stream === true;
}

export function timeoutsFor(config: TimeoutsConfig, streams: boolean): UpstreamTimeouts {
  const readMs = milliseconds(streams ? config.stream_idle_s : config.response_s);
  return { connectMs: milliseconds(config.connect_s), writeMs: readMs, readMs };
}
