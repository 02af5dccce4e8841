// How an attempt ended, read from nginx's own variables. Pure string parsing: the handlers pass
// the variable values in, specs pass table rows.
//
// What nginx 1.26 puts in them (measured through the generated config: one single-server
// `upstream {}` per replica, failover by `error_page ... = @retry_N`, proxy_next_upstream off):
//   - every upstream attempt adds one group; groups of different upstream blocks (our attempts,
//     chained by error_page) are separated by " : ", servers tried inside one block by ", ".
//       connect refused, then OK:  $upstream_status "502 : 200"  $upstream_header_time "- : 0.001"
//       read timeout, then OK:     "504 : 200"                   "- : 0.001"  (response_time 1.001 : 0.001)
//       replica answered 503 ×2:   "503 : 503"                   "0.001 : 0.007"
//   - nginx's own 502/504 (connect error, timeout, premature close before the header) have no
//     header time "-"; a replica's own 502/504 has one.
//   - client gone before the header: $status 499, that attempt's $upstream_status "-".
//     Client gone during a streamed body: $status stays 200, but $request_completion is "" (it is
//     "OK" for every completed response, including a replica that stalled or died mid-stream).
// During the retry's js_set (rewrite phase of @retry_N) the variables already hold the groups of
// the attempts so far, so the failed attempt is recorded at once, not when the retry finishes.

import type { Outcome } from '../../shared/types';

/** $upstream_status, $upstream_response_time, $upstream_header_time as nginx formats them. */
export interface UpstreamVariables {
  status: string | undefined;
  responseTime: string | undefined;
  headerTime: string | undefined;
}

/** What the client got, for the attempt that produced the response ($status, $request_completion). */
export interface ResponseVariables {
  status: string | undefined;
  requestCompletion: string | undefined;
}

/** The `index`-th attempt's entry of an $upstream_* value (the last server of its group), or null. */
export function attemptField(value: string | undefined, index: number): string | null {
  if (value === undefined || value === null || value === '') return null;
  // One attempt on one server, by far the usual case: no arrays to split into (njs allocates each).
  if (value.indexOf(' : ') < 0 && value.indexOf(', ') < 0) return index === 0 ? value.trim() : null;
  const groups = value.split(' : ');
  if (index < 0 || index >= groups.length) return null;
  const servers = groups[index].split(', ');
  return servers[servers.length - 1].trim();
}

/** Seconds with millisecond resolution ("0.123") → ms; null for "-" or garbage. */
export function secondsToMs(text: string | null): number | null {
  if (text === null || text === '-' || text === '') return null;
  const seconds = parseFloat(text);
  if (!isFinite(seconds) || seconds < 0) return null;
  return Math.round(seconds * 1000);
}

/** Whether the client left before the response was complete. */
export function clientGone(response: ResponseVariables): boolean {
  return response.status === '499' || response.requestCompletion !== 'OK';
}

/**
 * The outcome of the `index`-th attempt. `response` is given only for the attempt whose answer
 * the client got (the last one), where a client abort is possible; earlier attempts ended with
 * an error that made nginx try the next one.
 */
export function attemptOutcome(upstream: UpstreamVariables, index: number, response: ResponseVariables | null): Outcome {
  const statusText = attemptField(upstream.status, index);
  if (statusText === null) {
    // The attempt was picked but never reached the replica (the client left first): not the replica's doing.
    return { status: 0, latencyMs: -1, ttftMs: null, error: 'aborted' };
  }
  const code = parseInt(statusText, 10);
  const latency = secondsToMs(attemptField(upstream.responseTime, index));
  const ttft = secondsToMs(attemptField(upstream.headerTime, index));
  const latencyMs = latency === null ? -1 : latency;
  if (response !== null && clientGone(response)) {
    return { status: isNaN(code) ? 0 : code, latencyMs: latencyMs, ttftMs: ttft, error: 'aborted' };
  }
  if (isNaN(code)) return { status: 0, latencyMs: latencyMs, ttftMs: null, error: 'connect-error' };
  if (ttft === null && (code === 502 || code === 504)) {
    return { status: 0, latencyMs: latencyMs, ttftMs: null, error: code === 504 ? 'timeout' : 'connect-error' };
  }
  return { status: code, latencyMs: latencyMs, ttftMs: ttft, error: null };
}

/** A short description for $llm_balancer_outcome: "gpu-a 200 1234ms", "gpu-b connect-error". */
export function describeOutcome(replicaId: string, outcome: Outcome): string {
  if (outcome.error) return replicaId + ' ' + outcome.error;
  return replicaId + ' ' + outcome.status + ' ' + outcome.latencyMs + 'ms';
}
