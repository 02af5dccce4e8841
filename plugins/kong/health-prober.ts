// Active health checks run by the plugin server itself (active_health.enabled): every interval_s
// a round GETs http://<address><active_health.path> of every replica the access phase would see
// right now (the Admin API targets or the static list, asked again at each round), all at once,
// each bounded by timeout_s (which the schema keeps below interval_s); 2xx and 3xx pass. Each
// result goes to the balancer's recordProbe (shared/health/active.ts): unhealthy_threshold failed
// probes in a row mark a replica down (no traffic), healthy_threshold passed ones bring it back,
// and a passing probe also ends a connect-error ejection. So a static replica that recovers gets
// traffic again within one interval of answering, and no client request has to be the trial that
// finds out.
// As metrics-scraper.ts: a round still running when the timer fires is not joined by a second one;
// a stopped prober (its plugin state replaced or released) neither records nor logs; each replica
// writes one log line when its probes start failing (with its id and address) and one when they
// pass again, on console.warn, which the plugin server sends to Kong's error log.

import type { Replica } from '../../shared/types';
import { fetchFailure } from './admin-api';

export interface HealthProberOptions {
  /** active_health.path, e.g. /health. */
  path: string;
  intervalMs: number;
  /** Per probe, headers and body. */
  timeoutMs: number;
  /** The replicas to probe, asked at each round. */
  replicas: () => Replica[];
  /** Receives each probe result; returns whether the replica now counts as healthy (Balancer.onProbe). */
  record: (replicaId: string, passed: boolean) => boolean;
}

export interface HealthProber {
  /** Resolves when the round in flight, or else a new one, has finished (tests). */
  probeNow(): Promise<void>;
  stop(): void;
}

const running = new Set<HealthProber>();

/** How many probers run (specs: a released plugin state must stop its own). */
export function runningHealthProbers(): number {
  return running.size;
}

/** Stops every prober (specs). */
export function stopAllHealthProbers(): void {
  for (const prober of Array.from(running)) prober.stop();
}

/** One probe: null when it passed, else why not. Never throws. */
async function probe(url: string, timeoutMs: number): Promise<string | null> {
  // The signal covers the body too: a replica that stalls mid-answer fails its probe.
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, { signal });
    await response.arrayBuffer();
    return response.status >= 200 && response.status < 400 ? null : 'HTTP ' + response.status;
  } catch (error) {
    if (signal.aborted) return 'no answer within ' + timeoutMs + ' ms';
    return fetchFailure(error);
  }
}

/** Starts probing at once and then every intervalMs (timer unref'd: never the reason the plugin server stays up). */
export function startHealthProber(options: HealthProberOptions, log?: (message: string) => void): HealthProber {
  const write = log !== undefined ? log : (message: string) => console.warn(message);
  const path = options.path.charAt(0) === '/' ? options.path : '/' + options.path;
  /** Replica id -> failed probes in its current streak (absent: passing). */
  const failing: Record<string, number> = Object.create(null);
  let round: Promise<void> | null = null;
  let stopped = false;

  async function probeOne(replica: Replica): Promise<void> {
    const url = 'http://' + replica.address + path;
    const problem = await probe(url, options.timeoutMs);
    // A replaced plugin state's balancer is gone: neither feed it nor speak for it.
    if (stopped) return;
    const healthy = options.record(replica.id, problem === null);
    const failed = failing[replica.id];
    if (problem === null) {
      if (failed !== undefined) {
        write('llm-balancer: active check of replica ' + replica.id + ' (' + replica.address + ') passes again after ' + failed + (failed === 1 ? ' failed probe' : ' failed probes') + (healthy ? '' : '; back in service after active_health.healthy_threshold passes'));
        delete failing[replica.id];
      }
      return;
    }
    if (failed === undefined) {
      write('llm-balancer: active check of replica ' + replica.id + ' (' + replica.address + ') failed: GET ' + url + ': ' + problem + (healthy ? ' (taken out after active_health.unhealthy_threshold failures in a row)' : ' (out of service)'));
      failing[replica.id] = 1;
    } else {
      failing[replica.id] = failed + 1;
    }
  }

  async function probeAll(): Promise<void> {
    const replicas = options.replicas();
    const current: Record<string, true> = Object.create(null);
    const probes: Array<Promise<void>> = [];
    for (const replica of replicas) {
      current[replica.id] = true;
      probes.push(probeOne(replica));
    }
    await Promise.all(probes);
    // A target removed from the upstream takes its streak with it.
    for (const id of Object.keys(failing)) if (!current[id]) delete failing[id];
  }

  function probeNow(): Promise<void> {
    if (stopped) return Promise.resolve();
    if (round !== null) return round;
    round = probeAll()
      .catch((error: unknown) => {
        if (!stopped) write('llm-balancer: an active health check round failed: ' + String(error));
      })
      .then(() => {
        round = null;
      });
    return round;
  }

  const timer = setInterval(() => {
    void probeNow();
  }, options.intervalMs);
  timer.unref();

  const prober: HealthProber = {
    probeNow,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      running.delete(prober);
    },
  };
  running.add(prober);
  void probeNow();
  return prober;
}
