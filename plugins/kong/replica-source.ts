// Keeps the last known replica list of a Kong upstream, read in the background from the Admin API
// (admin-api.ts), so the access phase never waits on an HTTP call: it asks `current()`, which
// answers from memory. A failed read changes nothing but `lastError()`: the previous list stays,
// because Kong's proxying is still running on it and a stale list beats no list.

import { readUpstreamReplicas } from './admin-api';
import type { AdminApiOptions, AdminReadResult } from './admin-api';
import type { Replica } from '../../shared/types';

export interface ReplicaSourceOptions extends AdminApiOptions {
  intervalMs: number;
}

export interface ReplicaSnapshot {
  /** Shared by every caller until the next successful read: do not mutate. */
  replicas: Replica[];
  /** Date.now() of the successful read. */
  readAt: number;
}

export interface ReplicaSource {
  /** The last successfully read replicas, or null before the first success. Never blocks. */
  current(): ReplicaSnapshot | null;
  /** The last error, or null after a success. */
  lastError(): string | null;
  /** Resolves after the next read attempt completes (for tests and for a first read). */
  refreshNow(): Promise<void>;
  stop(): void;
}

/**
 * Sources live at module level: the plugin server recycles plugin instances after 60 s idle, and a
 * new instance must find the list (and the poller) the old one had rather than start cold.
 */
const sources: Record<string, ReplicaSource> = Object.create(null);

function sourceKey(options: ReplicaSourceOptions): string {
  // timeoutMs is part of the key too: a source built with another timeout would silently ignore
  // a configuration change to it.
  return JSON.stringify([options.adminUrl, options.upstream, options.token, options.intervalMs, options.timeoutMs]);
}

/**
 * One shared source per (adminUrl, upstream, token, intervalMs): plugin instances are recycled by
 * the plugin server every 60 s idle, the source must outlive them. Starts reading at once and then
 * every intervalMs (timer unref'd so it never keeps the process alive).
 */
export function replicaSourceFor(options: ReplicaSourceOptions, log?: (message: string) => void): ReplicaSource {
  const key = sourceKey(options);
  const known = sources[key];
  if (known !== undefined) return known;
  // The plugin server forwards its stderr to Kong's error log.
  const source = createReplicaSource(options, log !== undefined ? log : (message) => console.warn(message), () => {
    if (sources[key] === source) delete sources[key];
  });
  sources[key] = source;
  return source;
}

/** Stops and forgets every source (tests). */
export function stopAllReplicaSources(): void {
  for (const key of Object.keys(sources)) sources[key].stop();
}

function createReplicaSource(options: ReplicaSourceOptions, log: (message: string) => void, forget: () => void): ReplicaSource {
  const adminOptions: AdminApiOptions = {
    adminUrl: options.adminUrl,
    upstream: options.upstream,
    token: options.token,
    timeoutMs: options.timeoutMs,
  };
  let snapshot: ReplicaSnapshot | null = null;
  let error: string | null = null;
  let failedReads = 0;
  let lastFailureLoggedAt = -Infinity;
  let reading: Promise<void> | null = null;
  let stopped = false;

  function record(result: AdminReadResult): void {
    reading = null;
    if (stopped) return;
    const upstream = 'upstream ' + JSON.stringify(options.upstream);
    if (result.ok) {
      if (error !== null) {
        log('llm-balancer: Kong Admin API read of ' + upstream + ' recovered after ' + failedReads +
          (failedReads === 1 ? ' failed read' : ' failed reads') + ': ' + result.replicas.length +
          (result.replicas.length === 1 ? ' target' : ' targets'));
      }
      snapshot = { replicas: result.replicas, readAt: Date.now() };
      error = null;
      failedReads = 0;
      return;
    }
    error = result.error;
    failedReads++;
    // refreshNow() can add reads between timer ticks; a down Admin API still writes one line per
    // interval, not one per read.
    const now = Date.now();
    if (now - lastFailureLoggedAt < options.intervalMs) return;
    lastFailureLoggedAt = now;
    const fallback = snapshot !== null
      ? 'keeping the replicas read at ' + new Date(snapshot.readAt).toISOString()
      : "using the plugin's static replicas";
    log('llm-balancer: Kong Admin API read of ' + upstream + ' failed (' + fallback + '): ' + result.error);
  }

  /** Starts a read, or joins the one in flight: a slow Admin API never gets two reads at once. */
  function read(): Promise<void> {
    if (stopped) return Promise.resolve();
    if (reading !== null) return reading;
    // readUpstreamReplicas never rejects; the second handler is there so that, if it ever did,
    // `reading` would still be cleared instead of blocking every later read.
    reading = readUpstreamReplicas(adminOptions).then(record, (thrown: unknown) => {
      record({ ok: false, error: 'Kong Admin API read failed: ' + String(thrown) });
    });
    return reading;
  }

  const timer = setInterval(() => {
    void read();
  }, options.intervalMs);
  // A poller must never be the reason the plugin server stays up.
  timer.unref();
  void read();

  return {
    current: () => snapshot,
    lastError: () => error,
    refreshNow: read,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      forget();
    },
  };
}
