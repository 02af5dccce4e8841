// Chaos on NGINX: faults injected into one of four emulated replicas (testbed/emulator, through its
// admin API) while an open-loop sender keeps requests arriving at a fixed rate through real nginx
// (2 workers, the generator's configuration, the built bundle), active health checks on, short
// timeouts and windows. Two thirds of the requests stream ("stream": true: the strict SSE client of
// testbed/loadgen), half wait for a whole JSON answer. What must hold:
//   crash     no client error where no byte had reached the client (those attempts are retried);
//   restart   the crashed replica back in rotation within one active-check interval (+ margin);
//   hang      (accepts, /health 200, never answers) no request held past its bound: streaming ones
//             are cut after stream_idle_s of silence, the others fail over after response_s and
//             succeed; after stuck_after_s the hung replica gets no new requests but trial picks
//             (one per stuck_after_s), before any of its requests timed out;
//   30% 500s  the flaky replica is ejected (failure rate) and the client error share stays far
//             below the 12% the issue measured (with retry_on ~0; without retries, its 500s until
//             the ejection only).
// The measured figures are printed (one JSON line per scenario) and recorded in BENCHMARKS.md,
// "Faults" / "NGINX". Bounds are generous: the host has 2 cores shared with the replicas and this
// sender, and other specs may run beside.
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_NAME, startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplicas, FaultsPatch } from '../testbed/emulator/index';
import { createClient } from '../testbed/loadgen/index';
import { createFleet } from './helpers/fleet';
import { drained, readStatus } from './helpers/nginx-balancer';
import type { Balancer, StatusRow } from './helpers/nginx-balancer';

// 20x faster cards than life: an 8-token answer takes tens of ms, so a few seconds of load
// cover hundreds of requests.
const TIME_SCALE = 0.05;
const RATE_PER_S = 40;
const MAX_TOKENS = 8;

/** The bounds under test: short, so a run takes seconds; stream_idle_s < response_s as in production. */
const TIMEOUTS = { connect_s: 0.5, response_s: 5, stream_idle_s: 3 };
const ACTIVE_INTERVAL_S = 1;
const STUCK_AFTER_S = 1;
/**
 * Slack on every time bound: nginx's timers, a retry's own answer, and a 2-core host shared with
 * the replicas, this sender and possibly other specs.
 */
const MARGIN_MS = 1_500;

const CONFIG = {
  retries: 1,
  timeouts: TIMEOUTS,
  passive_health: {
    consecutive_failures: 5,
    consecutive_connect_errors: 1,
    failure_rate_threshold: 0.2,
    failure_rate_min_requests: 5,
    failure_rate_window_s: 2,
    stuck_after_s: STUCK_AFTER_S,
    base_ejection_s: 5,
    max_ejection_s: 5,
  },
  // One passing probe brings a replica back; a busy 2-core host may delay a probe of a healthy
  // replica past its timeout once, so two failures in a row mark one down (a crashed replica is
  // out at once anyway: its connect error ejects it).
  active_health: { enabled: true, path: '/health', interval_s: ACTIVE_INTERVAL_S, timeout_s: 0.9, healthy_threshold: 1, unhealthy_threshold: 2 },
};

/** One request of the open-loop run, as the client saw it. */
interface Sent {
  index: number;
  stream: boolean;
  /** When it was sent, ms since the run started. */
  atMs: number;
  ok: boolean;
  status: number | null;
  error: string | null;
  /** Whether any byte of the answer (its headers included) reached the client before it failed. */
  byteReceived: boolean;
  elapsedMs: number;
  replica: string | null;
}

let emulated: EmulatedReplicas;
const fleet = createFleet('chaos');

beforeAll(async () => {
  const names = ['r0', 'r1', 'r2', 'r3'];
  emulated = await startEmulatedReplicas(names.map((name) => ({ name, profile: 'h100' })), { timeScale: TIME_SCALE, adminPort: 0, seed: 11 });
});
afterEach(async () => {
  for (const replica of emulated.replicas) await replica.setFaults({ crash: false, hang: false, errorRate: 0 });
  expect(await fleet.stopAll()).toEqual([]);
});
afterAll(async () => {
  await emulated?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fault switched through the emulator's admin API, as an operator's chaos tool would. */
async function fault(name: string, patch: FaultsPatch): Promise<void> {
  const admin = emulated.admin as { address: string };
  const reply = await fetch(`http://${admin.address}/admin/replicas/${name}/faults`, { method: 'POST', body: JSON.stringify(patch) });
  expect(reply.status).toBe(200);
}

function balancer(extra: Record<string, unknown>): Promise<Balancer> {
  const replicas = emulated.replicas.map((r) => ({ address: r.address, id: r.name }));
  return fleet.start(Object.assign({ strategy: 'least-connections', replicas }, CONFIG, extra));
}

function chatBody(index: number, stream: boolean): Record<string, unknown> {
  return { model: DEFAULT_MODEL_NAME, stream, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: `Request ${index}: say a few words.` }] };
}

/** A non-streaming request on a keep-alive pool: status, body, and which replica answered. */
function sendJson(agent: http.Agent, port: number, body: Record<string, unknown>, timeoutMs: number): Promise<{ status: number | null; error: string | null; replica: string | null }> {
  return new Promise((resolve) => {
    const payload = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ status: null, error: 'client-timeout', replica: null });
    }, timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: null, error: 'connection: ' + e.message, replica: null });
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        const replica = typeof res.headers['x-llm-replica'] === 'string' ? res.headers['x-llm-replica'] : null;
        let error: string | null = null;
        if (res.statusCode !== 200) error = 'http ' + res.statusCode + ': ' + text.slice(0, 200);
        else {
          try {
            JSON.parse(text);
          } catch {
            error = 'malformed JSON answer';
          }
        }
        resolve({ status: res.statusCode ?? null, error, replica });
      });
      res.on('error', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? null, error: 'answer cut short', replica: null });
      });
    });
    req.end(payload);
  });
}

/**
 * Open loop: a request every 1/RATE_PER_S seconds for `durationMs`, whatever the answers do,
 * two of three streaming; resolves when every one has ended (each is bounded by
 * `timeoutMs`). `clock()` gives ms since the run started, for the fault schedule.
 */
function openLoop(lb: Balancer, durationMs: number, timeoutMs: number): { clock: () => number; done: Promise<Sent[]> } {
  const started = performance.now();
  const clock = () => performance.now() - started;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const streaming = createClient({ baseUrl: `http://127.0.0.1:${lb.port}`, timeoutMs });
  const done = (async () => {
    const pending: Array<Promise<Sent>> = [];
    const count = Math.floor((durationMs / 1000) * RATE_PER_S);
    for (let i = 0; i < count; i++) {
      const due = (i * 1000) / RATE_PER_S;
      if (due > clock()) await sleep(due - clock());
      // Two of three stream: a period of 3 never lines up with round robin's 4 replicas, so
      // every replica gets both kinds.
      const stream = i % 3 !== 0;
      const atMs = clock();
      if (stream) {
        pending.push(
          streaming.send({ path: '/v1/chat/completions', headers: {}, body: chatBody(i, true) }).then((r) => ({
            index: i,
            stream,
            atMs,
            ok: r.ok,
            status: r.status,
            error: r.ok ? null : `${r.error}: ${r.errorDetail}`,
            // A stream's headers are bytes the client got: after them nginx can no longer switch
            // replicas (an error status is nginx's own answer instead of the stream's).
            byteReceived: r.headersMs !== null && r.status === 200,
            elapsedMs: r.elapsedMs,
            replica: r.replica,
          })),
        );
      } else {
        pending.push(
          sendJson(agent, lb.port, chatBody(i, false), timeoutMs).then((r) => ({
            index: i,
            stream,
            atMs,
            ok: r.error === null,
            status: r.status,
            error: r.error,
            // A whole JSON answer: only a 200 cut short had sent bytes of the answer.
            byteReceived: r.status === 200,
            elapsedMs: clock() - atMs,
            replica: r.replica,
          })),
        );
      }
    }
    const all = await Promise.all(pending);
    agent.destroy();
    streaming.close();
    return all;
  })();
  return { clock, done };
}

/** Requests received per replica over time, sampled from the emulator every 50 ms. */
function sampler(clock: () => number): { stop: () => Array<{ atMs: number; requests: Record<string, number> }> } {
  const samples: Array<{ atMs: number; requests: Record<string, number> }> = [];
  const take = () => {
    const requests: Record<string, number> = {};
    for (const r of emulated.replicas) requests[r.name] = r.stats().requests;
    samples.push({ atMs: clock(), requests });
  };
  take();
  const timer = setInterval(take, 50);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** When replica `name` last received a new request (ms), per the samples. */
function lastNewRequestAt(samples: Array<{ atMs: number; requests: Record<string, number> }>, name: string): number {
  let at = samples[0].atMs;
  for (let i = 1; i < samples.length; i++) if (samples[i].requests[name] !== samples[i - 1].requests[name]) at = samples[i].atMs;
  return at;
}

/** New requests replica `name` received between `fromMs` and `toMs`, per the samples. */
function newRequestsBetween(samples: Array<{ atMs: number; requests: Record<string, number> }>, name: string, fromMs: number, toMs: number): number {
  let first: number | null = null;
  let last = 0;
  for (const sample of samples) {
    if (sample.atMs < fromMs || sample.atMs > toMs) continue;
    if (first === null) first = sample.requests[name];
    last = sample.requests[name];
  }
  return first === null ? 0 : last - first;
}

/** When replica `name` first received a new request after `afterMs`, or null. */
function firstNewRequestAfter(samples: Array<{ atMs: number; requests: Record<string, number> }>, name: string, afterMs: number): number | null {
  for (let i = 1; i < samples.length; i++) {
    if (samples[i - 1].atMs >= afterMs && samples[i].requests[name] !== samples[i - 1].requests[name]) return samples[i].atMs;
  }
  return null;
}

function row(rows: StatusRow[], id: string): StatusRow {
  return rows.find((r) => r.id === id) as StatusRow;
}

function report(scenario: string, figures: Record<string, unknown>): void {
  console.log('nginx-chaos ' + JSON.stringify(Object.assign({ scenario }, figures)));
}

const round = (ms: number) => Math.round(ms);

describe('NGINX under faults, open-loop load over 4 emulated replicas', () => {
  it('crash one, then restart it: no error before the first byte; back within one active-check interval', async () => {
    const lb = await balancer({});
    // Long enough for the restart to happen under load even when the crash call is slow (it
    // waits for the replica's connections to close: up to ~1.5 s on a busy host).
    const load = openLoop(lb, 8_000, 10_000);
    const samples = sampler(load.clock);
    await sleep(1_000);
    const crashedAt = load.clock();
    await fault('r0', { crash: true });
    // The replica has stopped listening and dropped its connections when the admin call returns.
    const crashDoneAt = load.clock();
    // Down long enough for passive (connect error) and active health to take it out.
    await sleep(2_000);
    expect(row((await readStatus(lb)).replicas, 'r0').state).not.toBe('healthy');
    await fault('r0', { crash: false });
    // Listening again from here: the next passing probe should bring it back.
    const restartedAt = load.clock();
    expect(restartedAt).toBeLessThan(8_000 - ACTIVE_INTERVAL_S * 1000 - MARGIN_MS);
    const sent = await load.done;
    const timeline = samples.stop();
    await drained(lb);

    const beforeFirstByte = sent.filter((s) => !s.ok && !s.byteReceived);
    const midAnswer = sent.filter((s) => !s.ok && s.byteReceived);
    const back = firstNewRequestAfter(timeline, 'r0', restartedAt);
    report('crash+restart', {
      requests: sent.length,
      errorsBeforeFirstByte: beforeFirstByte.length,
      errorsMidAnswer: midAnswer.length,
      errors: sent.filter((s) => !s.ok).map((s) => `${s.stream ? 'stream' : 'json'} @${round(s.atMs)}ms: ${s.error}`),
      crashTookMs: round(crashDoneAt - crashedAt),
      backInRotationAfterMs: back === null ? null : round(back - restartedAt),
    });
    expect(beforeFirstByte.map((s) => s.error)).toEqual([]);
    // Only streams the crash cut after their headers can fail, so only those in flight on r0 then.
    expect(midAnswer.filter((s) => !s.stream || s.atMs > crashDoneAt)).toEqual([]);
    expect(back).not.toBeNull();
    // One interval, plus the probe's own timeout (0.9 s: a probe begun just before the restart
    // fails first) and the usual slack: 3.06 s was seen once on a host running three suites.
    expect((back as number) - restartedAt).toBeLessThan(ACTIVE_INTERVAL_S * 1000 + CONFIG.active_health.timeout_s * 1000 + MARGIN_MS);
  });

  it('hang one (accepts, /health 200, never answers): no request held past its bound; retried where no byte was sent; only trial picks once stuck', async () => {
    // Round robin: nothing load-aware steers away from the hung replica; only its health does.
    const lb = await balancer({ strategy: 'round-robin' });
    const load = openLoop(lb, 6_000, 20_000);
    const samples = sampler(load.clock);
    await sleep(1_000);
    const hungAt = load.clock();
    await fault('r1', { hang: true });
    const sent = await load.done;
    const timeline = samples.stop();
    await fault('r1', { hang: false });
    await drained(lb);

    const streams = sent.filter((s) => s.stream);
    const plain = sent.filter((s) => !s.stream);
    const longestStream = Math.max(...streams.map((s) => s.elapsedMs));
    const longestPlain = Math.max(...plain.map((s) => s.elapsedMs));
    // Stuck detection's window: from stuck_after_s after the hang (+ a sampling slack) until its
    // first requests time out (then passive health ejects it anyway). Only trial picks, one per
    // stuck_after_s, may reach it there; round robin alone would send it a quarter of the traffic.
    const stuckFrom = hungAt + STUCK_AFTER_S * 1000 + 500;
    const stuckTo = hungAt + TIMEOUTS.stream_idle_s * 1000;
    const whileStuck = newRequestsBetween(timeline, 'r1', stuckFrom, stuckTo);
    const firstSecond = newRequestsBetween(timeline, 'r1', hungAt, hungAt + STUCK_AFTER_S * 1000);
    const lastToHung = lastNewRequestAt(timeline, 'r1');
    const failedStreams = streams.filter((s) => !s.ok);
    const status = row((await readStatus(lb)).replicas, 'r1');
    report('hang', {
      requests: sent.length,
      longestStreamMs: round(longestStream),
      longestNonStreamMs: round(longestPlain),
      nonStreamErrors: plain.filter((s) => !s.ok).length,
      streamErrorsAfterHeaders: failedStreams.filter((s) => s.byteReceived).length,
      streamErrorsBeforeAnyByte: failedStreams.filter((s) => !s.byteReceived).length,
      requestsOnHungInItsFirstStuckWindow: firstSecond,
      requestsOnHungWhileStuck: whileStuck,
      stuckWindowMs: round(stuckTo - stuckFrom),
      lastNewRequestOnHungAfterMs: round(lastToHung - hungAt),
      hungReplicaFailures: status.failures,
    });
    // Streams: cut after stream_idle_s of silence (their headers had gone: not retriable).
    expect(longestStream).toBeLessThan(TIMEOUTS.stream_idle_s * 1000 + MARGIN_MS);
    // Whole answers: response_s on the hung replica, then the retry's own answer.
    expect(longestPlain).toBeLessThan(TIMEOUTS.response_s * 1000 + MARGIN_MS);
    // No byte had been sent: every one was retried and succeeded.
    expect(plain.filter((s) => !s.ok).map((s) => s.error)).toEqual([]);
    expect(failedStreams.filter((s) => !s.byteReceived).map((s) => s.error)).toEqual([]);
    // Some requests did meet the hung replica (the test tested something)...
    expect(status.failures).toBeGreaterThan(0);
    // ...and once stuck, before any of its requests timed out, only trial picks: at most one per
    // stuck_after_s (+1: two workers may both take a trial at a window's edge).
    expect(firstSecond).toBeGreaterThan(2);
    expect(whileStuck).toBeLessThanOrEqual(Math.floor((stuckTo - stuckFrom) / (STUCK_AFTER_S * 1000)) + 2);
  });

  async function flaky(name: string, extra: Record<string, unknown>, bound: number): Promise<void> {
    const lb = await balancer(extra);
    await fault('r2', { errorRate: 0.3 });
    const load = openLoop(lb, 5_000, 10_000);
    const samples = sampler(load.clock);
    const sent = await load.done;
    const timeline = samples.stop();
    const flakyRequests = timeline[timeline.length - 1].requests.r2 - timeline[0].requests.r2;
    await drained(lb);
    const rows = (await readStatus(lb)).replicas;
    const failed = sent.filter((s) => !s.ok);
    const lastToFlaky = lastNewRequestAt(timeline, 'r2');
    report('errorRate 0.3 ' + name, {
      requests: sent.length,
      clientErrors: failed.length,
      clientErrorShare: Number((failed.length / sent.length).toFixed(4)),
      flakyEjections: row(rows, 'r2').ejections,
      flakyRequests,
      flakyShare: Number((flakyRequests / sent.length).toFixed(3)),
      lastNewRequestOnFlakyMs: round(lastToFlaky),
    });
    expect(row(rows, 'r2').ejections).toBeGreaterThanOrEqual(1);
    expect(failed.length / sent.length).toBeLessThanOrEqual(bound);
    // Every client error is the flaky replica's own 500 (only without retries).
    for (const s of failed) expect(s.status).toBe(500);
  }

  it('30% errors on one, with retry_on (default): ejected, and the client error share ~0', () => flaky('with retry_on', {}, 0.01));

  it('30% errors on one, without retries: ejected, and the client error share far below 12%', () => flaky('without retries', { retries: 0 }, 0.05));
});
