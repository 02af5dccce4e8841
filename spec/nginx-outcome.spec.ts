// The pure parts of the njs adapter, table-driven: outcomes from nginx's variable strings (the
// rows are values measured in real nginx 1.26.3, see plugins/nginx/outcome.ts), the request view,
// the shared-dict Store (with a fake zone that fails like njs 0.8.9 does when full), the status
// JSON and Prometheus text, the active-check timing rules and the error bodies.
import { describe, expect, it } from 'vitest';
import { exhaustedError, internalError } from '../plugins/nginx/errors';
import { probeDue, probeLost } from '../plugins/nginx/health-check';
import { attemptField, attemptOutcome, clientGone, describeOutcome, secondsToMs } from '../plugins/nginx/outcome';
import type { ResponseVariables, UpstreamVariables } from '../plugins/nginx/outcome';
import { headerValue, requestViewOf } from '../plugins/nginx/request-view';
import type { RequestSource } from '../plugins/nginx/request-view';
import type { NumberDict } from '../plugins/nginx/runtime';
import { createSharedDictStore } from '../plugins/nginx/shared-dict-store';
import { labelValue, prometheusText, statusDocument } from '../shared/status-report';
import type { ReplicaStatus } from '../shared/balancer';
import { resolveHashKey } from '../shared/hash-key';
import type { HashKeyConfig } from '../shared/config/types';
import type { Outcome } from '../shared/types';

const OK: ResponseVariables = { status: '200', requestCompletion: 'OK' };

function vars(status: string, responseTime: string, headerTime: string): UpstreamVariables {
  return { status, responseTime, headerTime };
}

describe('attemptOutcome: nginx variables → the core Outcome', () => {
  // [what, $upstream_status, $upstream_response_time, $upstream_header_time, attempt, response (null: not the final attempt), expected]
  const rows: [string, string, string, string, number, ResponseVariables | null, Outcome][] = [
    ['plain 200', '200', '0.012', '0.003', 0, OK, { status: 200, latencyMs: 12, ttftMs: 3, error: null }],
    ['connect refused, seen by the retry', '502', '0.000', '-', 0, null, { status: 0, latencyMs: 0, ttftMs: null, error: 'connect-error' }],
    ['connect refused, then 200: the retry', '502 : 200', '0.000 : 0.001', '- : 0.001', 1, OK, { status: 200, latencyMs: 1, ttftMs: 1, error: null }],
    ['read timeout (nginx 504, no header)', '504 : 200', '1.001 : 0.001', '- : 0.001', 0, null, { status: 0, latencyMs: 1001, ttftMs: null, error: 'timeout' }],
    ['the replica itself answered 503', '503 : 503', '0.001 : 0.007', '0.001 : 0.007', 0, null, { status: 503, latencyMs: 1, ttftMs: 1, error: null }],
    ['last attempt passes the replica 503 through', '503 : 503', '0.001 : 0.007', '0.001 : 0.007', 1, { status: '503', requestCompletion: 'OK' }, { status: 503, latencyMs: 7, ttftMs: 7, error: null }],
    ['the replica itself answered 502 (it has a header time)', '502', '0.004', '0.004', 0, { status: '502', requestCompletion: 'OK' }, { status: 502, latencyMs: 4, ttftMs: 4, error: null }],
    ['both attempts refused: the last one', '502 : 502', '0.000 : 0.000', '- : -', 1, { status: '502', requestCompletion: 'OK' }, { status: 0, latencyMs: 0, ttftMs: null, error: 'connect-error' }],
    ['client left before the header (499)', '-', '0.299', '-', 0, { status: '499', requestCompletion: '' }, { status: 0, latencyMs: 299, ttftMs: null, error: 'aborted' }],
    ['client left during the stream ($status 200, incomplete)', '200', '1.000', '0.001', 0, { status: '200', requestCompletion: '' }, { status: 200, latencyMs: 1000, ttftMs: 1, error: 'aborted' }],
    ['client left during the failover attempt', '502 : -', '0.000 : 0.300', '- : -', 1, { status: '499', requestCompletion: '' }, { status: 0, latencyMs: 300, ttftMs: null, error: 'aborted' }],
    ['picked but never sent (no group for the attempt)', '502', '0.000', '-', 1, { status: '499', requestCompletion: '' }, { status: 0, latencyMs: -1, ttftMs: null, error: 'aborted' }],
    ['replica stalled mid-stream (nginx completes the request)', '200', '1.001', '0.001', 0, OK, { status: 200, latencyMs: 1001, ttftMs: 1, error: null }],
    ['several servers in one group: the last decides', '502, 200', '0.000, 0.020', '-, 0.010', 0, OK, { status: 200, latencyMs: 20, ttftMs: 10, error: null }],
    ['no status at all', '', '', '', 0, OK, { status: 0, latencyMs: -1, ttftMs: null, error: 'aborted' }],
  ];
  it.each(rows)('%s', (_what, status, responseTime, headerTime, index, response, expected) => {
    expect(attemptOutcome(vars(status, responseTime, headerTime), index, response)).toEqual(expected);
  });

  it('reads undefined variables (unset in njs) as no attempt', () => {
    expect(attemptOutcome({ status: undefined, responseTime: undefined, headerTime: undefined }, 0, OK).error).toBe('aborted');
  });
});

describe('variable helpers', () => {
  it.each<[string | undefined, number, string | null]>([
    ['502 : 200', 0, '502'],
    ['502 : 200', 1, '200'],
    ['502 : 200', 2, null],
    ['502, 504 : 200', 0, '504'],
    ['-', 0, '-'],
    ['', 0, null],
    [undefined, 0, null],
  ])('attemptField(%j, %i) = %j', (value, index, expected) => {
    expect(attemptField(value, index)).toBe(expected);
  });

  it.each<[string | null, number | null]>([
    ['0.000', 0],
    ['1.001', 1001],
    ['0.0005', 1],
    ['-', null],
    ['', null],
    [null, null],
    ['x', null],
  ])('secondsToMs(%j) = %j', (text, ms) => {
    expect(secondsToMs(text)).toBe(ms);
  });

  it.each<[ResponseVariables, boolean]>([
    [{ status: '200', requestCompletion: 'OK' }, false],
    [{ status: '499', requestCompletion: '' }, true],
    [{ status: '200', requestCompletion: '' }, true],
    [{ status: '502', requestCompletion: 'OK' }, false],
  ])('clientGone(%j) = %s', (response, gone) => {
    expect(clientGone(response)).toBe(gone);
  });

  it('describes outcomes briefly for the log line', () => {
    expect(describeOutcome('gpu-a', { status: 200, latencyMs: 12, error: null })).toBe('gpu-a 200 12ms');
    expect(describeOutcome('gpu-b', { status: 0, latencyMs: 0, error: 'connect-error' })).toBe('gpu-b connect-error');
  });
});

/** Like njs's r.headersIn: case-insensitive lookup. */
function njsHeaders(headers: Record<string, string>): Record<string, string | undefined> {
  return new Proxy(headers, {
    get: (target, name) => {
      if (typeof name !== 'string') return undefined;
      const found = Object.keys(target).find((k) => k.toLowerCase() === name.toLowerCase());
      return found === undefined ? undefined : target[found];
    },
  });
}

describe('requestViewOf: only what the hash key source reads', () => {
  const source: RequestSource = {
    // What njs 0.8.9 shows for repeated lines: joined, with a trailing separator.
    headersIn: njsHeaders({ 'X-Session-Id': 's-1', Cookie: 'a=1; session=abc; ', 'X-Twice': 'one, two, ' }),
    rawHeadersIn: [
      ['X-Session-Id', 's-1'],
      ['Cookie', 'a=1'],
      ['Cookie', 'session=abc'],
      ['X-Twice', 'one'],
      ['X-Twice', 'two'],
    ],
    args: { user: 'u-7', many: ['first', 'second'], empty: '' },
    remoteAddress: '192.0.2.9',
    variables: { remote_user: 'alice' },
  };
  const key = (source: HashKeyConfig['source'], name: string | null = null): HashKeyConfig => ({ source, name });
  // [source config, the key the core resolves from the view]
  const rows: [string, HashKeyConfig | null, string | null][] = [
    ['no hash key', null, null],
    ['header, any case', key('header', 'x-session-id'), 's-1'],
    ['header, repeated: the first line (as Kong)', key('header', 'x-twice'), 'one'],
    ['missing header', key('header', 'x-absent'), null],
    ['cookie among repeated Cookie lines', key('cookie', 'session'), 'abc'],
    ['query argument', key('query', 'user'), 'u-7'],
    ['repeated query argument: the first', key('query', 'many'), 'first'],
    ['empty query argument: no key', key('query', 'empty'), null],
    ['client address', key('client-ip'), '192.0.2.9'],
    ['$remote_user as the consumer', key('consumer'), 'alice'],
  ];
  it.each(rows)('%s', (_what, hashKey, expected) => {
    expect(resolveHashKey(hashKey, requestViewOf(hashKey, source))).toBe(expected);
  });

  it.each<[string, string | null | undefined, string | null]>([
    ['JSON body field', '{"user":"u-1","messages":[]}', 'u-1'],
    ['nested field', '{"metadata":{"user":"u-2"}}', null],
    ['not JSON: no key, no error', 'user=u-1', null],
    ['empty body', '', null],
    ['no body', undefined, null],
  ])('body: %s', (_what, body, expected) => {
    const hashKey = key('body', 'user');
    expect(resolveHashKey(hashKey, requestViewOf(hashKey, source, body))).toBe(expected);
  });

  it('reads nested body paths', () => {
    const hashKey = key('body', 'metadata.user');
    expect(resolveHashKey(hashKey, requestViewOf(hashKey, source, '{"metadata":{"user":"u-2"}}'))).toBe('u-2');
  });

  it('the consumer comes from the configured variable (e.g. one an auth_request step sets)', () => {
    const hashKey = key('consumer');
    const src: RequestSource = { headersIn: {}, args: {}, variables: { remote_user: 'alice', jwt_sub: 'user-9' } };
    expect(resolveHashKey(hashKey, requestViewOf(hashKey, src, null, 'jwt_sub'))).toBe('user-9');
    expect(resolveHashKey(hashKey, requestViewOf(hashKey, src, null, ''))).toBe('alice');
  });

  it('an unset $remote_user is no consumer', () => {
    const view = requestViewOf(key('consumer'), { headersIn: {}, args: {}, variables: {} });
    expect(view.consumer).toBeNull();
  });

  it('headerValue falls back to a case-insensitive scan of plain objects', () => {
    expect(headerValue({ headersIn: { 'x-lower': 'v' }, args: {} }, 'X-Lower')).toBe('v');
    expect(headerValue({ headersIn: { 'X-Mixed': 'w' }, args: {} }, 'x-mixed')).toBe('w');
  });
});

/** A fake js_shared_dict_zone type=number that fails like njs 0.8.9 once `capacity` keys exist. */
function fakeZone(capacity: number): NumberDict & { data: Record<string, number> } {
  const data: Record<string, number> = {};
  const full = (key: string) => !(key in data) && Object.keys(data).length >= capacity;
  return {
    data,
    get: (key) => data[key],
    set(key, value) {
      if (full(key)) throw new Error('SharedMemoryError');
      data[key] = value;
    },
    incr(key, delta, init) {
      if (full(key)) throw new Error('failed to increment value in shared dict');
      data[key] = (key in data ? data[key] : init) + delta;
      return data[key];
    },
    delete(key) {
      const had = key in data;
      delete data[key];
      return had;
    },
  };
}

describe('the shared-dict Store', () => {
  it('behaves like the core expects: incr from init, returns the new value', () => {
    const zone = fakeZone(100);
    const store = createSharedDictStore(zone);
    expect(store.incr('a', 1)).toBe(1);
    expect(store.incr('b', 1, 10)).toBe(11);
    expect(store.incr('b', -2.5, 10)).toBe(8.5);
    store.set('c', 1.5);
    expect(store.get('c')).toBe(1.5);
    store.delete('c');
    expect(store.get('c')).toBeUndefined();
  });

  it('a full zone drops new keys without throwing; existing keys keep counting', () => {
    const zone = fakeZone(2);
    const store = createSharedDictStore(zone);
    store.set('kept', 1);
    expect(store.incr('counter', 1, 0)).toBe(1);
    expect(() => store.set('new', 5)).not.toThrow();
    expect(store.get('new')).toBeUndefined();
    expect(store.incr('new-counter', 1, 0)).toBe(1);
    expect(store.get('new-counter')).toBeUndefined();
    expect(store.incr('counter', 1, 0)).toBe(2);
    store.set('kept', 7);
    expect(zone.data).toEqual({ kept: 7, counter: 2 });
  });
});

const ROWS: ReplicaStatus[] = [
  {
    id: 'gpu-a',
    address: '10.0.0.1:8000',
    weight: 1,
    state: 'healthy',
    ejectedUntil: null,
    ejections: 0,
    inFlight: 3,
    ewmaMs: 123.456,
    ttftMs: 20.04,
    tpotMs: 12.345,
    tokens: 1500,
    queue: 7,
    kvUsage: 0.42,
    prefixQueries: 123456,
    prefixHits: 98765,
    samples: 10,
    picks: 13,
    failures: 1,
  },
  {
    id: 'we"ird\\id',
    address: '[::1]:8001',
    weight: 0.8,
    state: 'ejected',
    ejectedUntil: Date.UTC(2026, 0, 1),
    ejections: 2,
    inFlight: 0,
    ewmaMs: null,
    ttftMs: null,
    tpotMs: null,
    tokens: 0,
    queue: null,
    kvUsage: null,
    prefixQueries: null,
    prefixHits: null,
    samples: 0,
    picks: 5,
    failures: 5,
  },
];

describe('status rendering', () => {
  it('JSON document: one row per replica with its upstream block', () => {
    const doc = statusDocument(ROWS, ['llm_balancer_0', 'llm_balancer_1'], 'least-connections', Date.UTC(2026, 0, 1, 12));
    expect(doc).not.toHaveProperty('requests_without_llm_body');
    expect(statusDocument(ROWS, [], 'llm', 0, 5).requests_without_llm_body).toBe(5);
    expect(doc).toEqual({
      strategy: 'least-connections',
      generated_at: '2026-01-01T12:00:00.000Z',
      replicas: [
        {
          id: 'gpu-a',
          address: '10.0.0.1:8000',
          upstream: 'llm_balancer_0',
          weight: 1,
          state: 'healthy',
          healthy: true,
          ejected_until: null,
          ejections: 0,
          in_flight: 3,
          tokens_in_flight: 1500,
          queue: 7,
          kv_cache_usage: 0.42,
          prefix_cache_queries: 123456,
          prefix_cache_hits: 98765,
          latency_ewma_ms: 123.5,
          ttft_ewma_ms: 20,
          tpot_ewma_ms: 12.3,
          samples: 10,
          picks: 13,
          failures: 1,
        },
        {
          id: 'we"ird\\id',
          address: '[::1]:8001',
          upstream: 'llm_balancer_1',
          weight: 0.8,
          state: 'ejected',
          healthy: false,
          ejected_until: '2026-01-01T00:00:00.000Z',
          ejections: 2,
          in_flight: 0,
          tokens_in_flight: 0,
          queue: null,
          kv_cache_usage: null,
          prefix_cache_queries: null,
          prefix_cache_hits: null,
          latency_ewma_ms: null,
          ttft_ewma_ms: null,
          tpot_ewma_ms: null,
          samples: 0,
          picks: 5,
          failures: 5,
        },
      ],
    });
  });

  it('Prometheus text: HELP and TYPE per family, escaped labels, no sample without data', () => {
    const text = prometheusText(ROWS);
    const lines = text.trimEnd().split('\n');
    expect(text.endsWith('\n')).toBe(true);
    const a = 'replica="gpu-a",address="10.0.0.1:8000"';
    const b = 'replica="we\\"ird\\\\id",address="[::1]:8001"';
    for (const expected of [
      '# TYPE llm_balancer_replica_in_flight gauge',
      `llm_balancer_replica_in_flight{${a}} 3`,
      `llm_balancer_replica_queue{${a}} 7`,
      `llm_balancer_replica_kv_cache_usage{${a}} 0.42`,
      '# TYPE llm_balancer_replica_prefix_cache_queries_total counter',
      `llm_balancer_replica_prefix_cache_queries_total{${a}} 123456`,
      '# TYPE llm_balancer_replica_prefix_cache_hits_total counter',
      `llm_balancer_replica_prefix_cache_hits_total{${a}} 98765`,
      '# TYPE llm_balancer_replica_tokens_in_flight gauge',
      `llm_balancer_replica_tokens_in_flight{${a}} 1500`,
      '# TYPE llm_balancer_replica_picks_total counter',
      `llm_balancer_replica_picks_total{${b}} 5`,
      `llm_balancer_replica_failures_total{${b}} 5`,
      `llm_balancer_replica_latency_ewma_ms{${a}} 123.5`,
      `llm_balancer_replica_tpot_ewma_ms{${a}} 12.3`,
      `llm_balancer_replica_healthy{${a}} 1`,
      `llm_balancer_replica_healthy{${b}} 0`,
      `llm_balancer_replica_ejected{${b}} 1`,
      `llm_balancer_replica_weight{${b}} 0.8`,
      `llm_balancer_replica_state{${b},state="ejected"} 1`,
    ]) {
      expect(lines, expected).toContain(expected);
    }
    expect(text).not.toContain(`llm_balancer_replica_latency_ewma_ms{${b}}`);
    expect(text).not.toContain(`llm_balancer_replica_queue{${b}}`);
    // Not reported (or stale): no sample, not a 0 that rate() would read as a counter reset.
    expect(text).not.toContain(`llm_balancer_replica_prefix_cache_queries_total{${b}}`);
    expect(text).not.toContain(`llm_balancer_replica_prefix_cache_hits_total{${b}}`);
    expect(text).not.toContain(`llm_balancer_replica_tpot_ewma_ms{${b}}`);
    expect(text).not.toContain('requests_without_llm_body');
    expect(prometheusText(ROWS, 7)).toContain('\nllm_balancer_requests_without_llm_body_total 7\n');
    // Exposition format: every sample line is `name{labels} number`, every family has HELP then TYPE.
    for (const line of lines) {
      if (line.startsWith('#')) expect(line).toMatch(/^# (HELP|TYPE) llm_balancer_replica_[a-z_]+ \S/);
      else expect(line).toMatch(/^llm_balancer_replica_[a-z_]+\{replica="(?:[^"\\]|\\.)*",address="[^"]*"(,state="[a-z-]+")?\} -?[0-9.]+$/);
    }
    const families = lines.filter((l) => l.startsWith('# TYPE')).map((l) => l.split(' ')[2]);
    expect(new Set(families).size).toBe(families.length);
  });

  it.each([
    ['plain', 'plain'],
    ['a"b', 'a\\"b'],
    ['a\\b', 'a\\\\b'],
    ['a\nb', 'a\\nb'],
  ])('labelValue(%j) = %j', (text, escaped) => {
    expect(labelValue(text)).toBe(escaped);
  });
});

describe('active check timing', () => {
  it.each<[number | undefined, number, number, boolean]>([
    [undefined, 1_000, 5_000, true],
    [1_000, 2_000, 5_000, false],
    [1_000, 5_800, 5_000, true],
    [1_000, 6_000, 5_000, true],
    [10_000, 1_000, 5_000, true], // the clock went back: probe rather than wait
  ])('probeDue(last %j, now %i, interval %i) = %s', (last, now, interval, due) => {
    expect(probeDue(last, now, interval)).toBe(due);
  });

  it.each<[number, number, number, boolean]>([
    [1_000, 2_000, 2_000, false],
    [1_000, 3_250, 2_000, true],
    [1_000, 9_000, 2_000, true],
  ])('probeLost(pending since %i, now %i, timeout %i) = %s', (since, now, timeout, lost) => {
    expect(probeLost(since, now, timeout)).toBe(lost);
  });
});

describe('error bodies', () => {
  it('exhausted failover: an OpenAI-style 502 body', () => {
    expect(JSON.parse(exhaustedError(2))).toEqual({
      error: {
        message: 'llm-balancer: all 2 attempts failed (connect error, timeout or a retry_on status) and no other replica is available',
        type: 'bad_gateway',
        code: 'replicas_unreachable',
        param: null,
      },
    });
    expect(JSON.parse(exhaustedError(1)).error.message).toContain('the only attempt failed');
  });

  it('internal failure: the core 503 body with code internal_error', () => {
    expect(JSON.parse(internalError('pick')).error).toMatchObject({ type: 'service_unavailable', code: 'internal_error' });
  });
});
