// deploy/grafana/llm-balancer.json (issue 16): every query names metrics the status endpoints really
// export — read from real nginx (with admission and the NGINX Plus peer source, against the fake
// Plus API) and from the Kong plugin in the real plugin server (with admission and kong.redis) —
// and every per-replica family they export has a panel. The gateway-specific panels name the
// gateway whose endpoint exports their metric. The backend serves vLLM's /metrics (load and
// prefix-cache counters), so the families the gateways read from it carry real samples.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { request, startBalancer, waitFor } from './helpers/nginx-balancer';
import { REPO_ROOT } from './helpers/nginx-env';
import { startFakePlusApi } from './helpers/plus-api';
import type { FakePlusApi } from './helpers/plus-api';

interface Panel {
  type: string;
  title: string;
  id: number;
  targets?: Array<{ expr: string }>;
  gridPos: { x: number; y: number; w: number; h: number };
}

const dashboard = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'grafana', 'llm-balancer.json'), 'utf8')) as { uid: string; panels: Panel[]; templating: { list: Array<{ name: string; definition?: string }> } };

/** The llm_balancer_* metric names a PromQL expression reads. */
function metricsOf(expr: string): string[] {
  return Array.from(new Set(expr.match(/\bllm_balancer_[a-z_]+\b/g) ?? []));
}

/** The metric families of a Prometheus text exposition (its # TYPE lines). */
function families(text: string): Set<string> {
  return new Set(Array.from(text.matchAll(/^# TYPE (\S+) /gm), (m) => m[1]));
}

const ADMISSION = { enabled: true, saturation: 'concurrency', max_concurrency: 8, fairness: 'none' };

/**
 * The backend's /metrics: vLLM's load and prefix-cache counters, so both gateways (strategy llm
 * scrapes it) export samples of the replica families read from it, not only their HELP and TYPE.
 */
const VLLM_METRICS = [
  'vllm:num_requests_running{model_name="m"} 1',
  'vllm:num_requests_waiting{model_name="m"} 0',
  'vllm:kv_cache_usage_perc{model_name="m"} 0.25',
  'vllm:prefix_cache_queries_total{model_name="m"} 4096.0',
  'vllm:prefix_cache_hits_total{model_name="m"} 1024.0',
  '',
].join('\n');

/** The families the replica's scraped /metrics feed: a sample of each once a scrape is recorded. */
const SCRAPED = ['llm_balancer_replica_queue', 'llm_balancer_replica_kv_cache_usage', 'llm_balancer_replica_prefix_cache_queries_total', 'llm_balancer_replica_prefix_cache_hits_total'];

/** The families of a Prometheus text that have at least one sample. */
function sampled(text: string): Set<string> {
  return new Set(Array.from(text.matchAll(/^([a-z_]+)[{ ]/gm), (m) => m[1]));
}

describe('the Grafana dashboard', () => {
  let backends: Backends;
  let api: FakePlusApi;
  let nginxNames = new Set<string>();
  let kongNames = new Set<string>();
  let nginxSampled = new Set<string>();
  let kongSampled = new Set<string>();

  beforeAll(async () => {
    backends = await startBackends(1);
    backends.list[0].behave({ metricsText: VLLM_METRICS });
    api = await startFakePlusApi();
    api.setPeers('llm', [{ server: backends.list[0].address }]);
    const b = await startBalancer({
      strategy: 'llm',
      replicas: [{ id: 'a', address: backends.list[0].address }],
      admission: ADMISSION,
      replica_metrics: { interval_s: 0.2 },
      nginx: { plus_api: { url: api.url, upstream: 'llm', interval_s: 1 } },
    });
    try {
      let text = '';
      await waitFor('the NGINX Plus peer list and the replica\'s /metrics to be read', async () => {
        text = (await request(`http://127.0.0.1:${b.port}/llm-balancer/metrics`)).body;
        return text.includes('llm_balancer_peers_synced_timestamp_seconds') && SCRAPED.every((name) => sampled(text).has(name));
      });
      nginxNames = families(text);
      nginxSampled = sampled(text);
    } finally {
      await b.stop();
    }
    const g = await startKongGateway({
      config: {
        strategy: 'llm',
        replicas: [{ address: backends.list[0].address }],
        admission: ADMISSION,
        replica_metrics: { interval_s: 0.2 },
        // Nothing listens there: the plugin balances on its own and says so (redis_connected 0).
        kong: { status_path: '/llm-balancer/status', redis: { host: '127.0.0.1', port: 1 } },
      },
    });
    try {
      let text = '';
      await waitFor("the replica's /metrics to be read", async () => {
        text = (await request(g.url + '/llm-balancer/status?format=prometheus')).body;
        return SCRAPED.every((name) => sampled(text).has(name));
      });
      kongNames = families(text);
      kongSampled = sampled(text);
    } finally {
      await g.stop();
    }
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    await backends?.close();
  });

  it('is a well-formed dashboard: unique panel ids, every panel inside the 24-column grid, queries on every graph', () => {
    expect(dashboard.uid).toBe('llm-balancer');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type !== 'row') expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
    }
  });

  it('names only metrics the endpoints export, each gateway-specific panel its own gateway\'s', () => {
    const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
    for (const v of dashboard.templating.list) if (v.definition) queries.push({ title: 'variable ' + v.name, expr: v.definition });
    expect(queries.length).toBeGreaterThan(20);
    for (const q of queries) {
      const names = metricsOf(q.expr);
      expect(names.length, q.title).toBeGreaterThan(0);
      for (const name of names) {
        const exporters = q.title.startsWith('Kong:') ? kongNames : q.title.startsWith('NGINX') || q.title.endsWith('(NGINX)') ? nginxNames : new Set([...nginxNames, ...kongNames]);
        expect(exporters.has(name), `${q.title}: ${name} is not exported`).toBe(true);
      }
    }
  });

  it("exports samples, not only HELP and TYPE, of the families read from the replica's own /metrics, on both gateways", () => {
    for (const name of SCRAPED) {
      expect(nginxSampled.has(name), 'nginx: ' + name).toBe(true);
      expect(kongSampled.has(name), 'Kong: ' + name).toBe(true);
    }
  });

  it('has a panel for every per-replica family and every admission family both gateways export', () => {
    const used = new Set(dashboard.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricsOf(t.expr))));
    const exported = [...nginxNames, ...kongNames].filter((name) => /^llm_balancer_(replica|admission)_/.test(name));
    expect(exported.length).toBeGreaterThan(15);
    // The current-total gauge repeats the per-band one summed.
    for (const name of exported.filter((n) => n !== 'llm_balancer_admission_waiting_total_now')) expect(used.has(name), name).toBe(true);
  });
});
