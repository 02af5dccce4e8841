// How an attempt ended, read from Kong's log entry (`kong.log.serialize()`, Kong 3.x shape).
// Pure: the plugin passes the parsed entry in, specs pass table rows.
//
// What Kong puts there for a request our plugin routed with set_target:
//   response.status      what the client got (499 when it left before the response header)
//   upstream_status      the replica's status, "502" or "502, 200" style when Kong retried; absent
//                        when no attempt reached a replica (another plugin answered, client left)
//   latencies.proxy      ms from sending the request to the replica's first response byte (TTFT
//                        for a streamed completion), latencies.receive ms from there to the last byte
//   tries[]              one per attempt. Kong records how a try failed (state "failed", code 502
//                        for a connect error or premature close, 504 for a timeout) only when it
//                        starts the NEXT try (Kong.balancer: `previous_try.state, previous_try.code
//                        = get_last_failure()`): the last try never carries it. Then nginx's own
//                        502/504 is in upstream_status as if the replica had answered it, and only
//                        kong.response.get_source() tells them apart: "error" when nginx failed the
//                        attempt, "service" when the replica sent the status.
// A client that leaves mid-stream is not visible here (the status stays 200): such a request counts
// as a success with the latency seen so far, as Kong itself counts it.

import type { Outcome } from '../../shared/types';

export interface KongLogEntry {
  response?: { status?: unknown };
  upstream_status?: unknown;
  latencies?: { proxy?: unknown; receive?: unknown; request?: unknown };
  /** ms since the epoch when Kong received the request. */
  started_at?: unknown;
  tries?: unknown;
  /** The Service entity, with its configured `retries` and timeouts (ms). */
  service?: { id?: unknown; retries?: unknown; connect_timeout?: unknown; write_timeout?: unknown; read_timeout?: unknown } | null;
}

function nonNegative(value: unknown): number | null {
  return typeof value === 'number' && isFinite(value) && value >= 0 ? value : null;
}

/** The last status of "502, 200" / "502 : 200" / "200"; null when absent or unreadable. */
function lastUpstreamStatus(value: unknown): number | null {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || value.trim() === '') return null;
  const parts = value.split(/[,:]/);
  const code = parseInt(parts[parts.length - 1].trim(), 10);
  return isNaN(code) ? null : code;
}

/** Kong's own verdict on the last try: 'timeout' / 'connect-error' when nginx failed it, else null. */
function lastTryFailure(tries: unknown): 'timeout' | 'connect-error' | null {
  if (!Array.isArray(tries) || tries.length === 0) return null;
  const last = tries[tries.length - 1] as { state?: unknown; code?: unknown } | null;
  if (last === null || typeof last !== 'object' || last.state !== 'failed') return null;
  return last.code === 504 ? 'timeout' : 'connect-error';
}

/**
 * Whether the entry leaves open if nginx or the replica produced a 502/504: then the log phase
 * asks kong.response.get_source() (one round trip, only for such answers) and passes it in.
 */
export function needsResponseSource(entry: KongLogEntry): boolean {
  const clientStatus = entry.response && typeof entry.response.status === 'number' ? entry.response.status : 0;
  return (clientStatus === 502 || clientStatus === 504) && lastTryFailure(entry.tries) === null;
}

/**
 * `source`: kong.response.get_source() when needsResponseSource asked for it ("error": nginx
 * failed the last try, so its 502 is a connect error and its 504 a timeout), else undefined.
 */
export function outcomeFromLogEntry(entry: KongLogEntry, source?: string | null): Outcome {
  const clientStatus = entry.response && typeof entry.response.status === 'number' ? entry.response.status : 0;
  const upstream = lastUpstreamStatus(entry.upstream_status);
  const latencies = entry.latencies || {};
  const proxy = nonNegative(latencies.proxy);
  const receive = nonNegative(latencies.receive);
  const latencyMs = proxy === null ? -1 : proxy + (receive === null ? 0 : receive);
  if (clientStatus === 499) return { status: upstream === null ? 0 : upstream, latencyMs: latencyMs, ttftMs: null, error: 'aborted' };
  let failure = lastTryFailure(entry.tries);
  if (failure === null && source === 'error' && (clientStatus === 502 || clientStatus === 504)) failure = clientStatus === 504 ? 'timeout' : 'connect-error';
  if (failure !== null) return { status: 0, latencyMs: latencyMs, ttftMs: null, error: failure };
  if (upstream === null) {
    // No replica answered. Kong's own 502/504 without a try record is still nginx failing the
    // connection; anything else (a later plugin answered first) never reached the replica.
    if (clientStatus === 502) return { status: 0, latencyMs: latencyMs, ttftMs: null, error: 'connect-error' };
    if (clientStatus === 504) return { status: 0, latencyMs: latencyMs, ttftMs: null, error: 'timeout' };
    return { status: 0, latencyMs: -1, ttftMs: null, error: 'aborted' };
  }
  return { status: upstream, latencyMs: latencyMs, ttftMs: proxy, error: null };
}

/**
 * "host:port" of the last try Kong made (IPv6 in brackets, as replica addresses are written), or
 * null when no attempt reached the balancer (another plugin answered, the client left first).
 */
export function lastTriedAddress(entry: KongLogEntry): string | null {
  const tries = entry.tries;
  if (!Array.isArray(tries) || tries.length === 0) return null;
  const last = tries[tries.length - 1] as { ip?: unknown; port?: unknown } | null;
  if (last === null || typeof last !== 'object' || typeof last.ip !== 'string' || typeof last.port !== 'number') return null;
  return (last.ip.indexOf(':') >= 0 ? '[' + last.ip + ']' : last.ip) + ':' + last.port;
}

/**
 * Whether an answer is stale evidence: its request began before the replica last refused a
 * connection (`lastConnectErrorAt`, ms). When a replica crashes, the streams it was sending are
 * cut after their headers, and Kong logs them with their 200 (the status had gone out). Counted
 * as answers, they land between the refusals that follow and reset the consecutive connect-error
 * count, so the crashed replica keeps being picked until the active checks take it out. Such an
 * answer says nothing about whether the replica accepts connections now: it is neutral.
 */
export function answeredBeforeRefusal(entry: KongLogEntry, outcome: Outcome, lastConnectErrorAt: number | undefined): boolean {
  if (outcome.error !== null || lastConnectErrorAt === undefined) return false;
  return typeof entry.started_at === 'number' && entry.started_at < lastConnectErrorAt;
}
