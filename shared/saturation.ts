// When is a pool full? Admission (issue 15) holds requests at the gateway only then: a request
// that would wait anyway waits here, where priority and fairness can order it, instead of in a
// replica's own queue, where it is stuck once sent (llm-d calls it scheduling regret).
//
// A replica is saturated, judged from what the balancer already knows:
//   - from its own /metrics (when scraped): requests waiting at or above admission.queue_threshold
//     per unit of weight, or KV-cache usage at or above admission.kv_threshold. The waiting count
//     is the scrape's plus this gateway's in-flight change since (as llm does: the scrape is up to
//     an interval old). Metrics missing or older than replica_metrics.stale_after_s count as
//     saturated: a replica that stopped reporting must not look idle (llm-d does the same).
//     Defaults are llm-d's saturation detector's: 5 waiting, 80% KV.
//   - from the in-flight count alone (admission.max_concurrency > 0): at or above that many
//     requests per unit of weight. Where no metrics are scraped this is the only signal; with
//     both, either saturates.
// The pool (the request's candidates: healthy, serving its model) is saturated when every one is.
// Pure: the balancer reads the store and hands the numbers in.

/** What one replica looks like to the saturation check. */
export interface LoadSignals {
  weight: number;
  /** This gateway's in-flight requests on it now. */
  inFlight: number;
  /** Waiting requests in its last scrape (null: not reported), and this gateway's in-flight count then. */
  waiting: number | null;
  inFlightAtScrape: number;
  /** KV-cache usage 0..1 in its last scrape (null: not reported). */
  kvUsage: number | null;
  /** Whether a scrape within replica_metrics.stale_after_s reported a queue or KV usage. */
  fresh: boolean;
}

export interface SaturationLimits {
  /** Judge by the replicas' /metrics (they are scraped for admission). */
  metrics: boolean;
  queueThreshold: number;
  kvThreshold: number;
  /** In-flight per unit of weight that saturates a replica; 0 = not judged by it. */
  maxConcurrency: number;
}

export type SaturationCause = 'queue' | 'kv' | 'stale' | 'concurrency';

/** Why the replica takes no more without queueing, or null when it has room. */
export function saturationOf(replica: LoadSignals, limits: SaturationLimits): SaturationCause | null {
  if (limits.maxConcurrency > 0 && replica.inFlight >= limits.maxConcurrency * replica.weight) return 'concurrency';
  if (!limits.metrics) return null;
  if (!replica.fresh) return 'stale';
  if (replica.kvUsage !== null && replica.kvUsage >= limits.kvThreshold) return 'kv';
  if (replica.waiting !== null) {
    const delta = replica.inFlight - replica.inFlightAtScrape;
    const waiting = replica.waiting + (delta > 0 ? delta : 0);
    if (waiting >= limits.queueThreshold * replica.weight) return 'queue';
  }
  return null;
}

/** Whether every replica of the pool is saturated (an empty pool is not: it has no replica to wait for). */
export function poolSaturated(replicas: LoadSignals[], limits: SaturationLimits): boolean {
  if (replicas.length === 0) return false;
  for (let i = 0; i < replicas.length; i++) if (saturationOf(replicas[i], limits) === null) return false;
  return true;
}

/**
 * How many more requests the replica takes before it is saturated (0: saturated now). Infinity
 * when nothing limits it (no in-flight bound, and a fresh scrape without a waiting count and below
 * the KV threshold). The waiting room (NGINX) grants that many waiting requests at once.
 */
export function replicaRoom(replica: LoadSignals, limits: SaturationLimits): number {
  if (saturationOf(replica, limits) !== null) return 0;
  let room = Infinity;
  if (limits.maxConcurrency > 0) room = Math.ceil(limits.maxConcurrency * replica.weight - replica.inFlight);
  if (limits.metrics && replica.waiting !== null) {
    const delta = replica.inFlight - replica.inFlightAtScrape;
    const waiting = replica.waiting + (delta > 0 ? delta : 0);
    const byQueue = Math.ceil(limits.queueThreshold * replica.weight - waiting);
    if (byQueue < room) room = byQueue;
  }
  return room > 0 ? room : 0;
}

/** The pool's room: the sum of its replicas' (Infinity when one is unbounded; 0 for an empty pool). */
export function poolRoom(replicas: LoadSignals[], limits: SaturationLimits): number {
  let room = 0;
  for (let i = 0; i < replicas.length; i++) room += replicaRoom(replicas[i], limits);
  return room;
}
