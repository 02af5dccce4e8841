// Chaos under open-loop load through "Kong": testbed/kong-gateway (Kong's nginx played in Node:
// set_timeouts and set_retries honoured, Kong's own 502/504) in front of the REAL
// kong-js-pluginserver running dist/kong/llm-balancer.js, over four emulated vLLM replicas
// (testbed/emulator, time scale 0.2) whose faults are switched through the emulator's admin API.
// Static replicas, active_health on (the plugin server probes them), short timeouts and windows so
// that each scenario fits in seconds. Requests arrive on a seeded Poisson schedule whatever the
// earlier ones are doing (open loop), short chats, streamed unless the scenario says otherwise.
//
// What a Kong JS plugin can and cannot do shapes the bounds: it picks before the request leaves
// and learns the outcome in the log phase, but it cannot move a failed request to another replica
// (no balancer phase). So on Kong a crash costs the requests in flight on the replica plus those
// picked before the plugin learned of it, and a hung replica's requests fail at their timeout.
// Every figure is printed (console.info) and recorded in BENCHMARKS.md "Faults" -> "Kong".
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import { startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplicas, FaultsPatch } from '../testbed/emulator/index';
import { arrivalTimesMs } from '../testbed/loadgen/arrivals';
import { createRequestGenerator } from '../testbed/loadgen/mixes';
import { createRandom } from '../testbed/loadgen/random';

// Ten short chats per second per replica at most; the emulated cards run 5x faster than an H100
// (a short chat takes ~0.1-0.4 s), so each replica holds one to three requests at a time.
const TIME_SCALE = 0.2;
const RATE_PER_S = 25;
const NAMES = ['r0', 'r1', 'r2', 'r3'];
// The client's own deadline: far above every bound under test, so a request held too long shows
// as its elapsed time instead of a client timeout.
const CLIENT_TIMEOUT_MS = 20_000;
// Bounds that define correctness get this much room for a loaded 2-core machine (the gateway, the
// plugin server, four replicas and this client share it).
const MARGIN_MS = 1_500;

// stream_idle_s well above the longest gap between two tokens of a healthy stream on a busy machine
// (a starved machine stalls healthy streams too), response_s above a whole short answer.
const TIMEOUTS = { connect_s: 1, response_s: 3, stream_idle_s: 3 };
const ACTIVE = { enabled: true, interval_s: 1, timeout_s: 0.5, unhealthy_threshold: 2, healthy_threshold: 1 };
const STUCK_AFTER_S = 1;

let fleet: EmulatedReplicas;
let adminUrl = '';
const gateways: KongGateway[] = [];

beforeAll(async () => {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  fleet = await startEmulatedReplicas(
    NAMES.map((name) => ({ name, profile: 'h100' })),
    { timeScale: TIME_SCALE, seed: 11, adminPort: 0 },
  );
  adminUrl = 'http://' + (fleet.admin as { address: string }).address;
});
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  for (const name of NAMES) await setFaults(name, { crash: false, hang: false, errorRate: 0 });
});
afterAll(async () => {
  await fleet?.close();
});

function post(url: string, body: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Switches a replica's faults through the emulator's admin API; resolves once done (a crash has closed its port). */
async function setFaults(name: string, patch: FaultsPatch): Promise<void> {
  const reply = await post(adminUrl + '/admin/replicas/' + name + '/faults', patch);
  if (reply.status !== 200) throw new Error('admin API: ' + reply.status + ' ' + reply.text);
}

interface StatusRow {
  id: string;
  state: string;
  in_flight: number;
  picks: number;
  failures: number;
  ejections: number;
}

async function statusOf(g: KongGateway): Promise<Record<string, StatusRow>> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(g.url + '/llm-balancer/status', { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  const rows: Record<string, StatusRow> = {};
  for (const row of (JSON.parse(text) as { replicas: StatusRow[] }).replicas) rows[row.id] = row;
  return rows;
}

async function startGateway(extra: Record<string, unknown>): Promise<KongGateway> {
  const config = Object.assign(
    {
      strategy: 'least-connections',
      replicas: fleet.replicas.map((r) => ({ id: r.name, address: r.address })),
      timeouts: TIMEOUTS,
      active_health: ACTIVE,
      kong: { stream_timeouts: true, status_path: '/llm-balancer/status' },
    },
    extra,
  );
  const g = await startKongGateway({ config });
  gateways.push(g);
  return g;
}

/** One request's fate, times in ms from the start of the run. */
interface Sent {
  atMs: number;
  endMs: number;
  elapsedMs: number;
  status: number;
  /** A 200 with a complete answer (the stream's [DONE], or a JSON body with choices). */
  ok: boolean;
  /** x-llm-replica of the answer; null when none arrived. */
  replica: string | null;
  stream: boolean;
}

/**
 * Sends a seeded Poisson schedule of short chats at RATE_PER_S for durationS, each at its time
 * whatever the others are doing, and resolves with every request's fate. `events` run at their
 * time on the same clock (faults, status reads) and may record what they saw.
 */
async function openLoop(
  g: KongGateway,
  options: { durationS: number; seed: number; stream: boolean; events: Array<{ atMs: number; run: (elapsedMs: () => number) => Promise<void> }> },
): Promise<{ sent: Sent[]; startedAt: number }> {
  const arrivals = arrivalTimesMs('poisson', RATE_PER_S, options.durationS, createRandom(options.seed, 'arrivals'));
  const next = createRequestGenerator({ seed: options.seed, mix: 'short-chat', model: 'emulated-llama-3.1-8b' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const startedAt = performance.now();
  const at = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, startedAt + ms - performance.now())));
  const one = async (atMs: number): Promise<Sent> => {
    const body = Object.assign({}, next().body) as unknown as Record<string, unknown>;
    if (!options.stream) {
      body.stream = false;
      delete body.stream_options;
    }
    await at(atMs);
    const sentAt = performance.now() - startedAt;
    const payload = JSON.stringify(body);
    return new Promise<Sent>((resolve) => {
      let status = 0;
      let replica: string | null = null;
      let text = '';
      let settled = false;
      const settle = (complete: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        const endMs = performance.now() - startedAt;
        const ok = complete && status === 200 && (options.stream ? text.includes('data: [DONE]') : text.includes('"choices"'));
        resolve({ atMs: sentAt, endMs, elapsedMs: endMs - sentAt, status, ok, replica, stream: options.stream });
      };
      const req = http.request(g.url + '/v1/chat/completions', { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        status = res.statusCode ?? 0;
        const header = res.headers['x-llm-replica'];
        replica = typeof header === 'string' ? header : null;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => settle(res.complete));
        res.on('error', () => settle(false));
        res.on('close', () => settle(false));
      });
      const deadline = setTimeout(() => {
        req.destroy();
        settle(false);
      }, CLIENT_TIMEOUT_MS);
      req.on('error', () => settle(false));
      req.end(payload);
    });
  };
  const elapsedMs = () => performance.now() - startedAt;
  const events = options.events.map(async (event) => {
    await at(event.atMs);
    await event.run(elapsedMs);
  });
  const sent = await Promise.all(arrivals.map((atMs) => one(atMs)));
  await Promise.all(events);
  agent.destroy();
  return { sent, startedAt };
}

const failed = (sent: Sent[]) => sent.filter((s) => !s.ok);
const pct = (part: number, whole: number) => (whole === 0 ? 0 : Math.round((1000 * part) / whole) / 10);

describe('Kong chaos (open-loop load, real plugin server, four emulated replicas)', () => {
  it('crash one of four, then restart it: client errors at most the requests in flight on it plus those picked before the plugin learned; back within one active check interval', async () => {
    const g = await startGateway({});
    const crashAtMs = 2_000;
    // The slow path: the active checks mark r1 down after unhealthy_threshold failed probes (the
    // round in flight, then one per interval, each failing at once: refused). From then on it gets
    // no picks at all, whatever the passive counts say.
    const markedDownWithinMs = (ACTIVE.unhealthy_threshold + 1) * ACTIVE.interval_s * 1000 + MARGIN_MS;
    const restartAtMs = crashAtMs + markedDownWithinMs + 1_000;
    const reads: Record<string, StatusRow> = {};
    // When r1 listens again (the admin call resolves once it does), on the run's clock.
    let listeningAtMs = Infinity;
    const read = (name: string) => async () => {
      reads[name] = (await statusOf(g)).r1;
    };
    const { sent } = await openLoop(g, {
      durationS: restartAtMs / 1000 + 2.5,
      seed: 101,
      stream: true,
      events: [
        {
          atMs: crashAtMs,
          run: async () => {
            await read('atCrash')();
            await setFaults('r1', { crash: true });
          },
        },
        { atMs: crashAtMs + markedDownWithinMs, run: read('markedDown') },
        {
          atMs: restartAtMs,
          run: async (elapsedMs) => {
            await read('beforeRestart')();
            await setFaults('r1', { crash: false });
            listeningAtMs = elapsedMs();
          },
        },
      ],
    });
    const errors = failed(sent);
    // The crash's errors: answers r1 began (cut streams), and requests without any answer (Kong's
    // 502 for a refusal names no replica). A machine starved of CPU can also fail streams on the
    // healthy replicas (silent past stream_idle_s): those name their replica and are counted apart.
    const onR1 = errors.filter((s) => s.replica === 'r1' || s.replica === null);
    const elsewhere = errors.length - onR1.length;
    // Every request picked for r1 after the status read at the crash failed (it was down until the
    // restart); those in flight on it at the crash may have been cut.
    const pickedWhileDown = reads.beforeRestart.picks - reads.atCrash.picks;
    const firstBackOnR1 = sent.filter((s) => s.ok && s.replica === 'r1' && s.atMs >= restartAtMs).sort((a, b) => a.atMs - b.atMs)[0];
    const backAfterMs = firstBackOnR1 === undefined ? Infinity : Math.max(0, firstBackOnR1.atMs - listeningAtMs);
    const lastErrorAfterMs = onR1.length === 0 ? 0 : Math.max(...onR1.map((s) => s.atMs)) - crashAtMs;
    console.info(
      `[kong-chaos] crash: ${sent.length} requests, ${onR1.length} client errors from the crash (${pct(onR1.length, sent.length)}%) and ${elsewhere} on the other replicas: ` +
        `${reads.atCrash.in_flight} in flight on r1 at the crash, ${pickedWhileDown} picked for r1 after it, the last failing request sent ${Math.round(lastErrorAfterMs)} ms after the crash; ` +
        `r1 ${reads.beforeRestart.state} with ${reads.beforeRestart.failures} failures; restart: first answer from r1 ${Math.round(backAfterMs)} ms after it listened again`,
    );
    if (process.env.CHAOS_DEBUG) console.info(JSON.stringify(errors.map((e) => [Math.round(e.atMs), Math.round(e.endMs), e.status, e.replica])));
    // The bound on Kong: what was on r1 when it died, and what was picked for it before the plugin
    // learned (a refused request is reported in its log phase, after the client got its 502).
    expect(onR1.length).toBeLessThanOrEqual(reads.atCrash.in_flight + pickedWhileDown);
    // Once the active checks marked it down: not one pick, so no error either.
    expect(reads.beforeRestart.picks).toBe(reads.markedDown.picks);
    expect(reads.beforeRestart.state).toBe('unhealthy');
    expect(onR1.filter((s) => s.atMs > crashAtMs + markedDownWithinMs)).toEqual([]);
    // Back within one active check interval of answering again (plus the margin), no trial
    // request failing on the way.
    expect(backAfterMs).toBeLessThanOrEqual(ACTIVE.interval_s * 1000 + MARGIN_MS);
    expect(g.errors()).toEqual([]);
  });

  it('hang one (round robin, non-streaming): no request waits past timeouts.response_s (+ margin); its requests fail with 504; after stuck_after_s it gets only trial picks', async () => {
    const g = await startGateway({ strategy: 'round-robin', passive_health: { stuck_after_s: STUCK_AFTER_S } });
    const hangAtMs = 1_500;
    const durationS = 7;
    let picksWhenStuck = 0;
    let picksAtEnd = 0;
    const stuckCheckAtMs = hangAtMs + STUCK_AFTER_S * 1000 + 500;
    const { sent } = await openLoop(g, {
      durationS,
      seed: 202,
      stream: false,
      events: [
        { atMs: hangAtMs, run: () => setFaults('r2', { hang: true }) },
        {
          atMs: stuckCheckAtMs,
          run: async () => {
            picksWhenStuck = (await statusOf(g)).r2.picks;
          },
        },
        {
          atMs: durationS * 1000,
          run: async () => {
            picksAtEnd = (await statusOf(g)).r2.picks;
          },
        },
      ],
    });
    const errors = failed(sent);
    const timedOut = errors.filter((s) => s.status === 504);
    const longest = Math.max(...sent.map((s) => s.elapsedMs));
    const lateWindowMs = durationS * 1000 - stuckCheckAtMs;
    const picksLate = picksAtEnd - picksWhenStuck;
    console.info(
      `[kong-chaos] hang: ${sent.length} requests, ${errors.length} client errors (${timedOut.length} of them Kong's 504), ` +
        `longest wait ${Math.round(longest)} ms (bound ${TIMEOUTS.response_s * 1000} ms), ` +
        `r2 picked ${picksLate} times in the last ${lateWindowMs} ms (round robin alone: ~${Math.round((RATE_PER_S * lateWindowMs) / 1000 / 4)})`,
    );
    // The bound: Kong's read timeout (response_s for a request not streaming) ends every wait.
    expect(longest).toBeLessThanOrEqual(TIMEOUTS.response_s * 1000 + MARGIN_MS);
    // Kong cannot move them to another replica: the hung replica's requests fail, as Kong's 504.
    expect(timedOut.length).toBeGreaterThan(0);
    expect(errors.every((s) => s.status === 504)).toBe(true);
    // Stuck detection: one trial pick per stuck_after_s at most, instead of a quarter of the traffic.
    expect(picksLate).toBeLessThanOrEqual(Math.ceil(lateWindowMs / (STUCK_AFTER_S * 1000)) + 1);
    expect(g.errors()).toEqual([]);
  });

  it('hang one (round robin, streaming): every stream on it is cut within stream_idle_s of its last byte; Kong logs those as 200s, so the plugin cannot tell (measured)', async () => {
    const g = await startGateway({ strategy: 'round-robin', passive_health: { stuck_after_s: STUCK_AFTER_S } });
    const hangAtMs = 1_500;
    const durationS = 6;
    let r2: StatusRow | null = null;
    const { sent } = await openLoop(g, {
      durationS,
      seed: 202,
      stream: true,
      events: [
        { atMs: hangAtMs, run: () => setFaults('r2', { hang: true }) },
        {
          atMs: durationS * 1000,
          run: async () => {
            r2 = (await statusOf(g)).r2;
          },
        },
      ],
    });
    const row = r2 as unknown as StatusRow;
    const errors = failed(sent);
    // A stream on the hung replica goes silent at the hang (those in flight) or right after its
    // headers (vLLM sends them at once, the engine never gets to the first token).
    const longestSilence = Math.max(0, ...errors.map((s) => s.endMs - Math.max(s.atMs, hangAtMs)));
    const afterHang = sent.filter((s) => s.atMs > hangAtMs);
    console.info(
      `[kong-chaos] hang, streaming: ${sent.length} requests, ${errors.length} client errors (${pct(errors.length, sent.length)}%), all cut after a 200; ` +
        `longest silence before the cut ${Math.round(longestSilence)} ms (bound ${TIMEOUTS.stream_idle_s * 1000} ms); ` +
        `r2 still ${row.state} with ${row.failures} failures; ${pct(errors.filter((s) => s.atMs > hangAtMs).length, afterHang.length)}% of the requests sent after the hang failed (round robin's share: 25%)`,
    );
    expect(errors.length).toBeGreaterThan(0);
    expect(longestSilence).toBeLessThanOrEqual(TIMEOUTS.stream_idle_s * 1000 + MARGIN_MS);
    // The headers went out before the silence: the client got a 200 and a stream without [DONE].
    expect(errors.every((s) => s.status === 200)).toBe(true);
    expect(g.errors()).toEqual([]);
  });

  it('30% errors on one (least-connections): ejected by its failure rate; the client error share stays well below 12%', async () => {
    const g = await startGateway({ passive_health: { failure_rate_window_s: 5 } });
    const faultAtMs = 500;
    let r3: StatusRow | null = null;
    const durationS = 8;
    const { sent } = await openLoop(g, {
      durationS,
      seed: 303,
      stream: true,
      events: [
        { atMs: faultAtMs, run: () => setFaults('r3', { errorRate: 0.3 }) },
        {
          atMs: durationS * 1000,
          run: async () => {
            r3 = (await statusOf(g)).r3;
          },
        },
      ],
    });
    const row = r3 as unknown as StatusRow;
    const errors = failed(sent);
    const share = errors.length / sent.length;
    const lastError = Math.max(...errors.map((s) => s.atMs));
    console.info(
      `[kong-chaos] 30% errors: ${sent.length} requests, ${errors.length} client errors (${pct(errors.length, sent.length)}%; ` +
        `r3 at its share of a 4-replica round robin alone: 7.5%), last failing request sent ${Math.round(lastError - faultAtMs)} ms after the fault, r3 ${row.state}, ${row.ejections} ejection(s)`,
    );
    expect(row.ejections).toBeGreaterThanOrEqual(1);
    expect(errors.every((s) => s.status === 500)).toBe(true);
    // Well below the 12% the issue measured, and below what r3 alone would pass on without ejection.
    expect(share).toBeLessThan(0.04);
    expect(g.errors()).toEqual([]);
  });
});
