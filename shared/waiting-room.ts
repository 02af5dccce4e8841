// The waiting room of the NGINX module (admission.*, issue 15): requests of a saturated pool wait
// here, across all nginx workers, until the pool has room. Kong's plugin server is one process and
// keeps its queue in memory (shared/admission-queue.ts); nginx has several workers and, under the
// njs engine, no memory that outlives a request, so this queue lives in a shared dict zone (a
// number-typed js_shared_dict_zone with a timeout) and every decision is a few atomic dict calls.
//
// Keys (pool and tenant URI-encoded, so `|` never appears inside one):
//   w|seq|band|tag|deadline|pool|tenant   a waiting request: everything the order needs is in the
//                                         key, so a dispatch round reads keys() and no values
//   g|seq|pool     granted: the pool had room for it (short-lived; consumed when its pick starts)
//   x|seq          displaced by a request of a higher band while the queue was full
//   n|pool         how many wait in the pool (newcomers queue behind them instead of overtaking)
//   vt|band|pool   the band's virtual time: the fairness tag of the last request granted
//   t|band|pool|tenant  the tenant's last fairness tag
//   round          held for ROUND_MS by whoever runs the dispatch round (one round per ROUND_MS)
//
// Ownership: a waiting entry's fate belongs to whoever deletes its w| key (dict.delete answers
// whether the key was there): the dispatcher (then g|), a displacing newcomer (then x|), the waiter
// at its deadline (timeout) or the client's departure (the log phase). So every request leaves the
// queue exactly once, whichever worker sees what first.
//
// Order: strict by band (higher first); within a band by fairness tag, then arrival. Tags are
// start-time fair queueing's: a newcomer's tag is one past the later of the band's virtual time
// and its tenant's last tag, so a tenant with 50 waiting and one with 1 interleave (1, 1, 2, 3, ...
// vs 1) instead of the 50 going first; a tenant arriving late starts at the virtual time, not behind
// the backlog of the others. With fairness none every request has the same tenant: FIFO per band.
// Kept in the njs subset (no class, for-of, spread, Map...): the njs module runs it.

/** The slice of njs's ngx.shared dict (number-typed, declared with a timeout) the room uses. */
export interface WaitingDict {
  get(key: string): number | undefined;
  /** ttlMs: this entry's expiry (the zone's timeout when absent). */
  set(key: string, value: number, ttlMs?: number): void;
  /** Adds only when absent; returns whether it did. */
  add(key: string, value: number, ttlMs?: number): boolean;
  /** Returns whether the key was there. */
  delete(key: string): boolean;
  incr(key: string, delta: number, init?: number): number;
  keys(): string[];
}

/** One waiting request, as its key tells it. */
export interface WaitingEntry {
  seq: number;
  band: number;
  tag: number;
  /** ms since the epoch. */
  deadline: number;
  pool: string;
  tenant: string;
  /** The w| key itself (its ticket). */
  key: string;
}

/** A dispatch round runs at most this often, whoever runs it. */
export const ROUND_MS = 20;
/** A grant not consumed within this long (its request vanished) stops counting against the pool's room. */
export const GRANT_TTL_MS = 5000;

const SEQ_KEY = 'seq';
const ROUND_KEY = 'round';

function poolCountKey(pool: string): string {
  return 'n|' + encodeURIComponent(pool);
}

function grantKey(seq: number, pool: string): string {
  return 'g|' + seq + '|' + encodeURIComponent(pool);
}

function displacedKey(seq: number): string {
  return 'x|' + seq;
}

function virtualTimeKey(band: number, pool: string): string {
  return 'vt|' + band + '|' + encodeURIComponent(pool);
}

function tenantTagKey(band: number, pool: string, tenant: string): string {
  return 't|' + band + '|' + encodeURIComponent(pool) + '|' + encodeURIComponent(tenant);
}

/** The entry a w| key names, or null for any other key (or a malformed one). */
export function parseTicket(key: string): WaitingEntry | null {
  if (key.charAt(0) !== 'w' || key.charAt(1) !== '|') return null;
  const parts = key.split('|');
  if (parts.length !== 7) return null;
  const seq = Number(parts[1]);
  const band = Number(parts[2]);
  const tag = Number(parts[3]);
  const deadline = Number(parts[4]);
  if (isNaN(seq) || isNaN(band) || isNaN(tag) || isNaN(deadline)) return null;
  let pool: string;
  let tenant: string;
  try {
    pool = decodeURIComponent(parts[5]);
    tenant = decodeURIComponent(parts[6]);
  } catch (e) {
    return null;
  }
  return { seq: seq, band: band, tag: tag, deadline: deadline, pool: pool, tenant: tenant, key: key };
}

function ticketOf(seq: number, band: number, tag: number, deadline: number, pool: string, tenant: string): string {
  return 'w|' + seq + '|' + band + '|' + tag + '|' + deadline + '|' + encodeURIComponent(pool) + '|' + encodeURIComponent(tenant);
}

/** Queue order: higher band first, then lower fairness tag, then earlier arrival. */
export function waitingOrder(a: WaitingEntry, b: WaitingEntry): number {
  if (a.band !== b.band) return b.band - a.band;
  if (a.tag !== b.tag) return a.tag - b.tag;
  return a.seq - b.seq;
}

/** Whether anyone waits in the pool: a newcomer then queues behind them even if it sees room. */
export function someoneWaits(dict: WaitingDict, pool: string): boolean {
  const n = dict.get(poolCountKey(pool));
  return n !== undefined && n > 0;
}

export type EnterResult =
  | { queued: true; entry: WaitingEntry; displaced: WaitingEntry | null }
  | { queued: false; displaced: null };

/** Every waiting entry (parsed keys), in no particular order. */
export function waitingEntries(dict: WaitingDict): WaitingEntry[] {
  const keys = dict.keys();
  const out: WaitingEntry[] = [];
  for (let i = 0; i < keys.length; i++) {
    const entry = parseTicket(keys[i]);
    if (entry !== null) out.push(entry);
  }
  return out;
}

/** Takes the entry out of the queue if it is still there; true when this caller did (and owns its fate). */
function takeOut(dict: WaitingDict, entry: WaitingEntry): boolean {
  if (!dict.delete(entry.key)) return false;
  const left = dict.incr(poolCountKey(entry.pool), -1, 0);
  if (left <= 0) dict.delete(poolCountKey(entry.pool));
  return true;
}

/**
 * A request joins the pool's queue (band ≥ 0: sheddable bands never wait). With the pool at
 * maxQueue it takes the place of the newest request of the lowest band below its own, or is not
 * queued (full).
 */
export function enter(dict: WaitingDict, pool: string, band: number, tenant: string, deadline: number, maxQueue: number): EnterResult {
  let displaced: WaitingEntry | null = null;
  const waiting = dict.get(poolCountKey(pool));
  if (waiting !== undefined && waiting >= maxQueue) {
    const entries = waitingEntries(dict);
    // Several tries: another worker may take the chosen victim out first.
    for (let attempt = 0; attempt < 3 && displaced === null; attempt++) {
      let victim: WaitingEntry | null = null;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        if (e.pool !== pool || e.band >= band) continue;
        if (victim === null || e.band < victim.band || (e.band === victim.band && e.seq > victim.seq)) victim = e;
      }
      if (victim === null) break;
      if (takeOut(dict, victim)) {
        dict.set(displacedKey(victim.seq), 1);
        displaced = victim;
      } else {
        entries.splice(entries.indexOf(victim), 1);
      }
    }
    if (displaced === null) return { queued: false, displaced: null };
  }
  const seq = dict.incr(SEQ_KEY, 1, 0);
  const vtKey = virtualTimeKey(band, pool);
  const tKey = tenantTagKey(band, pool, tenant);
  const virtualTime = dict.get(vtKey);
  const last = dict.get(tKey);
  const vt = virtualTime === undefined ? 0 : virtualTime;
  const tag = (last !== undefined && last > vt ? last : vt) + 1;
  dict.set(tKey, tag);
  // Written back to keep it alive as long as the tags that build on it (the zone's timeout).
  dict.set(vtKey, vt);
  const key = ticketOf(seq, band, tag, deadline, pool, tenant);
  dict.set(key, 1);
  dict.incr(poolCountKey(pool), 1, 0);
  return { queued: true, entry: parseTicket(key) as WaitingEntry, displaced: displaced };
}

export type WaitVerdict = 'go' | 'displaced' | 'timeout' | 'gone' | 'waiting';

/**
 * What became of a waiting request, checked by the waiter on each of its ticks. `missingBefore`:
 * its entry was already missing without a verdict at the previous tick (the verdict's key is
 * written right after the entry's removal, by another worker: one tick is the grace).
 */
export function verdictOf(dict: WaitingDict, entry: WaitingEntry, now: number, missingBefore: boolean): WaitVerdict {
  if (dict.get(grantKey(entry.seq, entry.pool)) !== undefined) return 'go';
  if (dict.get(displacedKey(entry.seq)) !== undefined) {
    dict.delete(displacedKey(entry.seq));
    return 'displaced';
  }
  if (now >= entry.deadline) {
    if (takeOut(dict, entry)) return 'timeout';
    // Someone else took it out a moment ago: its verdict comes next tick.
    return missingBefore ? 'gone' : 'waiting';
  }
  if (dict.get(entry.key) === undefined) return missingBefore ? 'gone' : 'waiting';
  return 'waiting';
}

/** Whether the entry's key is gone with no verdict (see verdictOf's missingBefore). */
export function entryMissing(dict: WaitingDict, entry: WaitingEntry): boolean {
  return dict.get(entry.key) === undefined && dict.get(grantKey(entry.seq, entry.pool)) === undefined && dict.get(displacedKey(entry.seq)) === undefined;
}

/** The granted request's pick has started (its in-flight count now holds its place): the grant is spent. */
export function consumeGrant(dict: WaitingDict, entry: WaitingEntry): void {
  dict.delete(grantKey(entry.seq, entry.pool));
}

/** The client left while waiting (or before its grant was used): out of the queue. True when it was still waiting. */
export function leave(dict: WaitingDict, entry: WaitingEntry): boolean {
  dict.delete(grantKey(entry.seq, entry.pool));
  return takeOut(dict, entry);
}

/** Claims this ROUND_MS's dispatch round (at most one per ROUND_MS across all workers). */
export function claimRound(dict: WaitingDict): boolean {
  return dict.add(ROUND_KEY, 1, ROUND_MS);
}

/**
 * One dispatch round: per pool, grants as many of the first waiting requests (queue order) as the
 * pool has room for, less the grants not yet consumed. `roomOf(pool)` asks the balancer (its
 * in-flight counts and scraped load, shared/saturation.ts). Entries past their deadline are left
 * to their waiters (who answer them), or dropped once well past it (a waiter that vanished).
 * Returns the entries granted.
 */
export function dispatchRound(dict: WaitingDict, now: number, roomOf: (pool: string) => number): WaitingEntry[] {
  const keys = dict.keys();
  const byPool: Record<string, WaitingEntry[]> = Object.create(null);
  const outstanding: Record<string, number> = Object.create(null);
  const pools: string[] = [];
  // The n| counts seen: each is set to what the scan found once the round is done.
  const counted: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (key.charAt(0) === 'n' && key.charAt(1) === '|') {
      counted.push(key);
      continue;
    }
    if (key.charAt(0) === 'g' && key.charAt(1) === '|') {
      const cut = key.indexOf('|', 2);
      let pool = '';
      try {
        pool = decodeURIComponent(key.substring(cut + 1));
      } catch (e) {
        continue;
      }
      outstanding[pool] = (outstanding[pool] === undefined ? 0 : outstanding[pool]) + 1;
      continue;
    }
    const entry = parseTicket(key);
    if (entry === null) continue;
    if (byPool[entry.pool] === undefined) {
      byPool[entry.pool] = [];
      pools.push(entry.pool);
    }
    byPool[entry.pool].push(entry);
  }
  const granted: WaitingEntry[] = [];
  const remaining: Record<string, number> = Object.create(null);
  for (let p = 0; p < pools.length; p++) {
    const pool = pools[p];
    const queue: WaitingEntry[] = [];
    // Past their deadline: the waiter answers its own timeout; an entry far past it has no waiter
    // left and is dropped. Neither is granted.
    let late = 0;
    for (let i = 0; i < byPool[pool].length; i++) {
      const entry = byPool[pool][i];
      if (now < entry.deadline) queue.push(entry);
      else if (now < entry.deadline + GRANT_TTL_MS || !takeOut(dict, entry)) late++;
    }
    remaining[pool] = queue.length + late;
    const used = outstanding[pool] === undefined ? 0 : outstanding[pool];
    let room = roomOf(pool) - used;
    if (room <= 0) continue;
    queue.sort(waitingOrder);
    for (let i = 0; i < queue.length && room > 0; i++) {
      const entry = queue[i];
      if (!takeOut(dict, entry)) continue;
      dict.set(grantKey(entry.seq, pool), 1, GRANT_TTL_MS);
      const vtKey = virtualTimeKey(entry.band, pool);
      const vt = dict.get(vtKey);
      if (vt === undefined || entry.tag > vt) dict.set(vtKey, entry.tag);
      granted.push(entry);
      remaining[pool]--;
      room--;
    }
  }
  // The counts behind someoneWaits, set to what this round saw: a count a worker left wrong (it
  // died between an entry and its count) would otherwise send every newcomer of a healthy pool
  // through the room for good. A newcomer entering during the round is off by one until the next.
  for (let i = 0; i < counted.length; i++) {
    let pool: string;
    try {
      pool = decodeURIComponent(counted[i].substring(2));
    } catch (e) {
      continue;
    }
    if (remaining[pool] === undefined || remaining[pool] <= 0) dict.delete(counted[i]);
    else dict.set(counted[i], remaining[pool]);
  }
  return granted;
}

/** Requests waiting now per band, highest band first (the status page). */
export function waitingByBand(dict: WaitingDict): Array<{ band: number; waiting: number }> {
  const entries = waitingEntries(dict);
  const counts: Record<string, number> = Object.create(null);
  const bands: number[] = [];
  for (let i = 0; i < entries.length; i++) {
    const b = String(entries[i].band);
    if (counts[b] === undefined) {
      counts[b] = 0;
      bands.push(entries[i].band);
    }
    counts[b]++;
  }
  bands.sort(function (a, b) {
    return b - a;
  });
  const out: Array<{ band: number; waiting: number }> = [];
  for (let i = 0; i < bands.length; i++) out.push({ band: bands[i], waiting: counts[String(bands[i])] });
  return out;
}
