// NGINX Plus as the replica source (nginx.plus_api). `js_periodic llm_balancer.syncPeers` (one
// worker runs it) reads GET <url>/http/upstreams/<upstream>, maps the peers to replicas
// (plus-api.ts) and stores the list as JSON in the string zone `llm_balancer_peers`:
//   peers      [{id, address, weight, health, target}, ...]
//   synced_at  when that list was read (ms since the epoch, as a string)
// Every request's context (handlers.ts) routes on that list; until the first successful sync it
// routes on the static `replicas` of the config. A failed sync (no answer, not 200, not the
// documented JSON) keeps the last good list and logs one warning; the handler never throws.
//
// The proxy target of a replica is derived again from the CURRENT preloaded config whenever the
// list is read (linkPeers): a peer whose id and address match a configured replica goes to its
// keepalive `upstream {}` block, any other to its bare address (`proxy_pass http://ip:port` needs
// no resolver). So a list synced before a reload that changed the static replicas never sends a
// request to an upstream block that now means something else.
//
// Measured in njs 0.8.9: a js_periodic run still going at the next beat is killed with its
// fetches; the fetch is therefore bounded here, below the beat, so a hanging API is reported by
// this handler instead of silently killed.

import type { ReplicaConfig } from '../../shared/config/types';
import type { Replica, ReportedHealth } from '../../shared/types';
import type { PlusApiOptions, PreloadedConfig } from './names';
import { replicasFromPlusPeers } from './plus-api';
import type { PlusReplica } from './plus-api';
import { describeError, fetchText, host, peersDict, preloadedObject, systemClock } from './runtime';

export const PEERS_KEY = 'peers';
export const SYNCED_AT_KEY = 'synced_at';

/** The beat drifts a little; the fetch must give up before the next beat kills the run. */
const BEAT_SLACK_MS = 250;
const MIN_TIMEOUT_MS = 250;

/** GET url of the upstream's peers: `<url>/http/upstreams/<upstream>` (a trailing slash of url is ignored). */
export function peersUrl(options: PlusApiOptions): string {
  let base = String(options.url);
  while (base.length > 0 && base.charAt(base.length - 1) === '/') base = base.slice(0, base.length - 1);
  return base + '/http/upstreams/' + encodeURIComponent(String(options.upstream));
}

/** How long one sync waits for the API: below the beat, so the run ends before the next one starts. */
export function syncTimeoutMs(intervalS: number): number {
  const beat = typeof intervalS === 'number' && intervalS > 0 ? intervalS * 1000 : 1000;
  return Math.max(MIN_TIMEOUT_MS, beat - BEAT_SLACK_MS);
}

function isHealth(value: unknown): value is ReportedHealth {
  return value === 'healthy' || value === 'unhealthy' || value === 'draining';
}

/**
 * The replica list stored under `peers`, or null when there is none yet or it is not a list of
 * replicas (then the caller routes on the static config).
 */
export function parseStoredPeers(text: string | undefined): Replica[] | null {
  if (typeof text !== 'string' || text === '') return null;
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (e) {
    return null;
  }
  if (!Array.isArray(list)) return null;
  const replicas: Replica[] = [];
  for (let i = 0; i < list.length; i++) {
    const item = list[i] as { id?: unknown; address?: unknown; weight?: unknown; health?: unknown } | null;
    if (item === null || typeof item !== 'object' || typeof item.id !== 'string' || typeof item.address !== 'string' || typeof item.weight !== 'number') {
      return null;
    }
    const replica: Replica = { id: item.id, address: item.address, weight: item.weight };
    if (isHealth(item.health)) replica.health = item.health;
    replicas.push(replica);
  }
  return replicas;
}

/**
 * The proxy target per replica: the upstream block of the configured replica with the same id
 * and address (keepalive connections), else the bare address. A peer with a configured replica's
 * id also takes that replica's precomputed Store keys (`keys`, which depend on the id only).
 */
export function linkPeers(replicas: Replica[], configured: Replica[], upstreams: ArrayLike<string>): string[] {
  const known: Record<string, number> = Object.create(null);
  for (let i = 0; i < configured.length; i++) known[configured[i].id] = i;
  const targets: string[] = [];
  for (let i = 0; i < replicas.length; i++) {
    const replica = replicas[i];
    const j = known[replica.id];
    if (j !== undefined && configured[j].keys !== undefined) replica.keys = configured[j].keys;
    targets.push(j !== undefined && configured[j].address === replica.address && j < upstreams.length ? upstreams[j] : replica.address);
  }
  return targets;
}

/** The synced peer list and when it was read; null before the first successful sync (or when unreadable). */
export function readPeers(): { replicas: Replica[]; syncedAt: number } | null {
  const dict = peersDict();
  const replicas = parseStoredPeers(dict.get(PEERS_KEY));
  if (replicas === null) return null;
  const syncedAt = parseInt(String(dict.get(SYNCED_AT_KEY)), 10);
  return { replicas: replicas, syncedAt: isNaN(syncedAt) ? 0 : syncedAt };
}

/** When the stored peer list was read (0 when none is stored or the zone is missing): one string read. */
export function storedSyncedAt(): number {
  try {
    const syncedAt = parseInt(String(peersDict().get(SYNCED_AT_KEY)), 10);
    return isNaN(syncedAt) ? 0 : syncedAt;
  } catch (e) {
    return 0;
  }
}

/** The replicas to store: ids made unique (the first peer of an id wins; the core needs distinct ids). */
export function uniqueReplicas(replicas: PlusReplica[]): PlusReplica[] {
  const seen: Record<string, boolean> = Object.create(null);
  const out: PlusReplica[] = [];
  for (let i = 0; i < replicas.length; i++) {
    if (seen[replicas[i].id] === true) continue;
    seen[replicas[i].id] = true;
    out.push(replicas[i]);
  }
  return out;
}



/** GET url → the parsed JSON, or a sentence saying why not. Never rejects; gives up after timeoutMs. */
async function fetchDocument(url: string, timeoutMs: number): Promise<{ document: unknown } | string> {
  const got = await fetchText(url, timeoutMs);
  if (typeof got === 'string') return got;
  try {
    return { document: JSON.parse(got.text) };
  } catch (e) {
    return 'answered with a body that is not JSON (' + describeError(e) + ')';
  }
}

function copyStrings(list: ArrayLike<string>): string[] {
  // js_preload_object arrays have a null prototype: copy into a real array.
  const out: string[] = [];
  for (let i = 0; i < list.length; i++) out.push(String(list[i]));
  return out;
}

/** js_periodic handler: one read of the NGINX Plus upstream API. Never throws. */
export async function syncPeers(_session?: unknown): Promise<void> {
  const ngx = host();
  let where = 'the NGINX Plus API';
  let kept = 'the static replicas';
  try {
    const preloaded = preloadedObject() as PreloadedConfig | undefined;
    if (preloaded === undefined || preloaded === null || typeof preloaded !== 'object' || !preloaded.plusApi) return;
    const options = preloaded.plusApi;
    const url = peersUrl(options);
    where = 'GET ' + url;
    const dict = peersDict();
    const last = parseStoredPeers(dict.get(PEERS_KEY));
    if (last !== null) {
      const at = parseInt(String(dict.get(SYNCED_AT_KEY)), 10);
      kept = 'the last peer list (' + last.length + ' replicas' + (isNaN(at) ? '' : ', read at ' + new Date(at).toISOString()) + ')';
    }
    const answer = await fetchDocument(url, syncTimeoutMs(options.interval_s));
    if (typeof answer === 'string') {
      ngx.log(ngx.WARN, 'llm-balancer: NGINX Plus peer sync: ' + where + ' ' + answer + '; routing on ' + kept);
      return;
    }
    const configured = JSON.parse(JSON.stringify((preloaded.config as { replicas?: unknown }).replicas || [])) as ReplicaConfig[];
    const replicas = replicasFromPlusPeers(answer.document, configured, copyStrings(preloaded.upstreams || []));
    if (replicas === null) {
      ngx.log(ngx.WARN, 'llm-balancer: NGINX Plus peer sync: ' + where + ' answered JSON without the documented {peers: [{server, ...}]} shape; routing on ' + kept);
      return;
    }
    dict.set(PEERS_KEY, JSON.stringify(uniqueReplicas(replicas)));
    dict.set(SYNCED_AT_KEY, String(systemClock.now()));
  } catch (e) {
    ngx.log(ngx.WARN, 'llm-balancer: NGINX Plus peer sync: ' + where + ': ' + describeError(e) + '; routing on ' + kept);
  }
}
