// Per-replica metrics in the Store, under short keys (`r:<id>:<field>`): short because the njs
// shared dictionary holds them in a fixed-size zone. Reading builds the ReplicaView strategies see;
// writing happens only when a request starts or ends (selection never mutates metrics).

import type { MetricReads, Replica, ReplicaView, Store } from './types';
import { readEwma, updateEwma } from './ewma';
import { memoise } from './memo';
import type { LoadSignals } from './saturation';

/** Every Store key of one replica. */
export interface ReplicaKeys {
  inFlight: string;
  picks: string;
  failures: string;
  samples: string;
  ewma: string;
  ewmaAt: string;
  ttft: string;
  ttftAt: string;
  /** Time per output token (streamed responses whose body the gateway sees). */
  tpot: string;
  tpotAt: string;
  consecutiveFailures: string;
  ejections: string;
  ejectedUntil: string;
  ejectionLiftedAt: string;
  trialClaims: string;
  trialClaimedAt: string;
  probesPassed: string;
  probesFailed: string;
  markedDown: string;
  tokens: string;
  /** When the replica was first seen or last recovered (slow start). */
  availableSince: string;
  /** The replica's own /metrics: running, waiting, KV-cache usage, and when they were read. */
  loadRunning: string;
  loadWaiting: string;
  loadKv: string;
  loadAt: string;
  /** This gateway's in-flight count when the load was recorded (see buildView). */
  loadInFlight: string;
  /** Consecutive connect errors (passive health: a refused connection ejects sooner). */
  consecutiveConnectErrors: string;
  /** Why the replica was last ejected (EJECTED_FOR_* in health/passive.ts). */
  ejectedFor: string;
  /** Decaying counts of ended and failed attempts, and when they were last decayed (failure-rate ejection). */
  rateRequests: string;
  rateFailures: string;
  rateAt: string;
  /** When the in-flight count last rose from 0, and when the replica last showed progress (stuck detection). */
  busySince: string;
  progressAt: string;
  /** When a stuck replica was last let back among the candidates for one pick. */
  stuckTrialAt: string;
}

export function buildKeys(id: string): ReplicaKeys {
  const p = 'r:' + id + ':';
  return {
    inFlight: p + 'if',
    picks: p + 'pk',
    failures: p + 'fl',
    samples: p + 'ns',
    ewma: p + 'ew',
    ewmaAt: p + 'ea',
    ttft: p + 'tt',
    ttftAt: p + 'ta',
    tpot: p + 'tp',
    tpotAt: p + 'tq',
    consecutiveFailures: p + 'cf',
    ejections: p + 'ej',
    ejectedUntil: p + 'eu',
    ejectionLiftedAt: p + 'el',
    trialClaims: p + 'tc',
    trialClaimedAt: p + 'tca',
    probesPassed: p + 'ap',
    probesFailed: p + 'af',
    markedDown: p + 'ad',
    tokens: p + 'tk',
    availableSince: p + 'as',
    loadRunning: p + 'lr',
    loadWaiting: p + 'lw',
    loadKv: p + 'lk',
    loadAt: p + 'la',
    loadInFlight: p + 'li',
    consecutiveConnectErrors: p + 'cc',
    ejectedFor: p + 'ef',
    rateRequests: p + 'rr',
    rateFailures: p + 'rf',
    rateAt: p + 'ra',
    busySince: p + 'bs',
    progressAt: p + 'pa',
    stuckTrialAt: p + 'st',
  };
}

/**
 * The replica's prefix-cache counters from its /metrics (tokens looked up, tokens found), stored
 * under `r:<id>` + these. Not in ReplicaKeys: NGINX preloads every replica's keys in the config each
 * request parses, and only the scrape (balancer.onReplicaMetrics) and the status page touch these.
 */
const PREFIX_QUERIES_SUFFIX = ':lq';
const PREFIX_HITS_SUFFIX = ':lh';

/** Keeps the replica's last scraped prefix-cache counters; a counter the scrape did not have is removed, not kept from an older one. */
export function recordPrefixCounters(store: Store, id: string, queries: number | null, hits: number | null): void {
  const p = 'r:' + id;
  if (queries === null) store.delete(p + PREFIX_QUERIES_SUFFIX);
  else store.set(p + PREFIX_QUERIES_SUFFIX, queries);
  if (hits === null) store.delete(p + PREFIX_HITS_SUFFIX);
  else store.set(p + PREFIX_HITS_SUFFIX, hits);
}

/** The replica's last scraped prefix-cache counters (null where none is kept). */
export function readPrefixCounters(store: Store, id: string): { queries: number | null; hits: number | null } {
  const queries = store.get('r:' + id + PREFIX_QUERIES_SUFFIX);
  const hits = store.get('r:' + id + PREFIX_HITS_SUFFIX);
  return { queries: queries === undefined ? null : queries, hits: hits === undefined ? null : hits };
}

// Memoised per id: concatenating key strings on every read was most of a pick's cost under Node
// (a fresh string must be hashed for each lookup). 4096 ids bound the memo when replicas churn.
export const keysOf: (id: string) => ReplicaKeys = memoise(buildKeys, 4096);

/** A stored number, 0 when absent. */
export function readNumber(store: Store, key: string): number {
  const value = store.get(key);
  return value === undefined ? 0 : value;
}

/**
 * The latency estimate at `now`, or null before the first sample.
 * Decayed toward zero since the last sample (see ewma.ts for why).
 */
export function readLatency(store: Store, keys: ReplicaKeys, now: number, halfLifeMs: number): number | null {
  if (readNumber(store, keys.samples) === 0) return null;
  return readEwma(readNumber(store, keys.ewma), readNumber(store, keys.ewmaAt), now, halfLifeMs);
}

/** The time-to-first-byte estimate at `now`, or null before the first TTFT sample. */
export function readTtft(store: Store, keys: ReplicaKeys, now: number, halfLifeMs: number): number | null {
  const ttft = store.get(keys.ttft);
  if (ttft === undefined) return null;
  return readEwma(ttft, readNumber(store, keys.ttftAt), now, halfLifeMs);
}

/** The time-per-output-token estimate at `now`, or null before the first TPOT sample. */
export function readTpot(store: Store, keys: ReplicaKeys, now: number, halfLifeMs: number): number | null {
  const tpot = store.get(keys.tpot);
  if (tpot === undefined) return null;
  return readEwma(tpot, readNumber(store, keys.tpotAt), now, halfLifeMs);
}

/** What response_time.latency_metric names: the estimate latency-reading strategies see. */
export type LatencyMetric = 'e2e' | 'ttft' | 'tpot';

function readMetric(store: Store, keys: ReplicaKeys, now: number, halfLifeMs: number, metric: LatencyMetric | undefined): number | null {
  if (metric === 'ttft') return readTtft(store, keys, now, halfLifeMs);
  if (metric === 'tpot') return readTpot(store, keys, now, halfLifeMs);
  return readEwma(readNumber(store, keys.ewma), readNumber(store, keys.ewmaAt), now, halfLifeMs);
}

// What a view shows for a metric its strategy did not declare. Views are built for every
// candidate of every pick, and under njs (a fresh VM per request) every property of every object
// built costs ~0.1 µs: a view's own properties are only the ones every strategy reads and the
// metrics its strategy declared; the rest are read, with the same neutral values as before, from
// this shared prototype. Built on first use (njs evaluates the module's top level per request);
// never frozen, since a frozen prototype would make assignments to a view's own fields fail.
let unread: ReplicaView | null = null;

function unreadMetrics(): ReplicaView {
  if (unread === null) {
    unread = { id: '', address: '', weight: 0, inFlight: 0, ewmaMs: null, samples: 0, tokens: 0, queue: null, kvUsage: null, halfOpen: false };
  }
  return unread;
}

/**
 * A view showing every metric at its neutral value (from the shared prototype): what buildView
 * fills, and what the balancer keeps to fill again at the next pick.
 */
export function blankView(): ReplicaView {
  return Object.create(unreadMetrics()) as ReplicaView;
}

/**
 * The view of one replica. Only the metrics the strategy declared are read (the rest read 0 /
 * null): a round-robin pick should not pay for latency reads it never looks at.
 * `into`: a view to fill instead of a new one (the balancer reuses its views from pick to pick,
 * balancer.ts). Every declared field is written, so nothing of the replica it showed last
 * remains; the undeclared ones are never written and keep their neutral values.
 */
export function buildView(
  store: Store,
  replica: Replica,
  keys: ReplicaKeys,
  reads: MetricReads,
  now: number,
  halfLifeMs: number,
  halfOpen: boolean,
  weightFactor?: number,
  loadFreshMs?: number,
  latencyMetric?: LatencyMetric,
  /** The in-flight count when the caller already read it for this pick. */
  knownInFlight?: number,
  into?: ReplicaView,
): ReplicaView {
  const view = into !== undefined ? into : blankView();
  view.id = replica.id;
  view.address = replica.address;
  // Slow start scales the weight of a replica that just became available (balancer.ts).
  view.weight = weightFactor === undefined ? replica.weight : replica.weight * weightFactor;
  view.halfOpen = halfOpen;
  let inFlightNow = knownInFlight;
  if (inFlightNow === undefined && reads.inFlight) inFlightNow = readNumber(store, keys.inFlight);
  if (reads.inFlight && inFlightNow !== undefined) {
    // In-flight counts are decremented by a log handler; never let a lost race show a negative load.
    view.inFlight = inFlightNow > 0 ? inFlightNow : 0;
  }
  if (reads.replicaLoad) {
    let queue: number | null = null;
    let kvUsage: number | null = null;
    const at = store.get(keys.loadAt);
    // Values older than loadFreshMs are stale: a replica that stopped answering /metrics must not
    // keep looking idle.
    if (at !== undefined && (loadFreshMs === undefined || now - at <= loadFreshMs)) {
      const running = store.get(keys.loadRunning);
      const waiting = store.get(keys.loadWaiting);
      if (running !== undefined || waiting !== undefined) {
        // The scrape is up to an interval old, and every gateway that trusted it as is would send
        // the whole interval's traffic to the replica that looked lightest (a herd: measured in
        // the shootout). So this gateway's own requests since the scrape are added: the queue then,
        // plus in-flight now minus in-flight then (other gateways' changes show at the next scrape).
        const then = readNumber(store, keys.loadInFlight);
        const delta = (inFlightNow !== undefined ? inFlightNow : readNumber(store, keys.inFlight)) - then;
        const scraped = (running === undefined ? 0 : running) + (waiting === undefined ? 0 : waiting);
        queue = scraped + delta > 0 ? scraped + delta : 0;
      }
      const kv = store.get(keys.loadKv);
      if (kv !== undefined) kvUsage = kv;
    }
    view.queue = queue;
    view.kvUsage = kvUsage;
  }
  if (reads.latency) {
    const samples = readNumber(store, keys.samples);
    view.samples = samples;
    view.ewmaMs = samples > 0 ? readMetric(store, keys, now, halfLifeMs, latencyMetric) : null;
  }
  if (reads.tokens) {
    const tokens = readNumber(store, keys.tokens);
    view.tokens = tokens > 0 ? tokens : 0;
  }
  return view;
}

/**
 * What the admission check needs of one replica (shared/saturation.ts): its in-flight count and
 * its last scrape's waiting queue and KV usage, fresh when read within `freshMs`.
 */
export function loadSignals(store: Store, keys: ReplicaKeys, weight: number, now: number, freshMs: number): LoadSignals {
  const inFlight = readNumber(store, keys.inFlight);
  const at = store.get(keys.loadAt);
  const fresh = at !== undefined && now - at <= freshMs;
  const waiting = fresh ? store.get(keys.loadWaiting) : undefined;
  const kv = fresh ? store.get(keys.loadKv) : undefined;
  return {
    weight: weight,
    inFlight: inFlight > 0 ? inFlight : 0,
    waiting: waiting === undefined ? null : waiting,
    inFlightAtScrape: fresh ? readNumber(store, keys.loadInFlight) : 0,
    kvUsage: kv === undefined ? null : kv,
    // A scrape counts when it reported a queue or KV usage (running alone says nothing of room).
    fresh: fresh && (waiting !== undefined || kv !== undefined),
  };
}

/**
 * What a replica's /metrics said (replica-metrics.ts), read by the adapter's scraper. Fields the
 * text did not have are removed, not kept from an older scrape; nothing usable at all records
 * nothing, so the last good values age out and go stale.
 */
export function recordReplicaLoad(store: Store, keys: ReplicaKeys, running: number | null, waiting: number | null, kvUsage: number | null, now: number): boolean {
  if (running === null && waiting === null && kvUsage === null) return false;
  setOrDelete(store, keys.loadRunning, running);
  setOrDelete(store, keys.loadWaiting, waiting);
  setOrDelete(store, keys.loadKv, kvUsage);
  store.set(keys.loadInFlight, readNumber(store, keys.inFlight));
  store.set(keys.loadAt, now);
  return true;
}

function setOrDelete(store: Store, key: string, value: number | null): void {
  if (value === null) store.delete(key);
  else store.set(key, value);
}

/**
 * An attempt begins: one more in flight, and its estimated tokens (0 when not counted). With
 * `now` (stuck detection on), an idle replica becoming busy notes when: its requests are judged
 * from then, not from a completion long ago.
 */
export function recordStart(store: Store, keys: ReplicaKeys, tokens: number, now?: number): void {
  const inFlight = store.incr(keys.inFlight, 1, 0);
  if (now !== undefined && inFlight <= 1) store.set(keys.busySince, now);
  store.incr(keys.picks, 1, 0);
  if (tokens > 0) store.incr(keys.tokens, tokens, 0);
}

/** The attempt ended: release what recordStart counted (never below 0 after a lost race or a reset zone). */
export function recordEnd(store: Store, keys: ReplicaKeys, tokens: number): void {
  if (store.incr(keys.inFlight, -1, 0) < 0) store.set(keys.inFlight, 0);
  if (tokens > 0 && store.incr(keys.tokens, -tokens, 0) < 0) store.set(keys.tokens, 0);
}

/** Folds one latency sample (and time to first byte / per output token, when known) into the replica's estimates. */
export function recordLatency(
  store: Store,
  keys: ReplicaKeys,
  latencyMs: number,
  ttftMs: number | null,
  tpotMs: number | null,
  now: number,
  halfLifeMs: number,
  peakSensitive: boolean,
): void {
  // The estimate exists from the first sample on (set here with the sample count).
  const stored = store.get(keys.ewma);
  const previous = stored === undefined ? null : stored;
  store.set(keys.ewma, updateEwma(previous, readNumber(store, keys.ewmaAt), latencyMs, now, halfLifeMs, peakSensitive));
  store.set(keys.ewmaAt, now);
  if (ttftMs !== null) {
    const previousTtft = store.get(keys.ttft);
    const ttft = updateEwma(previousTtft === undefined ? null : previousTtft, readNumber(store, keys.ttftAt), ttftMs, now, halfLifeMs, peakSensitive);
    store.set(keys.ttft, ttft);
    store.set(keys.ttftAt, now);
  }
  if (tpotMs !== null) {
    const previousTpot = store.get(keys.tpot);
    store.set(keys.tpot, updateEwma(previousTpot === undefined ? null : previousTpot, readNumber(store, keys.tpotAt), tpotMs, now, halfLifeMs, peakSensitive));
    store.set(keys.tpotAt, now);
  }
  store.incr(keys.samples, 1, 0);
}
