// Traces and the open-loop runner.
//
// A trace is the whole run decided in advance: every request and the moment it is due. It is plain
// data, so the same trace (same seed, rate, duration and mix) replays unchanged through every
// gateway and strategy, and can be written to a file and read back.
//
// The runner is open loop: each request is sent when the wall clock reaches its time, whatever
// the earlier requests are doing; it never waits for a response before sending the next (a closed
// loop would slow down with the system under test and hide its queueing, the "coordinated
// omission" of Gil Tene's talk). A request the generator could not send on time goes out as soon
// as it can, and the lateness is recorded as schedule lag: a saturated generator shows in the report
// instead of silently lowering the offered rate.

import { performance } from 'node:perf_hooks';
import { arrivalTimesMs, type ArrivalMode } from './arrivals';
import { createClient, DEFAULT_MAX_SOCKETS } from './client';
import { createRequestGenerator, resolveMix, type Api, type LoadRequest, type Mix } from './mixes';
import { createRandom } from './random';
import { buildReport, type Report, type RequestRecord, type Slo, type TraceInfo } from './report';

/** The model name sent when none is given; real vLLM replicas need --model set to their served name. */
export const DEFAULT_MODEL = 'llm-bench';

export interface TraceEntry {
  /** When the request is due, ms from the start of the run. */
  atMs: number;
  request: LoadRequest;
}

export interface Trace {
  seed: number;
  ratePerS: number;
  durationS: number;
  mix: string;
  arrivals: ArrivalMode;
  model: string;
  api: Api;
  /** In ascending atMs order. */
  entries: TraceEntry[];
}

export interface BuildTraceOptions {
  seed: number;
  ratePerS: number;
  durationS: number;
  mix: string | Mix;
  /** Default 'poisson'. */
  arrivals?: ArrivalMode;
  /** Default DEFAULT_MODEL. */
  model?: string;
  /** Which endpoint the bodies are written for; default 'chat'. */
  api?: Api;
}

export function buildTrace(options: BuildTraceOptions): Trace {
  const mix = resolveMix(options.mix);
  const arrivals = options.arrivals ?? 'poisson';
  const model = options.model ?? DEFAULT_MODEL;
  const api = options.api ?? 'chat';
  const times = arrivalTimesMs(arrivals, options.ratePerS, options.durationS, createRandom(options.seed, 'arrivals'));
  const nextRequest = createRequestGenerator({ seed: options.seed, mix, model, api });
  return {
    seed: options.seed,
    ratePerS: options.ratePerS,
    durationS: options.durationS,
    mix: mix.name,
    arrivals,
    model,
    api,
    entries: times.map((atMs) => ({ atMs, request: nextRequest() })),
  };
}

export interface RunOptions {
  /** http://127.0.0.1:port of the gateway (or a replica), optionally with a path prefix. */
  baseUrl: string;
  /** Send every request here instead of its own endpoint path. */
  path?: string;
  /** Per-request deadline, sending to end of stream. */
  timeoutMs: number;
  /** Keep-alive pool size; default DEFAULT_MAX_SOCKETS. */
  maxSockets?: number;
  slo?: Slo;
  /** Added to every request (auth keys for a gateway, for instance). */
  headers?: Record<string, string>;
  /** Monotonic milliseconds; performance.now by default. */
  now?: () => number;
}

export interface RunResult {
  /** One per trace entry, in trace order. */
  records: RequestRecord[];
  /** Run start to the end of the last request, ms. */
  windowMs: number;
}

/**
 * Sends every entry of the trace at its time and waits for all of them to end. Bounded: it
 * returns at most timeoutMs (plus any schedule lag) after the last entry's time.
 */
export async function executeTrace(trace: Trace, options: RunOptions): Promise<RunResult> {
  const now = options.now ?? (() => performance.now());
  const client = createClient({
    baseUrl: options.baseUrl,
    path: options.path,
    timeoutMs: options.timeoutMs,
    maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS,
    headers: options.headers,
    now,
  });
  const entries = trace.entries.slice().sort((a, b) => a.atMs - b.atMs);
  const inFlight: Array<Promise<RequestRecord>> = [];
  const start = now();

  const send = (entry: TraceEntry) => {
    const sentAtMs = now() - start;
    inFlight.push(
      client.send(entry.request).then((result) => ({
        ...result,
        id: entry.request.id,
        kind: entry.request.kind,
        atMs: entry.atMs,
        sentAtMs,
        scheduleLagMs: Math.max(0, sentAtMs - entry.atMs),
      })),
    );
  };

  try {
    await new Promise<void>((allSent) => {
      let next = 0;
      const dispatch = () => {
        // Everything already due goes now, late ones included; then sleep until the next one.
        const elapsed = now() - start;
        while (next < entries.length && entries[next].atMs <= elapsed) send(entries[next++]);
        if (next >= entries.length) {
          allSent();
          return;
        }
        // Rounded up: a timer that fires early would only re-arm itself.
        setTimeout(dispatch, Math.max(0, Math.ceil(entries[next].atMs - (now() - start))));
      };
      dispatch();
    });
    const settled = await Promise.allSettled(inFlight);
    const windowMs = now() - start;
    const records: RequestRecord[] = [];
    for (const outcome of settled) {
      // The client settles every request itself; a rejection is a bug (e.g. an invalid header).
      if (outcome.status === 'rejected') throw outcome.reason;
      records.push(outcome.value);
    }
    const order = new Map(trace.entries.map((entry, index) => [entry.request.id, index]));
    records.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
    return { records, windowMs };
  } finally {
    client.close();
  }
}

/** executeTrace, then the report of it. */
export async function runTrace(trace: Trace, options: RunOptions): Promise<Report> {
  const result = await executeTrace(trace, options);
  return buildReport(result.records, {
    windowMs: result.windowMs,
    slo: options.slo,
    trace: traceInfo(trace),
    target: { baseUrl: options.baseUrl, path: options.path ?? null },
  });
}

export function traceInfo(trace: Trace): TraceInfo {
  return {
    seed: trace.seed,
    ratePerS: trace.ratePerS,
    durationS: trace.durationS,
    mix: trace.mix,
    arrivals: trace.arrivals,
    model: trace.model,
    requests: trace.entries.length,
  };
}
