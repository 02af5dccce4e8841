// Kong's log entry → the core's Outcome, row by row (plugins/kong/outcome.ts), and the plugin's
// config loading: the shared options plus the `kong` record, every error with its path.
import { describe, expect, it } from 'vitest';
import { answeredBeforeRefusal, lastTriedAddress, needsResponseSource, outcomeFromLogEntry } from '../plugins/kong/outcome';
import type { KongLogEntry } from '../plugins/kong/outcome';
import { loadPluginConfig } from '../plugins/kong/index';

const ok = (extra: Partial<KongLogEntry> = {}): KongLogEntry => ({
  response: { status: 200 },
  upstream_status: '200',
  latencies: { proxy: 120, receive: 880, request: 1002 },
  tries: [{ ip: '127.0.0.1', port: 8001 }],
  ...extra,
});

describe('outcomeFromLogEntry', () => {
  it.each<[string, KongLogEntry, object]>([
    ['a completed answer: latency = proxy + receive, TTFT = proxy', ok(), { status: 200, latencyMs: 1000, ttftMs: 120, error: null }],
    ['no receive time: latency = proxy', ok({ latencies: { proxy: 40 } }), { status: 200, latencyMs: 40, ttftMs: 40, error: null }],
    ["the replica's own 503", ok({ response: { status: 503 }, upstream_status: '503' }), { status: 503, error: null }],
    ["the replica's own 502 (it answered: no failed try)", ok({ response: { status: 502 }, upstream_status: '502' }), { status: 502, error: null }],
    ['a 429 from the replica', ok({ response: { status: 429 }, upstream_status: '429' }), { status: 429, error: null }],
    ['Kong retried and the last try answered', ok({ upstream_status: '502, 200' }), { status: 200, error: null }],
    ['a numeric upstream_status', ok({ upstream_status: 201 as unknown as string }), { status: 201, error: null }],
    ['connect refused: failed try with 502', ok({ response: { status: 502 }, upstream_status: '502', tries: [{ state: 'failed', code: 502 }] }), { status: 0, error: 'connect-error', ttftMs: null }],
    ['timeout: failed try with 504', ok({ response: { status: 504 }, upstream_status: '504', tries: [{ state: 'failed', code: 504 }] }), { status: 0, error: 'timeout' }],
    ["Kong's 502 without upstream status or tries", { response: { status: 502 }, latencies: { proxy: 3 } }, { status: 0, error: 'connect-error' }],
    ["Kong's 504 without upstream status", { response: { status: 504 } }, { status: 0, error: 'timeout' }],
    ['client left before the header (499)', ok({ response: { status: 499 }, upstream_status: undefined }), { status: 0, error: 'aborted' }],
    ['client left after a replica status', ok({ response: { status: 499 }, upstream_status: '200' }), { status: 200, error: 'aborted' }],
    ['a later plugin answered (no upstream status, 429)', { response: { status: 429 }, latencies: { proxy: null } }, { status: 0, latencyMs: -1, error: 'aborted' }],
    ['an empty entry', {}, { status: 0, latencyMs: -1, error: 'aborted' }],
    ['garbage latencies', ok({ latencies: { proxy: 'x', receive: -5 } }), { status: 200, latencyMs: -1, ttftMs: null, error: null }],
    ['an empty upstream status string', ok({ upstream_status: '' , response: { status: 200 } }), { status: 0, error: 'aborted' }],
  ])('%s', (_what, entry, expected) => {
    expect(outcomeFromLogEntry(entry)).toMatchObject(expected);
  });

  // Real Kong records a try's failure only when it starts the next try: the last (with retries 0,
  // the only) try of a refused or timed-out attempt carries no state, and nginx's 502/504 sits in
  // upstream_status. kong.response.get_source() then tells nginx's answer from the replica's.
  it.each<[string, KongLogEntry, string | undefined, object]>([
    ['refused, the only try without state, source "error"', ok({ response: { status: 502 }, upstream_status: '502' }), 'error', { status: 0, error: 'connect-error', ttftMs: null }],
    ['timed out, source "error"', ok({ response: { status: 504 }, upstream_status: '504', latencies: { proxy: -1 } }), 'error', { status: 0, error: 'timeout' }],
    ["the replica's own 502, source \"service\"", ok({ response: { status: 502 }, upstream_status: '502' }), 'service', { status: 502, error: null }],
    ["the replica's own 504, source \"service\"", ok({ response: { status: 504 }, upstream_status: '504' }), 'service', { status: 504, error: null }],
    ['a source for a 200 changes nothing', ok(), 'error', { status: 200, error: null }],
    ['a 503 is never read as nginx failing', ok({ response: { status: 503 }, upstream_status: '503' }), 'error', { status: 503, error: null }],
  ])('%s', (_what, entry, source, expected) => {
    expect(outcomeFromLogEntry(entry, source)).toMatchObject(expected);
  });

  it.each<[string, KongLogEntry, boolean]>([
    ['a 502 whose last try has no state', ok({ response: { status: 502 }, upstream_status: '502' }), true],
    ['a 504 whose last try has no state', ok({ response: { status: 504 }, upstream_status: '504' }), true],
    ['a 502 whose last try says failed', ok({ response: { status: 502 }, tries: [{ state: 'failed', code: 502 }] }), false],
    ['a 200', ok(), false],
    ['a 503', ok({ response: { status: 503 } }), false],
  ])('needsResponseSource: %s', (_what, entry, expected) => {
    expect(needsResponseSource(entry)).toBe(expected);
  });
});

describe('answeredBeforeRefusal', () => {
  const answer = { status: 200, latencyMs: 900, ttftMs: 20, error: null };
  it.each<[string, KongLogEntry, object, number | undefined, boolean]>([
    ['began before the last refusal', ok({ started_at: 1000 }), answer, 1500, true],
    ['began after it', ok({ started_at: 2000 }), answer, 1500, false],
    ['the replica never refused', ok({ started_at: 1000 }), answer, undefined, false],
    ['no started_at in the entry', ok(), answer, 1500, false],
    ['a failure is never stale here', ok({ started_at: 1000 }), { status: 0, latencyMs: 5, ttftMs: null, error: 'connect-error' }, 1500, false],
  ])('%s', (_what, entry, outcome, lastRefusal, expected) => {
    expect(answeredBeforeRefusal(entry, outcome as Parameters<typeof answeredBeforeRefusal>[1], lastRefusal)).toBe(expected);
  });
});

describe('lastTriedAddress', () => {
  it.each<[string, KongLogEntry, string | null]>([
    ['one try', { tries: [{ ip: '10.0.0.11', port: 8000 }] }, '10.0.0.11:8000'],
    ['the last of several', { tries: [{ ip: '10.0.0.11', port: 8000, state: 'failed', code: 502 }, { ip: '10.0.0.12', port: 8001 }] }, '10.0.0.12:8001'],
    ['IPv6 in brackets', { tries: [{ ip: '::1', port: 9002 }] }, '[::1]:9002'],
    ['no tries', {}, null],
    ['an empty list', { tries: [] }, null],
    ['a try without a port', { tries: [{ ip: '10.0.0.11' }] }, null],
    ['a malformed try', { tries: [null] }, null],
  ])('%s', (_what, entry, expected) => {
    expect(lastTriedAddress(entry)).toBe(expected);
  });
});

describe('loadPluginConfig', () => {
  const REPLICAS = [{ address: '127.0.0.1:9001' }];

  it('fills the kong record from defaults when Kong sends it null or leaves it out', () => {
    for (const kong of [undefined, null, {}]) {
      const loaded = loadPluginConfig({ replicas: REPLICAS, kong, __plugin_id: 'x', __seq__: 3 });
      expect(loaded.ok).toBe(true);
      if (loaded.ok) {
        expect(loaded.kong).toEqual({
          upstream: null,
          admin_url: 'http://127.0.0.1:8001',
          admin_token: null,
          refresh_interval_s: 5,
          admin_timeout_s: 2,
          max_body_bytes: 1048576,
          same_target_retries: 0,
          stream_timeouts: true,
          status_path: null,
          redis: null,
        });
      }
    }
  });

  it('accepts an upstream without static replicas', () => {
    const loaded = loadPluginConfig({ kong: { upstream: 'llm-replicas', admin_token: 's3cret' } });
    expect(loaded.ok).toBe(true);
    if (loaded.ok) expect(loaded.kong).toMatchObject({ upstream: 'llm-replicas', admin_token: 's3cret' });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['neither replicas nor an upstream', {}, 'replicas: must list at least one replica (or set kong.upstream'],
    ['an admin_url that is not http(s)', { replicas: REPLICAS, kong: { admin_url: 'localhost:8001' } }, 'kong.admin_url: must be an http(s) URL'],
    ['a refresh interval of 0', { replicas: REPLICAS, kong: { refresh_interval_s: 0 } }, 'kong.refresh_interval_s: must be'],
    ['too many same-target retries', { replicas: REPLICAS, kong: { same_target_retries: 11 } }, 'kong.same_target_retries: must be'],
    ['latency_metric tpot (a JS plugin never sees the body)', { replicas: REPLICAS, response_time: { latency_metric: 'tpot' } }, 'response_time.latency_metric: tpot needs the streamed response body'],
    ['a status path without its slash', { replicas: REPLICAS, kong: { status_path: 'status' } }, 'kong.status_path: must be a URL path starting with /'],
    ['an unknown kong field', { replicas: REPLICAS, kong: { upstreams: 'x' } }, 'kong.upstreams: unknown field'],
    ['a bad shared option next to a bad kong option', { replicas: REPLICAS, strategy: 'fastest', kong: { max_body_bytes: 10 } }, 'strategy: must be one of'],
  ])('rejects %s with the field path', (_what, raw, fragment) => {
    const loaded = loadPluginConfig(raw);
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.errors.map((e) => (e.path === '' ? '' : e.path + ': ') + e.message).join('\n')).toContain(fragment);
  });

  it('reports errors of both parts at once', () => {
    const loaded = loadPluginConfig({ replicas: REPLICAS, strategy: 'fastest', kong: { max_body_bytes: 10 } });
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.errors.map((e) => e.path).sort()).toEqual(['kong.max_body_bytes', 'strategy']);
  });
});

describe('README', () => {
  it('carries the current table of the kong record (run `npm run docs` when this fails)', async () => {
    const { configTable } = await import('../shared/config/docs');
    const { kongOptionsSchema } = await import('../plugins/kong/options');
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const start = text.indexOf('<!-- kong-options:start -->\n') + '<!-- kong-options:start -->\n'.length;
    const end = text.indexOf('<!-- kong-options:end -->');
    expect(start).toBeGreaterThan('<!-- kong-options:start -->\n'.length - 1);
    expect(text.slice(start, end)).toBe(configTable(kongOptionsSchema).trimEnd() + '\n');
  });
});
