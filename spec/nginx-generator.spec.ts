// The nginx config generator: what it renders passes the real `nginx -t` (with the real njs
// module and the built bundle), and bad input is refused with field paths before anything runs.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { preloadedConfig, renderNginxConfig } from '../plugins/nginx/generator/generate';
import type { RenderMode } from '../plugins/nginx/generator/generate';
import { loadNginxEnv, REPO_ROOT } from './helpers/nginx-env';

const run = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'bin', 'llm-balancer.js');

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-generator-'));
  fs.mkdirSync(path.join(dir, 'temp'));
  fs.mkdirSync(path.join(dir, 'logs'));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Renders `yaml` and runs the real `nginx -t` on it; returns nginx's verdict. */
async function nginxTest(yaml: string, mode: RenderMode, name: string): Promise<{ ok: boolean; output: string; conf: string }> {
  const env = loadNginxEnv();
  const loaded = loadBalancerFile(yaml);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const configJson = path.join(dir, name + '.json');
  fs.writeFileSync(configJson, JSON.stringify(preloadedConfig(loaded.config, loaded.nginx)));
  const rendered = renderNginxConfig(
    {
      config: loaded.config,
      nginx: { ...loaded.nginx, module_path: env.modulePath, js_path: path.join(REPO_ROOT, 'dist', 'nginx'), config_json: configJson },
      source: name + '.yaml',
    },
    mode,
  );
  // A snippet goes inside the user's own http {}: wrap it as they would.
  const conf =
    mode === 'full'
      ? rendered
      : `load_module ${env.modulePath};\npid nginx.pid;\nevents {}\nhttp {\n  access_log logs/access.log;\n  client_body_temp_path temp/cb; proxy_temp_path temp/p; fastcgi_temp_path temp/f; uwsgi_temp_path temp/u; scgi_temp_path temp/s;\n${rendered}}\n`;
  const confPath = path.join(dir, name + '.conf');
  fs.writeFileSync(confPath, conf);
  try {
    const r = await run(env.nginxArgv[0], env.nginxArgv.slice(1).concat(['-e', 'stderr', '-p', dir, '-c', confPath, '-t']));
    return { ok: true, output: r.stderr, conf };
  } catch (error) {
    const e = error as { stderr?: string };
    return { ok: false, output: e.stderr ?? String(error), conf };
  }
}

const REPLICAS = `
replicas:
  - address: 127.0.0.1:9001
  - address: 127.0.0.1:9002
    weight: 0.8
  - address: "[::1]:9003"
    id: gpu-c
`;

describe('nginx-config output passes the real `nginx -t`', () => {
  it.each<[string, string, RenderMode]>([
    ['least-connections, full config', 'strategy: least-connections', 'full'],
    ['round-robin, no retries', 'strategy: round-robin\nretries: 0', 'full'],
    ['weighted-round-robin, 3 retries, active checks', 'strategy: weighted-round-robin\nretries: 3\nactive_health:\n  enabled: true', 'full'],
    ['consistent-hash on a header', 'strategy: consistent-hash\nhash_key:\n  source: header\n  name: x-session-id', 'full'],
    ['consistent-hash on the body (js_content route)', 'strategy: consistent-hash\nhash_key:\n  source: body\n  name: user', 'full'],
    ['hybrid as an http snippet', 'strategy: hybrid\nhash_key:\n  source: cookie\n  name: session', 'snippet'],
    ['NGINX Plus peers with static fallbacks', 'strategy: least-connections\nnginx:\n  plus_api:\n    url: http://127.0.0.1:8080/api/9\n    upstream: llm', 'full'],
    ['response-time with nginx options', 'strategy: response-time\nnginx:\n  listen: 127.0.0.1:18080\n  location: /openai/\n  keepalive: 8\n  state_zone_size: 1m\n  worker_processes: 2', 'full'],
  ])('%s', async (name, yaml, mode) => {
    const verdict = await nginxTest(yaml + REPLICAS, mode, name.replace(/[^a-z0-9]+/gi, '-'));
    expect(verdict.output).toContain('test is successful');
    expect(verdict.ok).toBe(true);
  });

  it('with NGINX Plus as the source, needs no static replicas and syncs the peers periodically', async () => {
    const verdict = await nginxTest('nginx:\n  plus_api:\n    url: http://127.0.0.1:8080/api/9\n    upstream: llm\n    interval_s: 2\n', 'full', 'plus-only');
    expect(verdict.output).toContain('test is successful');
    expect(verdict.conf).toContain('js_shared_dict_zone zone=llm_balancer_peers:1m type=string;');
    expect(verdict.conf).toContain('js_periodic llm_balancer.syncPeers interval=2000ms;');
    // Its own location, with a fetch timeout below the beat (a run still going at the next beat is killed).
    expect(verdict.conf).toMatch(/location @llm_balancer_peer_sync \{\n\s+js_fetch_timeout 1750ms;/);
    expect(verdict.conf).not.toContain('js_periodic llm_balancer.healthCheck');
  });

  it('scrapes the replicas\' /metrics only when the strategy reads their load (llm), at replica_metrics.interval_s', async () => {
    const llm = await nginxTest('strategy: llm\nreplica_metrics:\n  interval_s: 0.2\n  timeout_s: 2' + REPLICAS, 'full', 'scrape-llm');
    expect(llm.output).toContain('test is successful');
    // Its own location; the fetch timeout is timeout_s but below the beat (a run still going at the next beat is killed).
    expect(llm.conf).toMatch(/location @llm_balancer_metrics \{\n\s+js_fetch_timeout 150ms;\n\s+js_periodic llm_balancer\.scrapeMetrics interval=200ms;\n\s+\}/);
    expect(llm.conf.match(/scrapeMetrics/g)).toHaveLength(1);
    const defaults = await nginxTest('strategy: llm' + REPLICAS, 'snippet', 'scrape-llm-defaults');
    expect(defaults.output).toContain('test is successful');
    expect(defaults.conf).toMatch(/location @llm_balancer_metrics \{\n\s+js_fetch_timeout 750ms;\n\s+js_periodic llm_balancer\.scrapeMetrics interval=1000ms;/);
    const slowBeat = await nginxTest('strategy: llm\nreplica_metrics:\n  interval_s: 10\n  timeout_s: 0.5' + REPLICAS, 'full', 'scrape-llm-slow');
    expect(slowBeat.conf).toMatch(/js_fetch_timeout 500ms;\n\s+js_periodic llm_balancer\.scrapeMetrics interval=10000ms;/);
    for (const strategy of ['least-connections', 'round-robin', 'least-tokens', 'prefix-affinity']) {
      const other = await nginxTest(`strategy: ${strategy}\nreplica_metrics:\n  interval_s: 0.2` + REPLICAS, 'full', 'scrape-' + strategy);
      expect(other.output).toContain('test is successful');
      expect(other.conf).not.toContain('scrapeMetrics');
      expect(other.conf).not.toContain('@llm_balancer_metrics');
    }
  });

  it('times the first body byte (js_body_filter in every proxy location) only with latency_metric ttft', async () => {
    const ttft = await nginxTest('strategy: response-time\nretries: 2\nresponse_time:\n  latency_metric: ttft' + REPLICAS, 'full', 'ttft');
    expect(ttft.output).toContain('test is successful');
    // The first attempt and both failover locations, once for streaming and once for other requests.
    expect(ttft.conf.match(/js_body_filter llm_balancer\.firstByte buffer_type=buffer;/g)).toHaveLength(6);
    expect(ttft.conf).toContain('js_var $llm_balancer_first_byte;');
    expect(ttft.conf).not.toContain('llm_balancer_output_tokens');
    const tpot = await nginxTest('strategy: response-time\nretries: 1\nresponse_time:\n  latency_metric: tpot' + REPLICAS, 'full', 'tpot');
    expect(tpot.output).toContain('test is successful');
    expect(tpot.conf.match(/js_body_filter llm_balancer\.firstByte buffer_type=buffer;/g)).toHaveLength(4);
    expect(tpot.conf).toContain('js_var $llm_balancer_first_byte;');
    expect(tpot.conf).toContain('js_var $llm_balancer_output_tokens;');
    const e2e = await nginxTest('strategy: response-time\nretries: 2' + REPLICAS, 'full', 'e2e');
    expect(e2e.conf).not.toContain('js_body_filter');
    expect(e2e.conf).not.toContain('llm_balancer_first_byte');
    expect(e2e.conf).not.toContain('llm_balancer_output_tokens');
  });

  it('renders one keepalive upstream per replica, a failover location per retry, and the body route only when needed', async () => {
    // Equal read bounds for streaming and other requests: nothing needs the body (the js_set path).
    const headerKeyed = await nginxTest('strategy: least-connections\nretries: 2\ntimeouts:\n  stream_idle_s: 300' + REPLICAS, 'full', 'shape-a');
    expect(headerKeyed.conf.match(/^  upstream llm_balancer_\d+ \{$/gm)).toHaveLength(3);
    expect(headerKeyed.conf.match(/keepalive 32;/g)).toHaveLength(3);
    expect(headerKeyed.conf).toContain('location @llm_balancer_retry_1 {');
    expect(headerKeyed.conf).toContain('location @llm_balancer_retry_2 {');
    expect(headerKeyed.conf).not.toContain('@llm_balancer_retry_3');
    expect(headerKeyed.conf).not.toContain('js_content llm_balancer.route');
    // The pick is read first by proxy_pass (content phase), never by a rewrite-phase `if` that
    // would run it before nginx's own auth and rate limits.
    expect(headerKeyed.conf).not.toContain('if ($llm_balancer_upstream');
    expect(headerKeyed.conf).toMatch(/upstream llm_balancer_unavailable \{\n\s+server 127\.0\.0\.1:1 down;/);
    expect(headerKeyed.conf).not.toContain('js_periodic');
    const bodyKeyed = await nginxTest('strategy: consistent-hash\nhash_key:\n  source: body\n  name: user' + REPLICAS, 'full', 'shape-b');
    expect(bodyKeyed.conf).toContain('js_content llm_balancer.route;');
    expect(bodyKeyed.conf).toContain('proxy_pass http://$llm_balancer_target;');
  });
});

describe('bad input is refused with the field path, before anything is written', () => {
  it.each<[string, string, string[]]>([
    ['a misspelt strategy', 'strategy: least-conn' + REPLICAS, ['strategy: must be one of']],
    ['no replicas', 'strategy: round-robin', ['replicas: must list at least one replica']],
    ['a replica without a port', 'replicas:\n  - address: 10.0.0.1', ['replicas[0].address: must be host:port']],
    ['nginx options of the wrong type', 'nginx:\n  keepalive: 0\n  state_zone_size: lots\n  location: v1' + REPLICAS, ['nginx.keepalive: must be an integer between 1 and 10000, got 0', 'nginx.state_zone_size: must be an nginx size', 'nginx.location: must be a URI prefix']],
    ['an unknown nginx option', 'nginx:\n  listne: 80' + REPLICAS, ['nginx.listne: unknown field (did you mean "listen"?)']],
    ['errors in both parts at once', 'retries: 99\nnginx:\n  keepalive: -1' + REPLICAS, ['retries: must be an integer between 0 and 10', 'nginx.keepalive: must be an integer between 1 and 10000']],
    [
      'the removed read_timeout_s, with where its setting went',
      'nginx:\n  read_timeout_s: 600' + REPLICAS,
      ['nginx.read_timeout_s: was replaced by the top-level timeouts record: timeouts.response_s', 'timeouts.stream_idle_s'],
    ],
    ['not YAML', 'strategy: [unclosed', ['config: is not valid YAML or JSON']],
    ['a Plus API without url and upstream', 'nginx:\n  plus_api: {}', ['nginx.plus_api.url: is required', 'nginx.plus_api.upstream: is required']],
    ['a consumer variable with a $', 'nginx:\n  consumer_variable: $user' + REPLICAS, ['nginx.consumer_variable: must be an nginx variable name without $']],
    ['a Plus API url without scheme', 'nginx:\n  plus_api:\n    url: localhost/api/9\n    upstream: llm', ['nginx.plus_api.url: must be an http(s) URL']],
  ])('%s', async (_name, yaml, messages) => {
    const input = path.join(dir, 'bad.yaml');
    const output = path.join(dir, 'llm-balancer.json');
    fs.rmSync(output, { force: true });
    fs.writeFileSync(input, yaml);
    const error = await run(process.execPath, [CLI, 'nginx-config', input]).then(
      () => null,
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(error?.code).toBe(2);
    expect(error?.stdout).toBe('');
    for (const message of messages) expect(error?.stderr).toContain(message);
    expect(fs.existsSync(output)).toBe(false);
  });

  it('prints usage for a wrong command line', async () => {
    const error = await run(process.execPath, [CLI, 'nginx-conf']).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(error?.code).toBe(2);
    expect(error?.stderr).toContain('usage: llm-balancer nginx-config');
  });
});

describe('npx llm-balancer nginx-config', () => {
  it('writes the preloaded JSON beside the input and prints a config nginx -t accepts', async () => {
    const env = loadNginxEnv();
    const input = path.join(dir, 'balancer.yaml');
    fs.writeFileSync(input, `strategy: weighted-round-robin\nnginx:\n  module_path: ${env.modulePath}\n` + REPLICAS);
    const r = await run(process.execPath, [CLI, 'nginx-config', input]);
    expect(r.stderr).toContain('wrote ' + path.join(dir, 'llm-balancer.json'));
    const preloaded = JSON.parse(fs.readFileSync(path.join(dir, 'llm-balancer.json'), 'utf8'));
    expect(preloaded.upstreams).toEqual(['llm_balancer_0', 'llm_balancer_1', 'llm_balancer_2']);
    expect(preloaded.plusApi).toBeNull();
    expect(preloaded.consumerVariable).toBe('remote_user');
    expect(preloaded.config.replicas.map((x: { id: string }) => x.id)).toEqual(['127.0.0.1:9001', '127.0.0.1:9002', 'gpu-c']);
    const conf = path.join(dir, 'cli.conf');
    fs.writeFileSync(conf, r.stdout);
    const t = await run(env.nginxArgv[0], env.nginxArgv.slice(1).concat(['-e', 'stderr', '-p', dir, '-c', conf, '-t']));
    expect(t.stderr).toContain('test is successful');
  });
});

describe('the shipped example', () => {
  it('plugins/nginx/example/balancer.yaml is valid and its config passes nginx -t', async () => {
    const yaml = fs.readFileSync(path.join(REPO_ROOT, 'plugins', 'nginx', 'example', 'balancer.yaml'), 'utf8');
    const verdict = await nginxTest(yaml, 'full', 'example');
    expect(verdict.output).toContain('test is successful');
    expect(verdict.conf).toContain('js_periodic llm_balancer.healthCheck');
  });
});
