// Scrapes the replicas' own /metrics in the background for the strategies that read replica load
// (readsReplicaLoad: llm), and hands every 200 answer's text to the balancer, which parses and
// timestamps it (shared/replica-metrics.ts). The access phase then reads the load from memory and
// never waits on a replica.
// How: a round at start, then one every interval; each round GETs
// http://<address><replica_metrics.path> of every replica the access phase would see right now
// (the Admin API targets or the static list, asked again at each round, so added and removed
// targets follow), all at once, each bounded by the timeout. A round still running when the timer
// fires (a replica hanging until its timeout) is not joined by a second one.
// A failed scrape (refused, timed out, not 200) changes nothing: the replica's last values go stale
// by themselves after stale_after_s and the strategy counts in-flight requests instead. Each replica
// writes one log line when it starts failing and one when it recovers, on console.warn as
// replica-source.ts does: the plugin server sends its stderr to Kong's error log.

import type { Replica } from '../../shared/types';
import { fetchFailure } from './admin-api';

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
async function scrape(url: string, timeoutMs: number): Promise<{ ok: true; text: string } | { ok: false; error: string }> {
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

/** Starts scraping at once and then every intervalMs (timer unref'd: never the reason the plugin server stays up). */
export function startMetricsScraper(options: MetricsScraperOptions, log?: (message: string) => void): MetricsScraper {
  const write = log !== undefined ? log : (message: string) => console.warn(message);
  // A path without its leading slash would glue onto the port.
  const path = options.path.charAt(0) === '/' ? options.path : '/' + options.path;
  /** Replica id -> failed scrapes in its current streak (absent: not failing). */
  const failing: Record<string, number> = Object.create(null);
  let round: Promise<void> | null = null;
  let stopped = false;

  async function scrapeOne(replica: Replica): Promise<void> {
    const url = 'http://' + replica.address + path;
    const result = await scrape(url, options.timeoutMs);
    // A replaced plugin state's balancer is gone: neither feed it nor speak for it.
    if (stopped) return;
    // A 200 without any vLLM or SGLang load in it (a wrong path, another server) is a failure too,
    // or it would go unnoticed.
    const problem = !result.ok ? result.error : options.record(replica.id, result.text) ? null : 'no vLLM or SGLang load metrics in the answer';
    const failed = failing[replica.id];
    if (problem === null) {
      if (failed !== undefined) {
        write('llm-balancer: scraping ' + url + ' recovered after ' + failed + (failed === 1 ? ' failed scrape' : ' failed scrapes'));
        delete failing[replica.id];
      }
      return;
    }
    if (failed === undefined) {
      write('llm-balancer: scraping ' + url + ' failed (its last load counts until replica_metrics.stale_after_s, then its in-flight requests do): ' + problem);
      failing[replica.id] = 1;
    } else {
      failing[replica.id] = failed + 1;
    }
  }

  async function scrapeAll(): Promise<void> {
    const replicas = options.replicas();
    const current: Record<string, true> = Object.create(null);
    const scrapes: Array<Promise<void>> = [];
    for (const replica of replicas) {
      current[replica.id] = true;
      scrapes.push(scrapeOne(replica));
    }
    await Promise.all(scrapes);
    // A target removed from the upstream takes its streak with it.
    for (const id of Object.keys(failing)) if (!current[id]) delete failing[id];
  }

  /** Starts a round, or joins the one in flight. */
  function scrapeNow(): Promise<void> {
    if (stopped) return Promise.resolve();
    if (round !== null) return round;
    // Nothing below should throw; if something does, the round still ends and the next one runs.
    round = scrapeAll()
      .catch((error: unknown) => {
        if (!stopped) write('llm-balancer: a /metrics scrape round failed: ' + String(error));
      })
      .then(() => {
        round = null;
      });
    return round;
  }

  const timer = setInterval(() => {
    void scrapeNow();
  }, options.intervalMs);
  timer.unref();

  const scraper: MetricsScraper = {
    scrapeNow,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      running.delete(scraper);
    },
  };
  running.add(scraper);
  void scrapeNow();
  return scraper;
}
