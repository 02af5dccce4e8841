// Scrapes the replicas' own /metrics in the background for the strategies that read replica load
// (readsReplicaLoad: llm), and hands every 200 answer's text to the balancer, which parses and
// timestamps it (shared/replica-metrics.ts). The access phase then reads the load from memory and
// never waits on a replica.
// How: a round at start, then one every interval; each round GETs
// http://<address><replica_metrics.path> of every replica the access phase would see right now
// (the Admin API targets or the static list, asked again at each round, so added and removed
// targets follow), all at once, each bounded by the timeout; the loop is replica-rounds.ts, shared
// with the active health prober.
// A failed scrape (refused, timed out, not 200) changes nothing: the replica's last values go stale
// by themselves after stale_after_s and the strategy counts in-flight requests instead. Each replica
// writes one log line when it starts failing and one when it recovers.

import type { Replica } from '../../shared/types';
import { fetchFailure } from './admin-api';
import { startReplicaRounds } from './replica-rounds';

export interface MetricsScraperOptions {
  /** replica_metrics.path, e.g. /metrics. */
  path: string;
  intervalMs: number;
  /** Per scrape, headers and body. */
  timeoutMs: number;
  /** The replicas to scrape, asked at each round. */
  replicas: () => Replica[];
  /** Receives a 200 answer's text; returns whether it held a usable load (Balancer.onReplicaMetrics). */
  record: (replicaId: string, text: string) => boolean;
}

export interface MetricsScraper {
  /** Resolves when the round in flight, or else a new one, has finished (tests). */
  scrapeNow(): Promise<void>;
  stop(): void;
}

/** Every running scraper, for stopAllMetricsScrapers (each plugin state owns and stops its own). */
const running = new Set<MetricsScraper>();

/** How many scrapers run (specs: a released plugin state must stop its own). */
export function runningMetricsScrapers(): number {
  return running.size;
}

/** Stops every scraper (specs, as stopAllReplicaSources does for the Admin API readers). */
export function stopAllMetricsScrapers(): void {
  for (const scraper of Array.from(running)) scraper.stop();
}

// Prometheus' own text format (0.0.4), the one the core parses: a server that can also write
// OpenMetrics (prometheus_client, as in vLLM) picks by Accept.
const ACCEPT = 'text/plain;version=0.0.4;q=1,*/*;q=0.1';

/** One scrape: the text of a 200 answer, or why there is none. Never throws. */
type ScrapeResult = { ok: true; text: string } | { ok: false; error: string };

async function scrape(url: string, timeoutMs: number): Promise<ScrapeResult> {
  // The signal covers the body too: a replica that stalls mid-answer is as stuck as a silent one.
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, { headers: { Accept: ACCEPT }, signal });
    const text = await response.text();
    return response.status === 200 ? { ok: true, text } : { ok: false, error: 'HTTP ' + response.status };
  } catch (error) {
    if (signal.aborted) return { ok: false, error: 'timed out after ' + timeoutMs + ' ms' };
    return { ok: false, error: fetchFailure(error) };
  }
}

/** Starts scraping at once and then every intervalMs (replica-rounds.ts: the loop, its joining and log streaks). */
export function startMetricsScraper(options: MetricsScraperOptions, log?: (message: string) => void): MetricsScraper {
  const write = log !== undefined ? log : (message: string) => console.warn(message);
  // A path without its leading slash would glue onto the port.
  const path = options.path.charAt(0) === '/' ? options.path : '/' + options.path;
  const rounds = startReplicaRounds<ScrapeResult>(
    {
      intervalMs: options.intervalMs,
      replicas: options.replicas,
      read: (replica) => scrape('http://' + replica.address + path, options.timeoutMs),
      settle: (replica, result) => {
        const url = 'http://' + replica.address + path;
        // A 200 without any vLLM or SGLang load in it (a wrong path, another server) is a failure
        // too, or it would go unnoticed.
        const problem = !result.ok ? result.error : options.record(replica.id, result.text) ? null : 'no vLLM or SGLang load metrics in the answer';
        return {
          problem: problem,
          failedLine: (why) => 'llm-balancer: scraping ' + url + ' failed (its last load counts until replica_metrics.stale_after_s, then its in-flight requests do): ' + why,
          recoveredLine: (failed) => 'llm-balancer: scraping ' + url + ' recovered after ' + failed + (failed === 1 ? ' failed scrape' : ' failed scrapes'),
        };
      },
      roundFailedLine: 'llm-balancer: a /metrics scrape round failed',
    },
    write,
  );
  const scraper: MetricsScraper = {
    scrapeNow: rounds.runNow,
    stop: () => {
      rounds.stop();
      running.delete(scraper);
    },
  };
  running.add(scraper);
  return scraper;
}
