// Several Kong nodes, one view of each replica's load: per-replica in-flight and token counts
// shared through Redis (kong.redis), while the core stays synchronous and gateway-free.
//
// How a request uses it (at most one Redis round trip per phase, never waited on beyond timeout_ms):
//   access  refresh(): ONE call of a Lua script returns, for every replica's in-flight and token
//           key, the sum of the OTHER live nodes' counts; the core then picks synchronously on a
//           Store that adds them to this node's own exact counts (store below); onStart changes
//           this node's counts, and flush() writes them (one command per event-loop turn) without waiting for it.
//   log     onEnd changes this node's counts; flush() again, not waited for.
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
//
// Redis slow or down: the pick never waits longer than timeout_ms for the read; commands are not
// queued while disconnected (enableOfflineQueue false: they fail at once). The node then picks on
// its own counts alone (its local memory store, which always holds them), logs once, and logs once
// more when Redis is back; ioredis reconnects in the background and the lease refresh republishes.
//
// Shared today: in-flight and token counts. Everything else (latency EWMAs, passive-health
// ejections, half-open trials, the prefix table) stays in the node's local store: see README.

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

// Sums, per counter hash, the fields of live nodes other than the caller, and deletes the fields
// of nodes whose lease key is gone. Numbers go back as strings: Redis truncates Lua numbers to
// integers, and token counts need not be whole. (The lease keys are not declared in KEYS: fine on
// a single Redis or a replicated one, not on Redis Cluster, which this does not support.)
const SUM_LIVE_LUA = `
local leasePrefix = ARGV[1]
local self = ARGV[2]
local out = {}
for i = 1, #KEYS do
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
  out[i] = tostring(sum)
end
return out
`;

// This node's counts in one command (a pipeline of HSET/HDEL costs the client ~50 µs of CPU per
// command here): KEYS are counter hashes, ARGV[1] the node id, ARGV[i + 1] the count for KEYS[i];
// a count of 0 removes the field, so hashes stay as small as the live load.
const WRITE_OWN_LUA = `
local self = ARGV[1]
for i = 1, #KEYS do
  local value = ARGV[i + 1]
  if tonumber(value) > 0 then
    redis.call('HSET', KEYS[i], self, value)
  else
    redis.call('HDEL', KEYS[i], self)
  end
end
return #KEYS
`;

// Between reconnection attempts: quick at first (a restart or failover), then every 2 s, so a
// Redis that stays down costs one connection attempt per 2 s per plugin state.
const RECONNECT_STEP_MS = 100;
const RECONNECT_MAX_MS = 2000;
// A connect that has not completed by then is abandoned and retried; requests never wait for it.
const CONNECT_TIMEOUT_MS = 2000;

export interface SharedCountersStatus {
  /**
   * 'connecting': before the first connection (counts alone, nothing logged yet); 'shared': the
   * last read succeeded; 'local': Redis is slow or unreachable, this node counts alone.
   */
  mode: 'connecting' | 'shared' | 'local';
  nodeId: string;
  /** The last failure, while in 'local' mode. */
  lastError: string | null;
}

export interface SharedCounters {
  /** The Store the balancer is built on: this node's state plus the other live nodes' counts. */
  store: Store;
  /** One round trip (bounded by timeout_ms) for the other nodes' counts of these replicas. */
  refresh(replicas: Replica[]): Promise<void>;
  /** Writes this node's changed counts at the end of this event-loop turn, in one command; never waited for. */
  flush(): void;
  status(): SharedCountersStatus;
  /** Releases this node's fields and lease, and closes the connection. */
  stop(): Promise<void>;
}

export interface SharedCountersOptions {
  redis: RedisOptions;
  /** Keys of one plugin configuration: key_prefix + plugin id + ':'. */
  scope: string;
  /** Where this node's own state lives (every key, shared or not). */
  local: Store;
  /** Default: host:pid:random, unique per plugin-server process. */
  nodeId?: string;
  log?: (message: string) => void;
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

export function createSharedCounters(options: SharedCountersOptions): SharedCounters {
  const local = options.local;
  const nodeId = options.nodeId !== undefined ? options.nodeId : defaultNodeId();
  const log = options.log !== undefined ? options.log : (message: string) => console.warn(message);
  const leaseMs = Math.round(options.redis.lease_s * 1000);
  const timeoutMs = options.redis.timeout_ms;
  const scope = options.scope;
  const leaseKey = scope + 'node:' + nodeId;
  const counterPrefix = scope + 'c:';

  /** The other live nodes' counts from the last read, by Store key; empty in 'local' mode. */
  let others: Record<string, number> = Object.create(null);
  /** Shared keys this node changed since the last flush. */
  let dirty: Record<string, true> = Object.create(null);
  /** Every shared key this node has counted (republished with each lease refresh). */
  const owned: Record<string, true> = Object.create(null);
  let mode: 'connecting' | 'shared' | 'local' = 'connecting';
  let lastError: string | null = null;
  let readSequence = 0;
  let stopped = false;

  const redis = connect(options.redis);
  redis.defineCommand('llmbSumLive', { lua: SUM_LIVE_LUA });
  redis.defineCommand('llmbWriteOwn', { lua: WRITE_OWN_LUA });
  const commands = redis as unknown as {
    llmbSumLive(n: number, ...args: string[]): Promise<string[]>;
    llmbWriteOwn(n: number, ...args: string[]): Promise<number>;
  };
  // ioredis emits 'error' on every failed (re)connect: without a listener Node would throw.
  redis.on('error', (error: unknown) => degrade(messageOf(error)));
  redis.on('ready', () => {
    refreshLease();
  });

  function degrade(reason: string): void {
    others = Object.create(null);
    lastError = reason;
    if (mode === 'local' || stopped) return;
    // The first connection failing is as much an outage as a later one: it is logged too.
    mode = 'local';
    log('llm-balancer: Redis unavailable (' + reason + '): this node balances on its own counts until it is back');
  }

  function recover(): void {
    lastError = null;
    if (mode === 'shared') return;
    const wasConnecting = mode === 'connecting';
    mode = 'shared';
    // What changed while Redis did not answer (writes are held then), and the lease, which may
    // have run out meanwhile: other nodes' reads then deleted this node's fields.
    refreshLease();
    if (wasConnecting) return;
    log('llm-balancer: Redis available again: in-flight and token counts are shared');
  }

  function ownValue(key: string): number {
    const value = local.get(key);
    return value === undefined ? 0 : value;
  }

  function markChanged(key: string): void {
    if (!isSharedCounterKey(key)) return;
    dirty[key] = true;
    owned[key] = true;
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

  /** The read under way and the replica list it covers: concurrent picks share it. */
  let pendingRead: Promise<void> | null = null;
  let pendingReplicas: Replica[] | null = null;

  // Picks that start while a read is under way for the same replica list wait for that read
  // instead of sending their own: its answer is at most one round trip older than theirs would
  // be, and a node under load then sends one read per round trip, not one per request.
  function refresh(replicas: Replica[]): Promise<void> {
    if (pendingRead !== null && pendingReplicas === replicas) return pendingRead;
    const read = readOthers(replicas);
    pendingRead = read;
    pendingReplicas = replicas;
    const clear = () => {
      if (pendingRead === read) {
        pendingRead = null;
        pendingReplicas = null;
      }
    };
    read.then(clear, clear);
    return read;
  }

  async function readOthers(replicas: Replica[]): Promise<void> {
    if (stopped) return;
    if (redis.status !== 'ready') {
      // The first connect is under way: no failure to report yet (a failed connect emits 'error').
      if (mode === 'connecting') return;
      degrade('not connected (' + redis.status + ')');
      return;
    }
    const storeKeys: string[] = [];
    for (let i = 0; i < replicas.length; i++) {
      const keys = keysOf(replicas[i].id);
      storeKeys.push(keys.inFlight, keys.tokens);
    }
    if (storeKeys.length === 0) return;
    const argv: string[] = [];
    for (let i = 0; i < storeKeys.length; i++) argv.push(counterPrefix + storeKeys[i]);
    argv.push(scope + 'node:', nodeId);
    const sequence = ++readSequence;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const call = commands.llmbSumLive(storeKeys.length, ...argv);
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const result = await Promise.race([call, timedOut]);
      // A later read already answered (or is under way): this one is older.
      if (sequence !== readSequence) return;
      if (result === 'timeout') {
        degrade('no answer within ' + timeoutMs + ' ms');
        return;
      }
      const next: Record<string, number> = Object.create(null);
      for (let i = 0; i < storeKeys.length; i++) {
        const value = Number(result[i]);
        if (value > 0) next[storeKeys[i]] = value;
      }
      others = next;
      recover();
    } catch (error) {
      if (sequence === readSequence) degrade(messageOf(error));
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      // A late answer after the timeout must not surface as an unhandled rejection.
      call.catch(() => undefined);
    }
  }

  let flushScheduled = false;

  // Changes of every request in this turn of the event loop go out together, in one command.
  function flush(): void {
    if (flushScheduled || stopped) return;
    flushScheduled = true;
    setImmediate(writeDirty);
  }

  function writeDirty(): void {
    flushScheduled = false;
    const keys = Object.keys(dirty);
    if (keys.length === 0 || stopped) return;
    // While Redis is unreachable or not answering the keys stay dirty (nothing piles up in the
    // client behind a hung server); the lease refresh on recovery writes them all.
    if (redis.status !== 'ready' || mode === 'local') return;
    dirty = Object.create(null);
    const args: string[] = [];
    for (let i = 0; i < keys.length; i++) args.push(counterPrefix + keys[i]);
    args.push(nodeId);
    for (let i = 0; i < keys.length; i++) args.push(String(ownValue(keys[i])));
    commands.llmbWriteOwn(keys.length, ...args).catch((error: unknown) => degrade(messageOf(error)));
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
