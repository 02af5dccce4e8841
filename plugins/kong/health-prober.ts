// Active health checks run by the plugin server itself (active_health.enabled): every interval_s
// a round GETs http://<address><active_health.path> of every replica the access phase would see
// right now (the Admin API targets or the static list, asked again at each round), all at once,
// each bounded by timeout_s (which the schema keeps below interval_s); 2xx and 3xx pass. Each
// result goes to the balancer's recordProbe (shared/health/active.ts): unhealthy_threshold failed
// probes in a row mark a replica down (no traffic), healthy_threshold passed ones bring it back,
// and a passing probe also ends a connect-error ejection. So a static replica that recovers gets
// traffic again within one interval of answering, and no client request has to be the trial that
// finds out.
// The loop is replica-rounds.ts, shared with metrics-scraper.ts: a round still running when the
// timer fires is joined, a stopped prober neither records nor logs, and each replica writes one log
// line when its probes start failing (with its id and address) and one when they pass again.

import type { Replica } from '../../shared/types';
import { fetchFailure } from './admin-api';
import { startReplicaRounds } from './replica-rounds';

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

/** Starts probing at once and then every intervalMs (replica-rounds.ts: the loop, its joining and log streaks). */
export function startHealthProber(options: HealthProberOptions, log?: (message: string) => void): HealthProber {
  const write = log !== undefined ? log : (message: string) => console.warn(message);
  const path = options.path.charAt(0) === '/' ? options.path : '/' + options.path;
  const rounds = startReplicaRounds<string | null>(
    {
      intervalMs: options.intervalMs,
      replicas: options.replicas,
      read: (replica) => probe('http://' + replica.address + path, options.timeoutMs),
      settle: (replica, problem) => {
        const healthy = options.record(replica.id, problem === null);
        const named = 'llm-balancer: active check of replica ' + replica.id + ' (' + replica.address + ')';
        return {
          problem: problem,
          failedLine: (why) =>
            named + ' failed: GET http://' + replica.address + path + ': ' + why + (healthy ? ' (taken out after active_health.unhealthy_threshold failures in a row)' : ' (out of service)'),
          recoveredLine: (failed) =>
            named + ' passes again after ' + failed + (failed === 1 ? ' failed probe' : ' failed probes') + (healthy ? '' : '; back in service after active_health.healthy_threshold passes'),
        };
      },
      roundFailedLine: 'llm-balancer: an active health check round failed',
    },
    write,
  );
  const prober: HealthProber = {
    probeNow: rounds.runNow,
    stop: () => {
      rounds.stop();
      running.delete(prober);
    },
  };
  running.add(prober);
  return prober;
}
