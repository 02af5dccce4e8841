// Several Kong nodes, one view: the balancer state that decides picks across the fleet is shared
// through Redis (kong.redis), while the core stays synchronous and gateway-free.
//
// What is shared, and how (keys under `<key_prefix><plugin id>:`):
//   in-flight and token counts  c:<store key> hashes, one field per node (its own exact count)
//   the prefix table            pa: one hash, field = table slot, value = the slot's entry (bounded
//                               by prefix_affinity.table_slots, like the local table)
//   passive-health ejections    h:<replica id>: the last ejection or lift any node decided (until,
//                               reason, count, lifted-at, a version, the writer)
//   half-open trials            t:<replica id>: the node holding the replica's single trial (SET NX PX)
// Latency EWMAs, consecutive-failure and failure-rate counts, stuck detection and slow start stay
// per node: each node judges a replica on its own traffic, and an ejection any node decides
// applies to all.
//
// How a request uses it (at most one Redis round trip per phase, never waited on beyond timeout_ms):
//   access  refresh(): ONE call of a Lua script returns the other live nodes' counts, every
//           replica's shared ejection record (claiming a half-open replica's trial for this node
//           when nobody holds it), and the request's prefix slots; what it returns is folded into
//           the node's local store, and the core picks synchronously on it. onStart changes this
//           node's counts; flush() writes them (one command per event-loop turn), not waited for.
//   log     onEnd changes this node's counts and perhaps an ejection; flush({ afterAnswer }) writes
//           them with the prefix-table entries the pick recorded (nothing for them on the request
//           path), not waited for.
//
// No leaked counts (the lease): every node writes ONLY its own field of each counter hash
// (`<prefix><plugin>:c:r:<id>:if` → { <node id>: <this node's count> }), as an absolute value it
// knows exactly, and keeps a lease key `<prefix><plugin>:node:<node id>` alive with a PX TTL of
// lease_s, refreshed every lease_s / 3. The read script counts a field only while its node's lease
// key exists (checked inside the script, against Redis's own clock: no skew between nodes) and
// deletes the fields of nodes whose lease is gone. So a node that dies, or is cut off from Redis,
// stops counting for others at most lease_s after its last refresh, and a node that comes back
// rewrites all of its own fields with the lease (one MULTI), so its counts return exactly.
// Concurrent nodes add up because no field has two writers; one node's writes go out in order
// on its one connection, each carrying the node's count at the time it was issued.
// A trial key expires after one base ejection (a node that claimed a trial and died, or never
// sent it, holds the replica back no longer than a lost trial request does on one node); an
// ejection record after twice max_ejection_s.
//
// Redis slow or down: the pick never waits longer than timeout_ms for the read; commands are not
// queued while disconnected (enableOfflineQueue false: they fail at once). The node then picks on
// its own state alone (its local memory store, which always holds all of it), logs once, and logs
// once more when Redis is back; ioredis reconnects in the background, the lease refresh
// republishes the counts, and the prefix entries and ejections changed meanwhile are written then.
// (Ejection times are the deciding node's clock: nodes are expected to run NTP, as Kong's cluster does.)

import os from 'node:os';
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import type { RedisOptions as IoRedisOptions } from 'ioredis';
import type { Replica, Store } from '../../shared/index';
import { keysOf } from '../../shared/replica-state';
import type { RedisOptions } from './options';

/** The Store keys whose per-node counts are shared: each replica's in-flight and token counts. */
export function isSharedCounterKey(key: string): boolean {
  return key.charCodeAt(0) === 114 /* r */ && (key.endsWith(':if') || key.endsWith(':tk'));
}

/** The prefix table's Store keys (`pa:<slot>`, shared/prefix-table.ts). */
export function isPrefixSlotKey(key: string): boolean {
  return key.charCodeAt(0) === 112 /* p */ && key.charCodeAt(1) === 97 /* a */ && key.charCodeAt(2) === 58 /* : */;
}

/** The replica id of an ejection key (`r:<id>:eu` ejected-until, `r:<id>:el` lifted-at), else null. */
export function ejectionKeyReplica(key: string): string | null {
  if (key.charCodeAt(0) !== 114 /* r */ || key.charCodeAt(1) !== 58) return null;
  return key.endsWith(':eu') || key.endsWith(':el') ? key.slice(2, -3) : null;
}

// The access phase's one read. KEYS: nc counter hashes, nr ejection records, nr trial keys, then
// the prefix hash when slots are asked for. ARGV: lease key prefix, this node, nc, nr, this node's
// clock (ms), the trial lease (ms), then the prefix slots.
//   counts:  per counter hash, the sum of the fields of live nodes other than the caller; fields
//            of nodes whose lease key is gone are deleted. Strings: Redis truncates Lua numbers
//            to integers, and token counts need not be whole.
//   records: per replica, {until, version, writer, reason, ejections, lifted at} or '' (none).
//   trials:  per replica whose recorded ejection has run out (half-open), the node holding its
//            single trial, claimed for the caller when nobody holds it; '' otherwise.
//   slots:   the prefix hash's values of the asked slots, '' where empty.
// (The lease keys are not declared in KEYS: fine on a single Redis or a replicated one, not on
// Redis Cluster, which this does not support.)
const READ_SHARED_LUA = `
local leasePrefix = ARGV[1]
local self = ARGV[2]
local nc = tonumber(ARGV[3])
local nr = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local trialMs = ARGV[6]
local counts = {}
for i = 1, nc do
  local fields = redis.call('HGETALL', KEYS[i])
  local sum = 0
  for j = 1, #fields, 2 do
    local node = fields[j]
    if node ~= self then
      if redis.call('EXISTS', leasePrefix .. node) == 1 then
        sum = sum + tonumber(fields[j + 1])
      else
        redis.call('HDEL', KEYS[i], node)
      end
    end
  end
  counts[i] = tostring(sum)
end
local records = {}
local trials = {}
for i = 1, nr do
  local r = redis.call('HMGET', KEYS[nc + i], 'eu', 'v', 'by', 'ef', 'ej', 'el')
  trials[i] = ''
  if r[2] then
    records[i] = { r[1] or '0', r[2], r[3] or '', r[4] or '0', r[5] or '0', r[6] or '0' }
    local untilMs = tonumber(r[1] or '0')
    if untilMs > 0 and untilMs <= now then
      local trialKey = KEYS[nc + nr + i]
      redis.call('SET', trialKey, self, 'NX', 'PX', trialMs)
      trials[i] = redis.call('GET', trialKey) or ''
    end
  else
    records[i] = ''
  end
end
local slots = {}
if #ARGV > 6 then
  local values = redis.call('HMGET', KEYS[nc + 2 * nr + 1], unpack(ARGV, 7))
  for j = 1, #ARGV - 6 do slots[j] = values[j] or '' end
end
return { counts, records, trials, slots }
`;

// Everything this node changed in one event-loop turn, in one command (a pipeline of HSET/HDEL
// costs the client ~50 µs of CPU per command here). KEYS: nc counter hashes, ne (ejection record,
// trial key) pairs, then the prefix hash when entries follow. ARGV: this node, nc, ne, the
// ejection records' TTL (ms), nc counts, 4 × ne ejection fields, then prefix slot/entry pairs.
//   counts:     this node's own field of each counter hash; 0 removes the field, so hashes stay
//               as small as the live load.
//   ejections:  until, reason, ejections, lifted-at with a new version, which tells the other
//               nodes to adopt it; the trial key goes (a lift ends the trial, a new ejection
//               starts a new wait for one).
//   prefixes:   the slots' entries, newest wins (as in the local table).
const WRITE_LUA = `
local self = ARGV[1]
local nc = tonumber(ARGV[2])
local ne = tonumber(ARGV[3])
local ttl = ARGV[4]
for i = 1, nc do
  local value = ARGV[4 + i]
  if tonumber(value) > 0 then
    redis.call('HSET', KEYS[i], self, value)
  else
    redis.call('HDEL', KEYS[i], self)
  end
end
for i = 1, ne do
  local record = KEYS[nc + 2 * i - 1]
  local b = 4 + nc + (i - 1) * 4
  redis.call('HSET', record, 'eu', ARGV[b + 1], 'ef', ARGV[b + 2], 'ej', ARGV[b + 3], 'el', ARGV[b + 4], 'by', self)
  redis.call('HINCRBY', record, 'v', 1)
  redis.call('PEXPIRE', record, ttl)
  redis.call('DEL', KEYS[nc + 2 * i])
end
local first = 5 + nc + 4 * ne
if #ARGV >= first then
  redis.call('HSET', KEYS[nc + 2 * ne + 1], unpack(ARGV, first))
end
return nc + ne
`;

// Between reconnection attempts: quick at first (a restart or failover), then every 2 s, so a
// Redis that stays down costs one connection attempt per 2 s per plugin state.
const RECONNECT_STEP_MS = 100;
const RECONNECT_MAX_MS = 2000;
// A connect that has not completed by then is abandoned and retried; requests never wait for it.
const CONNECT_TIMEOUT_MS = 2000;

/** What is shared when Redis is connected (the status page lists it). */
export const SHARED_STATE = ['in_flight', 'tokens', 'prefix_table', 'ejections', 'half_open_trials'];
/** What stays this node's own in every case. */
export const LOCAL_STATE = ['latency', 'failure_counts', 'stuck_detection', 'slow_start', 'replica_metrics'];

export interface SharedStateStatus {
  /**
   * 'connecting': before the first connection (local state alone, nothing logged yet); 'shared':
   * the last read succeeded; 'local': Redis is slow or unreachable, this node balances alone.
   */
  mode: 'connecting' | 'shared' | 'local';
  nodeId: string;
  /** The last failure, while in 'local' mode. */
  lastError: string | null;
}

export interface SharedState {
  /** The Store the balancer is built on: this node's state plus the other live nodes' counts. */
  store: Store;
  /**
   * One round trip (bounded by timeout_ms) for the other nodes' counts and the ejections of
   * these replicas, and the given prefix slots (balancer prefixTableKeys) of this request.
   */
  refresh(replicas: Replica[], prefixKeys?: string[]): Promise<void>;
  /**
   * Writes this node's changes at the end of this event-loop turn in one command (counts,
   * ejections and, with afterAnswer, the prefix entries recorded since); never waited for.
   */
  flush(afterAnswer?: boolean): void;
  status(): SharedStateStatus;
  /** Releases this node's fields and lease, and closes the connection. */
  stop(): Promise<void>;
}

export interface SharedStateOptions {
  redis: RedisOptions;
  /** Keys of one plugin configuration: key_prefix + plugin id + ':'. */
  scope: string;
  /** Where this node's own state lives (every key, shared or not). */
  local: Store;
  /** How long a claimed half-open trial is held (ms): passive_health.base_ejection_s. */
  trialMs: number;
  /** How long an ejection record lives after its last change (ms): 2 × passive_health.max_ejection_s. */
  ejectionRecordMs: number;
  /** Default: host:pid:random, unique per plugin-server process. */
  nodeId?: string;
  log?: (message: string) => void;
  /** This node's clock (ms): ejection times are written and compared in it. Default Date.now. */
  now?: () => number;
}

let processNodeId: string | null = null;

/** One id per plugin-server process: its counts are one node's counts. */
export function defaultNodeId(): string {
  if (processNodeId === null) processNodeId = os.hostname() + ':' + process.pid + ':' + randomBytes(4).toString('hex');
  return processNodeId;
}

function connectionOptions(): IoRedisOptions {
  return {
    // Commands fail at once while disconnected instead of queueing behind a reconnect.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: (times: number) => Math.min(times * RECONNECT_STEP_MS, RECONNECT_MAX_MS),
    // Kong's plugin server must never stay up, or crash, because of this connection.
    lazyConnect: false,
  };
}

function connect(options: RedisOptions): Redis {
  const base = connectionOptions();
  if (options.url !== null) return new Redis(options.url, base);
  return new Redis(
    Object.assign(base, {
      host: options.host === null ? '127.0.0.1' : options.host,
      port: options.port,
      password: options.password === null ? undefined : options.password,
      db: options.db,
      tls: options.tls ? {} : undefined,
    }),
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type ReadReply = [string[], Array<string[] | string>, string[], string[]];

export function createSharedState(options: SharedStateOptions): SharedState {
  const local = options.local;
  const nodeId = options.nodeId !== undefined ? options.nodeId : defaultNodeId();
  const log = options.log !== undefined ? options.log : (message: string) => console.warn(message);
  const now = options.now !== undefined ? options.now : () => Date.now();
  const leaseMs = Math.round(options.redis.lease_s * 1000);
  const timeoutMs = options.redis.timeout_ms;
  const trialMs = String(Math.max(1, Math.round(options.trialMs)));
  const ejectionRecordMs = String(Math.max(1000, Math.round(options.ejectionRecordMs)));
  const scope = options.scope;
  const leaseKey = scope + 'node:' + nodeId;
  const counterPrefix = scope + 'c:';
  const prefixHashKey = scope + 'pa';

  /** The other live nodes' counts from the last read, by Store key; empty in 'local' mode. */
  let others: Record<string, number> = Object.create(null);
  /** Shared counter keys this node changed since the last flush. */
  let dirty: Record<string, true> = Object.create(null);
  /** Every shared counter key this node has counted (republished with each lease refresh). */
  const owned: Record<string, true> = Object.create(null);
  /** Prefix slots this node recorded and has not written yet (they go after the answer). */
  let prefixDirty: Record<string, true> = Object.create(null);
  /** Replicas whose ejection this node changed and has not written yet. */
  let ejectionsDirty: Record<string, true> = Object.create(null);
  /** Per replica, the version of its ejection record last seen (adopted, or written by this node). */
  const seenVersion: Record<string, string> = Object.create(null);
  /** Replicas whose half-open trial another node holds: this node marked it claimed locally. */
  const trialHeldElsewhere: Record<string, true> = Object.create(null);
  let mode: 'connecting' | 'shared' | 'local' = 'connecting';
  let lastError: string | null = null;
  let readSequence = 0;
  let stopped = false;

  const redis = connect(options.redis);
  redis.defineCommand('llmbReadShared', { lua: READ_SHARED_LUA });
  redis.defineCommand('llmbWrite', { lua: WRITE_LUA });
  const commands = redis as unknown as {
    llmbReadShared(n: number, ...args: string[]): Promise<ReadReply>;
    llmbWrite(n: number, ...args: string[]): Promise<number>;
  };
  // ioredis emits 'error' on every failed (re)connect: without a listener Node would throw.
  redis.on('error', (error: unknown) => degrade(messageOf(error)));
  // Connected (first time or again): Redis answers, so the node shares from now on; recover()
  // writes the lease with every count, and what changed while it was away.
  // (Connected again without a failure seen in between: the lease and counts are rewritten all the same.)
  redis.on('ready', () => {
    if (mode !== 'shared') {
      recover();
      return;
    }
    refreshLease();
    flush(true);
  });

  function degrade(reason: string): void {
    others = Object.create(null);
    lastError = reason;
    if (mode === 'local' || stopped) return;
    // The first connection failing is as much an outage as a later one: it is logged too.
    mode = 'local';
    log('llm-balancer: Redis unavailable (' + reason + '): this node balances on its own state until it is back');
  }

  function recover(): void {
    lastError = null;
    if (mode === 'shared') return;
    const wasConnecting = mode === 'connecting';
    mode = 'shared';
    // What changed while Redis did not answer (writes are held then), and the lease, which may
    // have run out meanwhile: other nodes' reads then deleted this node's fields.
    refreshLease();
    flush(true);
    if (wasConnecting) return;
    log('llm-balancer: Redis available again: in-flight and token counts, the prefix table and ejections are shared');
  }

  function ownValue(key: string): number {
    const value = local.get(key);
    return value === undefined ? 0 : value;
  }

  function markChanged(key: string): void {
    if (isSharedCounterKey(key)) {
      dirty[key] = true;
      owned[key] = true;
      return;
    }
    if (isPrefixSlotKey(key)) {
      prefixDirty[key] = true;
      return;
    }
    const replica = ejectionKeyReplica(key);
    if (replica !== null) ejectionsDirty[replica] = true;
  }

  /** The lease and every owned count, atomically: a reader never sees the lease without the counts. */
  function refreshLease(): void {
    if (stopped || redis.status !== 'ready') return;
    const multi = redis.multi();
    multi.set(leaseKey, '1', 'PX', leaseMs);
    const keys = Object.keys(owned);
    for (let i = 0; i < keys.length; i++) writeOwn(multi, keys[i]);
    dirty = Object.create(null);
    multi.exec().catch((error: unknown) => degrade(messageOf(error)));
  }

  function writeOwn(pipeline: ReturnType<Redis['pipeline']>, key: string): void {
    const value = ownValue(key);
    // Zero is the absence of load: drop the field so hashes stay as small as the live load.
    if (value > 0) pipeline.hset(counterPrefix + key, nodeId, String(value));
    else pipeline.hdel(counterPrefix + key, nodeId);
  }

  const leaseTimer = setInterval(refreshLease, Math.max(1, Math.floor(leaseMs / 3)));
  if (typeof leaseTimer.unref === 'function') leaseTimer.unref();

  const store: Store = {
    get(key) {
      const own = local.get(key);
      const theirs = others[key];
      if (theirs === undefined) return own;
      return (own === undefined ? 0 : own) + theirs;
    },
    set(key, value) {
      local.set(key, value);
      markChanged(key);
    },
    incr(key, delta, init) {
      const own = local.incr(key, delta, init);
      if (!isSharedCounterKey(key)) return own;
      markChanged(key);
      const theirs = others[key];
      return own + (theirs === undefined ? 0 : theirs);
    },
    delete(key) {
      local.delete(key);
      markChanged(key);
    },
  };

  /** The read under way (at most one at a time) and the replica list it covers. */
  let readUnderWay: Promise<void> | null = null;
  let readReplicas: Replica[] | null = null;
  /** The next read: the slots of every request that asked while a read was under way. */
  let nextBatch: { replicas: Replica[]; slots: string[]; asked: Record<string, true>; done: Promise<void>; resolve: () => void } | null = null;

  // One read at a time, and the requests that ask meanwhile share the next one: a node under load
  // sends one read per round trip, not one per request (each read costs the plugin server ~100 µs
  // of CPU to encode and decode). A request that needs no prefix slots of its own joins the read
  // under way (its answer is at most one round trip older than its own would be); one that does
  // joins the next read with its slots. Each request waits at most timeout_ms from its own call:
  // past it, it picks on what this node has.
  function refresh(replicas: Replica[], prefixKeys?: string[]): Promise<void> {
    const slots = prefixKeys !== undefined ? prefixKeys : [];
    if (slots.length === 0 && readUnderWay !== null && readReplicas === replicas) return readUnderWay;
    if (nextBatch === null || nextBatch.replicas !== replicas) {
      // A batch for another replica list (the list changed) is sent as it is, and a new one opened.
      if (nextBatch !== null) sendBatch();
      let resolve: () => void = () => undefined;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      nextBatch = { replicas, slots: [], asked: Object.create(null), done, resolve };
      if (readUnderWay === null) setImmediate(sendBatch);
    }
    const batch = nextBatch;
    for (let i = 0; i < slots.length; i++) {
      if (batch.asked[slots[i]]) continue;
      batch.asked[slots[i]] = true;
      batch.slots.push(slots[i]);
    }
    return waitAtMost(batch.done);
  }

  function sendBatch(): void {
    const batch = nextBatch;
    if (batch === null) return;
    nextBatch = null;
    const read = readShared(batch.replicas, batch.slots);
    readUnderWay = read;
    readReplicas = batch.replicas;
    read.then(batch.resolve, batch.resolve);
    const next = () => {
      if (readUnderWay === read) {
        readUnderWay = null;
        readReplicas = null;
      }
      // What gathered meanwhile goes now.
      if (nextBatch !== null && readUnderWay === null) sendBatch();
    };
    read.then(next, next);
  }

  function waitAtMost(done: Promise<void>): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    return Promise.race([done, late]).then((result) => {
      if (timer !== undefined) clearTimeout(timer);
      // Nothing came back within the bound of this request: Redis is slow, as for a read that times out.
      if (result === 'late') degrade('no answer within ' + timeoutMs + ' ms');
    });
  }

  async function readShared(replicas: Replica[], prefixKeys: string[]): Promise<void> {
    if (stopped) return;
    if (redis.status !== 'ready') {
      // The first connect is under way: no failure to report yet (a failed connect emits 'error').
      if (mode === 'connecting') return;
      degrade('not connected (' + redis.status + ')');
      return;
    }
    if (replicas.length === 0) return;
    const counterKeys: string[] = [];
    for (let i = 0; i < replicas.length; i++) {
      const keys = keysOf(replicas[i].id);
      counterKeys.push(keys.inFlight, keys.tokens);
    }
    const redisKeys: string[] = [];
    for (let i = 0; i < counterKeys.length; i++) redisKeys.push(counterPrefix + counterKeys[i]);
    for (let i = 0; i < replicas.length; i++) redisKeys.push(scope + 'h:' + replicas[i].id);
    for (let i = 0; i < replicas.length; i++) redisKeys.push(scope + 't:' + replicas[i].id);
    const argv: string[] = [scope + 'node:', nodeId, String(counterKeys.length), String(replicas.length), String(now()), trialMs];
    if (prefixKeys.length > 0) {
      redisKeys.push(prefixHashKey);
      // 'pa:<slot>' → '<slot>': the hash's field.
      for (let i = 0; i < prefixKeys.length; i++) argv.push(prefixKeys[i].slice(3));
    }
    const sequence = ++readSequence;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const call = commands.llmbReadShared(redisKeys.length, ...redisKeys.concat(argv));
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const result = await Promise.race([call, timedOut]);
      if (result === 'timeout') {
        if (sequence === readSequence) degrade('no answer within ' + timeoutMs + ' ms');
        return;
      }
      // This request's prefix slots are its own, whatever other reads answered meanwhile.
      adoptPrefixSlots(prefixKeys, result[3]);
      // A later read already answered (or is under way): its counts and ejections are newer.
      if (sequence !== readSequence) return;
      const next: Record<string, number> = Object.create(null);
      for (let i = 0; i < counterKeys.length; i++) {
        const value = Number(result[0][i]);
        if (value > 0) next[counterKeys[i]] = value;
      }
      others = next;
      for (let i = 0; i < replicas.length; i++) adoptEjection(replicas[i].id, result[1][i], result[2][i]);
      recover();
    } catch (error) {
      if (sequence === readSequence) degrade(messageOf(error));
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      // A late answer after the timeout must not surface as an unhandled rejection.
      call.catch(() => undefined);
    }
  }

  /** The fleet's entries of these slots replace this node's, except those it recorded and has not written yet. */
  function adoptPrefixSlots(prefixKeys: string[], values: string[]): void {
    for (let i = 0; i < prefixKeys.length; i++) {
      const value = values[i];
      if (value === '' || value === undefined || prefixDirty[prefixKeys[i]]) continue;
      const entry = Number(value);
      if (Number.isFinite(entry)) local.set(prefixKeys[i], entry);
    }
  }

  /**
   * Folds a replica's shared ejection record into this node's state when another node changed it
   * since this node last looked, and keeps this node off a half-open replica whose single trial
   * another node holds.
   */
  function adoptEjection(id: string, record: string[] | string, trialHolder: string): void {
    const keys = keysOf(id);
    if (Array.isArray(record) && seenVersion[id] !== record[1]) {
      seenVersion[id] = record[1];
      // This node's own write, or an ejection it changed since and has not written: keep its own.
      if (record[2] !== nodeId && !ejectionsDirty[id]) {
        const until = Number(record[0]);
        const wasOut = ownValue(keys.ejectedUntil) > 0;
        if (until > 0) {
          local.set(keys.ejectedUntil, until);
          local.set(keys.ejectedFor, Number(record[3]));
          local.set(keys.ejections, Number(record[4]));
          local.set(keys.consecutiveFailures, 0);
          local.set(keys.consecutiveConnectErrors, 0);
        } else if (wasOut) {
          const liftedAt = Number(record[5]);
          local.delete(keys.ejectedUntil);
          local.set(keys.ejectionLiftedAt, liftedAt);
          // Back in service: slow start ramps its share up again, as on the node that lifted it.
          local.set(keys.availableSince, liftedAt);
        }
        if (until > 0 || wasOut) {
          local.delete(keys.trialClaims);
          local.delete(keys.trialClaimedAt);
          delete trialHeldElsewhere[id];
        }
      }
    }
    if (trialHolder !== '' && trialHolder !== nodeId) {
      // Claimed here as the core claims a trial: while it is fresh, the replica is no candidate.
      if (!trialHeldElsewhere[id]) {
        local.set(keys.trialClaims, 1);
        local.set(keys.trialClaimedAt, now());
        trialHeldElsewhere[id] = true;
      }
    } else if (trialHeldElsewhere[id]) {
      local.delete(keys.trialClaims);
      local.delete(keys.trialClaimedAt);
      delete trialHeldElsewhere[id];
    }
  }

  let flushScheduled = false;
  let flushPrefixes = false;

  // Changes of every request in this turn of the event loop go out together.
  function flush(afterAnswer?: boolean): void {
    if (afterAnswer === true) flushPrefixes = true;
    if (flushScheduled || stopped) return;
    flushScheduled = true;
    setImmediate(writeDirty);
  }

  function writeDirty(): void {
    flushScheduled = false;
    const withPrefixes = flushPrefixes;
    flushPrefixes = false;
    if (stopped) return;
    // While Redis is unreachable or not answering the changes stay pending (nothing piles up in
    // the client behind a hung server); recovery writes them all.
    if (redis.status !== 'ready' || mode === 'local') return;
    const counts = Object.keys(dirty);
    const ejected = Object.keys(ejectionsDirty);
    const prefixes = withPrefixes ? Object.keys(prefixDirty) : [];
    if (counts.length === 0 && ejected.length === 0 && prefixes.length === 0) return;
    dirty = Object.create(null);
    ejectionsDirty = Object.create(null);
    if (withPrefixes) prefixDirty = Object.create(null);
    const redisKeys: string[] = [];
    const argv: string[] = [nodeId, String(counts.length), String(ejected.length), ejectionRecordMs];
    for (let i = 0; i < counts.length; i++) {
      redisKeys.push(counterPrefix + counts[i]);
      argv.push(String(ownValue(counts[i])));
    }
    for (let i = 0; i < ejected.length; i++) {
      const keys = keysOf(ejected[i]);
      redisKeys.push(scope + 'h:' + ejected[i], scope + 't:' + ejected[i]);
      argv.push(String(ownValue(keys.ejectedUntil)), String(ownValue(keys.ejectedFor)), String(ownValue(keys.ejections)), String(ownValue(keys.ejectionLiftedAt)));
    }
    let entries = 0;
    for (let i = 0; i < prefixes.length; i++) {
      const entry = local.get(prefixes[i]);
      // 'pa:<slot>' → field '<slot>'; entries are integers below 2^53, written exactly.
      if (entry === undefined) continue;
      argv.push(prefixes[i].slice(3), String(entry));
      entries++;
    }
    if (entries > 0) redisKeys.push(prefixHashKey);
    commands.llmbWrite(redisKeys.length, ...redisKeys.concat(argv)).catch((error: unknown) => degrade(messageOf(error)));
  }

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    clearInterval(leaseTimer);
    if (redis.status === 'ready') {
      const pipeline = redis.pipeline();
      const keys = Object.keys(owned);
      for (let i = 0; i < keys.length; i++) pipeline.hdel(counterPrefix + keys[i], nodeId);
      pipeline.del(leaseKey);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        pipeline.exec().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      if (timer !== undefined) clearTimeout(timer);
    }
    redis.disconnect();
  }

  return {
    store,
    refresh,
    flush,
    status: () => ({ mode, nodeId, lastError }),
    stop,
  };
}
