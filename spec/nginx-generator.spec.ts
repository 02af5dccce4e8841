// The nginx config generator: what it renders passes the real `nginx -t` (with the real njs
// module and the built bundle), and bad input is refused with field paths before anything runs.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { configModule, preloadedConfig, renderNginxConfig } from '../plugins/nginx/generator/generate';
import type { RenderMode } from '../plugins/nginx/generator/generate';
import { loadNginxEnv, nginxTarget, REPO_ROOT } from './helpers/nginx-env';
import { createPrefix, freePort, startNginx } from './helpers/nginx-process';
import { main as cliMain } from '../plugins/nginx/generator/cli';
import { nginxOptionsSchema, nginxSectionSchema } from '../plugins/nginx/generator/options';
import { configTable } from '../shared/config/docs';

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
  // The target nginx's engine (LLMB_NGINX_TARGET), with the config file it reads.
  const engine = nginxTarget().engine;
  const configJson = path.join(dir, name + (engine === 'qjs' ? '.config.js' : '.json'));
  const preloaded = preloadedConfig(loaded.config, loaded.nginx);
  fs.writeFileSync(configJson, engine === 'qjs' ? configModule(preloaded) : JSON.stringify(preloaded));
  const rendered = renderNginxConfig(
    {
      config: loaded.config,
      nginx: { ...loaded.nginx, js_engine: engine, module_path: env.modulePath, js_path: path.join(REPO_ROOT, 'dist', 'nginx'), config_json: configJson },
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

/** The text of `location NAME { ... }` (up to its closing brace at the same indent). */
function blockOf(conf: string, name: string): string {
  const start = conf.indexOf('location ' + name + ' {');
  if (start < 0) throw new Error('no location ' + name);
  return conf.slice(start, conf.indexOf('\n    }', start));
}

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
    // e2e: only the streaming locations filter (progress and a stream's last byte), the others not.
    const e2e = await nginxTest('strategy: response-time\nretries: 2' + REPLICAS, 'full', 'e2e');
    expect(e2e.output).toContain('test is successful');
    expect(e2e.conf.match(/js_body_filter llm_balancer\.firstByte buffer_type=buffer;/g)).toHaveLength(3);
    for (const name of ['@llm_balancer_proxy_stream', '@llm_balancer_retry_stream_1', '@llm_balancer_retry_stream_2']) {
      expect(blockOf(e2e.conf, name)).toContain('js_body_filter llm_balancer.firstByte');
    }
    for (const name of ['@llm_balancer_proxy', '@llm_balancer_retry_1', '@llm_balancer_retry_2']) {
      expect(blockOf(e2e.conf, name)).not.toContain('js_body_filter');
    }
    expect(e2e.conf).toContain('js_var $llm_balancer_body;');
    expect(e2e.conf).not.toContain('llm_balancer_first_byte');
    expect(e2e.conf).not.toContain('llm_balancer_output_tokens');
    // With one read bound there are no streaming locations and no body to track.
    const oneBound = await nginxTest('strategy: response-time\nretries: 2\ntimeouts:\n  stream_idle_s: 300' + REPLICAS, 'full', 'e2e-one-bound');
    expect(oneBound.conf).not.toContain('js_body_filter');
    expect(oneBound.conf).not.toContain('llm_balancer_body');
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
    ['admission fair by an unverified consumer', 'admission:\n  enabled: true' + REPLICAS, ['admission.fairness: consumer needs a verified identity on NGINX', 'or set admission.fairness: none']],
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
    ['an empty file', '', ['config: is empty: it must be a mapping of balancer options']],
    ['a file of comments only', '# nothing yet\n', ['config: is empty']],
    ['a list instead of a mapping', '- address: 127.0.0.1:1', ['config: must be a mapping of balancer options, got a list']],
    ['every weight 0', 'replicas:\n  - address: 127.0.0.1:1\n    weight: 0\n  - address: 127.0.0.1:2\n    weight: 0', ['replicas: must have at least one replica with a weight above 0']],
    ['the issue\'s location', 'nginx:\n  location: "{ return 200 x; } location /z"' + REPLICAS, ['nginx.location: must be a URI prefix starting with /']],
    ['the issue\'s status_allow', 'nginx:\n  status_allow: ["all; allow 0.0.0.0/0"]' + REPLICAS, ['nginx.status_allow[0]: must be an IPv4 or IPv6 address or CIDR']],
    ['the issue\'s replica id', 'replicas:\n  - address: 127.0.0.1:1\n    id: "a\\n  server { listen 9999; location / { return 200; } }\\n"', ['replicas[0].id: must not contain control characters']],
    ['the issue\'s module_path', 'nginx:\n  module_path: "/usr/lib/x.so\\";\\nload_module \\"/tmp/evil.so"' + REPLICAS, ['nginx.module_path: must be a file path without control characters, quotes']],
    ['a Plus API without url and upstream', 'nginx:\n  plus_api: {}', ['nginx.plus_api.url: is required', 'nginx.plus_api.upstream: is required']],
    ['a consumer variable with a $', 'nginx:\n  consumer_variable: $user' + REPLICAS, ['nginx.consumer_variable: must be an nginx variable name without $']],
    ['a Plus API url without scheme', 'nginx:\n  plus_api:\n    url: localhost/api/9\n    upstream: llm', ['nginx.plus_api.url: must be an http(s) URL']],
    ['an engine nginx does not have', 'nginx:\n  js_engine: v8' + REPLICAS, ['nginx.js_engine: must be one of']],
    ['js_context_reuse with the njs engine', 'nginx:\n  js_context_reuse: 64' + REPLICAS, ['nginx.js_context_reuse: applies only with js_engine qjs']],
  ])('%s', async (_name, yaml, messages) => {
    const folder = fs.mkdtempSync(path.join(dir, 'bad-'));
    const input = path.join(folder, 'bad.yaml');
    fs.writeFileSync(input, yaml);
    for (const extra of [[], ['-o', path.join(folder, 'out', 'nginx.conf')]]) {
      const error = await cli([input, ...extra]);
      expect(error.code).toBe(2);
      expect(error.stdout).toBe('');
      for (const message of messages) expect(error.stderr).toContain(message);
      // Nothing written at all: no JSON, no configuration, no folders.
      expect(fs.readdirSync(folder)).toEqual(['bad.yaml']);
    }
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

const SAFE_REPLICAS = [{ address: '127.0.0.1:9001' }, { address: '127.0.0.1:9002' }];

/** The errors of a balancer file given as an object (read as strict JSON). */
function errorsOf(document: Record<string, unknown>): { path: string; message: string }[] {
  const loaded = loadBalancerFile(JSON.stringify({ replicas: SAFE_REPLICAS, ...document }), 'json');
  return loaded.ok ? [] : loaded.errors;
}

describe('every string that lands in nginx.conf is checked against its directive', () => {
  // [what, the nginx: section (or replica) value, the field path, the start of the message]
  const LISTEN = 'must be a port or address:port, optionally followed by';
  const LOCATION = 'must be a URI prefix starting with / of letters, digits and - . _ ~ / only';
  const ALLOW = 'must be an IPv4 or IPv6 address or CIDR';
  const PATH_RULE = 'must be a file path without control characters, quotes, backslashes, ; { } $ # ` or surrounding spaces';
  it.each<[string, Record<string, unknown>, string, string]>([
    ['listen: a second server', { nginx: { listen: '8080; } server { listen 9090' } }, 'nginx.listen', LISTEN],
    ['listen: port 0', { nginx: { listen: '0' } }, 'nginx.listen', LISTEN],
    ['listen: port 65536', { nginx: { listen: '65536' } }, 'nginx.listen', LISTEN],
    ['listen: a host without port', { nginx: { listen: 'localhost' } }, 'nginx.listen', LISTEN],
    ['listen: a unix socket', { nginx: { listen: 'unix:/tmp/llm.sock' } }, 'nginx.listen', LISTEN],
    ['listen: ssl (needs certificates)', { nginx: { listen: '127.0.0.1:443 ssl' } }, 'nginx.listen', LISTEN],
    ['listen: a flag twice', { nginx: { listen: '8080 default_server default_server' } }, 'nginx.listen', LISTEN],
    ['listen: backlog not a number', { nginx: { listen: '[::1]:8080 backlog=lots' } }, 'nginx.listen', LISTEN],
    ['listen: two spaces', { nginx: { listen: '8080  reuseport' } }, 'nginx.listen', LISTEN],
    ['listen: a newline', { nginx: { listen: '8080\nreuseport' } }, 'nginx.listen', LISTEN],
    ['listen: IPv6 without brackets', { nginx: { listen: '::1:8080' } }, 'nginx.listen', LISTEN],
    ['location: the issue\'s block', { nginx: { location: '{ return 200 x; } location /z' } }, 'nginx.location', LOCATION],
    ['location: a block after a prefix', { nginx: { location: '/v1/ { return 200 x; } location /z' } }, 'nginx.location', LOCATION],
    ['location: no leading /', { nginx: { location: 'v1/' } }, 'nginx.location', LOCATION],
    ['location: a regex modifier', { nginx: { location: '~ ^/v1' } }, 'nginx.location', LOCATION],
    ['location: a variable', { nginx: { location: '/v1/$uri' } }, 'nginx.location', LOCATION],
    ['location: a space', { nginx: { location: '/v 1/' } }, 'nginx.location', LOCATION],
    ['location: a comment', { nginx: { location: '/v1/#x' } }, 'nginx.location', LOCATION],
    ['location: a quote', { nginx: { location: '/v1/"' } }, 'nginx.location', LOCATION],
    ['status_allow: the issue\'s "all; allow 0.0.0.0/0"', { nginx: { status_allow: ['all; allow 0.0.0.0/0'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: all', { nginx: { status_allow: ['127.0.0.1', 'all'] } }, 'nginx.status_allow[1]', ALLOW],
    ['status_allow: an octet above 255', { nginx: { status_allow: ['256.0.0.1'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: three octets', { nginx: { status_allow: ['10.0.1'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: an IPv4 prefix above 32', { nginx: { status_allow: ['10.0.0.0/33'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: host bits set', { nginx: { status_allow: ['10.0.0.1/8'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: an IPv6 prefix above 128', { nginx: { status_allow: ['::1/129'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: IPv6 host bits set', { nginx: { status_allow: ['fd00::1/8'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: an IPv6 zone', { nginx: { status_allow: ['fe80::1%eth0'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: two ::', { nginx: { status_allow: ['1::2::3'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: nine IPv6 groups', { nginx: { status_allow: ['1:2:3:4:5:6:7:8:9'] } }, 'nginx.status_allow[0]', ALLOW],
    ['status_allow: a hostname', { nginx: { status_allow: ['localhost'] } }, 'nginx.status_allow[0]', ALLOW],
    ['module_path: the issue\'s quote and newline', { nginx: { module_path: '/usr/lib/x.so";\nload_module "/tmp/evil.so' } }, 'nginx.module_path', PATH_RULE],
    ['module_path: a semicolon', { nginx: { module_path: '/usr/lib/x.so; load_module /tmp/evil.so' } }, 'nginx.module_path', PATH_RULE],
    ['module_path: a brace', { nginx: { module_path: '/usr/lib/}x.so' } }, 'nginx.module_path', PATH_RULE],
    ['module_path: a single quote', { nginx: { module_path: "/usr/lib/x'.so" } }, 'nginx.module_path', PATH_RULE],
    ['module_path: a backslash', { nginx: { module_path: '/usr/lib/x\\.so' } }, 'nginx.module_path', PATH_RULE],
    ['module_path: a leading space', { nginx: { module_path: ' /usr/lib/x.so' } }, 'nginx.module_path', PATH_RULE],
    ['js_path: a dollar', { nginx: { js_path: '/opt/$llm/dist' } }, 'nginx.js_path', PATH_RULE],
    ['js_path: a tab', { nginx: { js_path: '/opt/llm\t/dist' } }, 'nginx.js_path', PATH_RULE],
    ['config_json: a hash', { nginx: { config_json: 'llm#1.json' } }, 'nginx.config_json', PATH_RULE],
    ['config_json: a backtick', { nginx: { config_json: '`id`.json' } }, 'nginx.config_json', PATH_RULE],
    ['config_json: a line separator', { nginx: { config_json: 'a\u2028b.json' } }, 'nginx.config_json', PATH_RULE],
    ['state_zone_size: a second directive', { nginx: { state_zone_size: '4m; worker_processes 1' } }, 'nginx.state_zone_size', 'must be an nginx size'],
    ['max_body_size: a brace', { nginx: { max_body_size: '1m }' } }, 'nginx.max_body_size', 'must be an nginx size'],
    ['consumer_variable: a second directive', { nginx: { consumer_variable: 'user; deny all' } }, 'nginx.consumer_variable', 'must be an nginx variable name'],
    ['plus_api.url: a second directive', { nginx: { plus_api: { url: 'http://127.0.0.1/api; deny all', upstream: 'llm' } } }, 'nginx.plus_api.url', 'must be an http(s) URL'],
    ['plus_api.url: a space in the host', { nginx: { plus_api: { url: 'http://a b/api', upstream: 'llm' } } }, 'nginx.plus_api.url', 'must be an http(s) URL'],
    ['plus_api.url: another scheme', { nginx: { plus_api: { url: 'ftp://127.0.0.1/api', upstream: 'llm' } } }, 'nginx.plus_api.url', 'must be an http(s) URL'],
    ['plus_api.url: port 99999', { nginx: { plus_api: { url: 'http://127.0.0.1:99999/api', upstream: 'llm' } } }, 'nginx.plus_api.url', 'must be an http(s) URL'],
    ['plus_api.url: a quote in the path', { nginx: { plus_api: { url: 'http://127.0.0.1/api"9', upstream: 'llm' } } }, 'nginx.plus_api.url', 'must be an http(s) URL'],
    ['plus_api.upstream: a second directive', { nginx: { plus_api: { url: 'http://127.0.0.1/api/9', upstream: 'llm; deny all' } } }, 'nginx.plus_api.upstream', 'must be an upstream name'],
    ['plus_api.upstream: a slash', { nginx: { plus_api: { url: 'http://127.0.0.1/api/9', upstream: '../9' } } }, 'nginx.plus_api.upstream', 'must be an upstream name'],
    ['replica id: the issue\'s newline and server {} block', { replicas: [{ address: '127.0.0.1:1', id: 'a\n  server { listen 9999; location / { return 200; } }\n' }] }, 'replicas[0].id', 'must not contain control characters'],
    ['replica id: a carriage return', { replicas: [{ address: '127.0.0.1:1', id: 'a\rb' }] }, 'replicas[0].id', 'must not contain control characters'],
    ['replica address: a second directive', { replicas: [{ address: '127.0.0.1:80 max_fails=0; } server { listen 1' }] }, 'replicas[0].address', 'must be host:port'],
    ['replica address: a semicolon in the host', { replicas: [{ address: 'a;b:80' }] }, 'replicas[0].address', 'must be host:port'],
    ['replica address: a brace in the port', { replicas: [{ address: 'a:80}' }] }, 'replicas[0].address', 'must be host:port'],
  ])('%s', (_what, document, fieldPath, message) => {
    const errors = errorsOf(document);
    expect(errors.map((e) => e.path)).toEqual([fieldPath]);
    expect(errors[0].message.startsWith(message)).toBe(true);
    // The value is quoted in the message as JSON: a newline in it cannot break the error output.
    expect(errors[0].message).not.toMatch(/[\n\r]/);
  });

  it.each<[string, Record<string, unknown>]>([
    ['listen: a port given as a YAML number', { nginx: { listen: 8080 } }],
    ['listen: *:port', { nginx: { listen: '*:8080' } }],
    ['listen: a hostname', { nginx: { listen: 'localhost:8080' } }],
    ['listen: IPv6 with every allowed flag', { nginx: { listen: '[::]:8080 default_server reuseport deferred backlog=511 ipv6only=on' } }],
    ['location: unreserved characters', { nginx: { location: '/v1.0_beta~x/chat-completions/' } }],
    ['location: /', { nginx: { location: '/' } }],
    ['status_allow: addresses and networks of both families', { nginx: { status_allow: ['10.0.0.0/8', '192.168.1.7', '0.0.0.0/0', '::/0', 'fd00::/8', '2001:db8::1', '::ffff:10.0.0.1', '::ffff:10.0.0.0/104', '10.1.2.3/32'] } }],
    ['paths with spaces, parentheses and letters beyond ASCII', { nginx: { module_path: '/opt/My Modules (x86)/ngx_http_js_module.so', js_path: '/home/José/llm balancer/dist/nginx', config_json: 'état [1] & co.json' } }],
    ['plus_api: a host name, a port and a path', { nginx: { plus_api: { url: 'https://plus.internal:8443/api/9/', upstream: 'llm.pool-1' } } }],
    ['replica id: braces, quotes, a hash, non-ASCII', { replicas: [{ address: 'gpu-1.internal.:8000', id: '{weird;"id" #1 é}' }] }],
  ])('accepts %s', (_what, document) => {
    expect(errorsOf(document)).toEqual([]);
  });
});

describe('the file format', () => {
  it('reads a .json file as strict JSON: a trailing comma is a JSON error with its line and column, not YAML', () => {
    const text = '{\n  "replicas": [\n    {"address": "127.0.0.1:1"},\n  ]\n}\n';
    const asJson = loadBalancerFile(text, 'json');
    expect(asJson.ok).toBe(false);
    if (asJson.ok) return;
    expect(asJson.errors).toHaveLength(1);
    expect(asJson.errors[0].path).toBe('');
    expect(asJson.errors[0].message).toBe('is not valid JSON: line 4, column 3: a trailing comma is not allowed in JSON');
    // YAML reads the same text without complaint: that is what .json must not fall back to.
    expect(loadBalancerFile(text, 'yaml').ok).toBe(true);
  });

  it('a .json file with a byte order mark is read', () => {
    expect(loadBalancerFile('\ufeff{"replicas": [{"address": "127.0.0.1:1"}]}', 'json').ok).toBe(true);
  });

  it('an empty or whitespace-only file says it is empty, in both formats', () => {
    for (const [text, format] of [['', 'yaml'], ['\n\n', 'yaml'], ['', 'json'], ['  \n', 'json']] as const) {
      const loaded = loadBalancerFile(text, format);
      expect(loaded.ok ? null : loaded.errors[0].message).toMatch(/^is empty: /);
    }
  });

  it('a scalar file says what it holds', () => {
    const loaded = loadBalancerFile('least-connections');
    expect(loaded.ok ? null : loaded.errors[0].message).toBe('must be a mapping of balancer options, got string "least-connections"');
  });
});

type CliResult = { code: number; stdout: string; stderr: string };

/** Runs the built CLI (bin/llm-balancer.js) in a process of its own; never throws for a non-zero exit. */
async function cliProcess(args: string[], cwd = REPO_ROOT): Promise<CliResult> {
  return run(process.execPath, [CLI, 'nginx-config', ...args], { cwd }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: CliResult) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The same command in this process (its main(), ~0.3 s cheaper than a node start per run). */
async function cli(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = cliMain(['nginx-config', ...args], (text) => (stdout += text), (text) => (stderr += text), path.join(REPO_ROOT, 'dist', 'nginx'));
  return { code, stdout, stderr };
}

/** `nginx -t` on a generated full config in its own prefix folder. */
async function nginxT(prefix: string, conf: string): Promise<string> {
  const env = loadNginxEnv();
  const r = await run(env.nginxArgv[0], env.nginxArgv.slice(1).concat(['-p', prefix, '-c', conf, '-t'])).catch((e: { stderr: string }) => e);
  return r.stderr;
}

/** Every file below `folder`, relative, sorted (folders end with /). */
function listing(folder: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const entry of fs.readdirSync(path.join(folder, at), { withFileTypes: true })) {
      const name = path.join(at, entry.name);
      out.push(entry.isDirectory() ? name + '/' : name);
      if (entry.isDirectory()) walk(name);
    }
  };
  walk('');
  return out.sort();
}

describe('npx llm-balancer nginx-config', () => {
  it('on stdout: prints a config nginx -t accepts and writes the JSON beside the input, named after it', async () => {
    const env = loadNginxEnv();
    const folder = fs.mkdtempSync(path.join(dir, 'stdout-'));
    const input = path.join(folder, 'balancer.yaml');
    fs.writeFileSync(input, `strategy: weighted-round-robin\nnginx:\n  module_path: ${env.modulePath}\n` + REPLICAS);
    const r = await cliProcess([input]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('wrote ' + input + '.json');
    expect(listing(folder)).toEqual(['balancer.yaml', 'balancer.yaml.json']);
    const preloaded = JSON.parse(fs.readFileSync(input + '.json', 'utf8'));
    expect(preloaded.upstreams).toEqual(['llm_balancer_0', 'llm_balancer_1', 'llm_balancer_2']);
    expect(preloaded.plusApi).toBeNull();
    expect(preloaded.consumerVariable).toBe('remote_user');
    expect(preloaded.config.replicas.map((x: { id: string }) => x.id)).toEqual(['127.0.0.1:9001', '127.0.0.1:9002', 'gpu-c']);
    expect(r.stdout).toContain(`js_preload_object llm_balancer_config from "${input}.json";`);
    const prefix = path.join(folder, 'prefix');
    for (const sub of ['logs', 'temp']) fs.mkdirSync(path.join(prefix, sub), { recursive: true });
    fs.writeFileSync(path.join(prefix, 'llm.conf'), r.stdout);
    expect(await nginxT(prefix, 'llm.conf')).toContain('test is successful');
  });

  it('-o on a fresh folder: the config, its JSON, logs/ and temp/ — and `nginx -p <folder> -c nginx.conf -t` passes as is', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'fresh-'));
    const input = path.join(folder, 'balancer.yaml');
    fs.writeFileSync(input, 'strategy: least-connections' + REPLICAS);
    const r = await cli([input, '-o', path.join(folder, 'run', 'nginx.conf'), '--module-path', loadNginxEnv().modulePath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(listing(folder)).toEqual(['balancer.yaml', 'run/', 'run/logs/', 'run/nginx.conf', 'run/nginx.conf.json', 'run/temp/']);
    const conf = fs.readFileSync(path.join(folder, 'run', 'nginx.conf'), 'utf8');
    expect(conf).toContain('\nerror_log logs/error.log notice;\n');
    expect(conf).toContain(`js_preload_object llm_balancer_config from "${path.join(folder, 'run', 'nginx.conf.json')}";`);
    expect(r.stderr).toContain(`test it with: nginx -p ${path.join(folder, 'run')} -c nginx.conf -t`);
    expect(await nginxT(path.join(folder, 'run'), 'nginx.conf')).toContain('test is successful');
    // The snippet goes into someone else's http {}: no folders of its own.
    const snippet = await cli([input, '--snippet', '-o', path.join(folder, 'conf.d', 'llm.conf')]);
    expect(snippet.code).toBe(0);
    expect(listing(path.join(folder, 'conf.d'))).toEqual(['llm.conf', 'llm.conf.json']);
  });

  it('-o replaces the files by rename (a reader keeps the whole old file), and an invalid input leaves both untouched', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const input = path.join(folder, 'balancer.yaml');
    const output = path.join(folder, 'nginx.conf');
    fs.writeFileSync(input, 'strategy: least-connections' + REPLICAS);
    expect((await cli([input, '-o', output])).code).toBe(0);
    const before = { conf: fs.readFileSync(output, 'utf8'), json: fs.readFileSync(output + '.json', 'utf8'), inode: fs.statSync(output).ino, jsonInode: fs.statSync(output + '.json').ino };
    const reader = fs.openSync(output, 'r');
    fs.writeFileSync(input, 'strategy: round-robin' + REPLICAS);
    expect((await cli([input, '-o', output])).code).toBe(0);
    // A new file took the name; the open one still reads the old text from start to end.
    expect(fs.statSync(output).ino).not.toBe(before.inode);
    expect(fs.statSync(output + '.json').ino).not.toBe(before.jsonInode);
    expect(fs.readFileSync(reader, 'utf8')).toBe(before.conf);
    fs.closeSync(reader);
    const second = { conf: fs.readFileSync(output, 'utf8'), json: fs.readFileSync(output + '.json', 'utf8') };
    expect(second.conf).toContain('# Strategy: round-robin;');
    // Broken input: exit 2, both files byte for byte as they were, no temporary left behind.
    fs.writeFileSync(input, 'strategy: round-robin\nnginx:\n  location: "/v1/ { return 200; }"' + REPLICAS);
    const broken = await cli([input, '-o', output]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain('nginx.location: must be a URI prefix');
    expect(fs.readFileSync(output, 'utf8')).toBe(second.conf);
    expect(fs.readFileSync(output + '.json', 'utf8')).toBe(second.json);
    expect(listing(folder)).toEqual(['balancer.yaml', 'logs/', 'nginx.conf', 'nginx.conf.json', 'temp/']);
  });

  it('two balancer files in one folder keep their own replicas (the issue: a.conf served b\'s)', async () => {
    const folder = createPrefix('generator-ab');
    try {
      const port = await freePort();
      const a = path.join(folder.dir, 'a.yaml');
      const b = path.join(folder.dir, 'b.yaml');
      const nginxPart = `nginx:\n  listen: 127.0.0.1:${port}\n  worker_processes: 1\n  module_path: ${loadNginxEnv().modulePath}\n`;
      fs.writeFileSync(a, nginxPart + 'replicas:\n  - address: 127.0.0.1:9001\n    id: a-one\n  - address: 127.0.0.1:9002\n    id: a-two\n');
      fs.writeFileSync(b, nginxPart + 'replicas:\n  - address: 127.0.0.1:9101\n    id: b-one\n');
      // As the issue did it: on stdout, a first, then b.
      const confA = await cli([a]);
      const confB = await cli([b]);
      expect([confA.code, confB.code]).toEqual([0, 0]);
      expect(fs.readdirSync(folder.dir).filter((f) => f.endsWith('.json')).sort()).toEqual(['a.yaml.json', 'b.yaml.json']);
      // And with -o into the same folder.
      expect((await cli([a, '-o', path.join(folder.dir, 'a.conf')])).code).toBe(0);
      expect((await cli([b, '-o', path.join(folder.dir, 'b.conf')])).code).toBe(0);
      for (const conf of [confA.stdout, fs.readFileSync(path.join(folder.dir, 'a.conf'), 'utf8')]) {
        const nginx = await startNginx({ conf, port, prefix: folder });
        try {
          const status = (await (await fetch(nginx.url('/llm-balancer/status'))).json()) as { replicas: { id: string }[] };
          expect(status.replicas.map((r) => r.id)).toEqual(['a-one', 'a-two']);
        } finally {
          await nginx.stop();
        }
      }
      expect(JSON.parse(fs.readFileSync(path.join(folder.dir, 'b.conf.json'), 'utf8')).config.replicas.map((r: { id: string }) => r.id)).toEqual(['b-one']);
    } finally {
      folder.remove();
    }
  });

  it('refuses paths it would derive or overwrite badly, before writing anything', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'paths-'));
    const input = path.join(folder, 'balancer.json');
    fs.writeFileSync(input, JSON.stringify({ replicas: [{ address: '127.0.0.1:9001' }] }));
    const cases: [string[], string][] = [
      [['-o', input], '-o: must not be the input file'],
      // The JSON of -o X is X.json: here the input itself.
      [['-o', input.slice(0, -'.json'.length)], 'nginx.config_json: must not be the input file'],
      [['--module-path', '/opt/x;y/ngx_http_js_module.so'], '--module-path: must be a file path without control characters'],
      [['-o', path.join(folder, 'out\nserver {', 'nginx.conf')], 'nginx.config_json: must be a file path without control characters'],
    ];
    for (const [args, message] of cases) {
      const r = await cli([input, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stdout).toBe('');
      expect(listing(folder)).toEqual(['balancer.json']);
    }
    // A trailing comma in a .json input is a JSON error (YAML would have taken it).
    fs.writeFileSync(input, '{"replicas": [{"address": "127.0.0.1:9001"},]}');
    const trailing = await cli([input]);
    expect(trailing.code).toBe(2);
    expect(trailing.stderr).toContain('config: is not valid JSON: line 1, column 45: a trailing comma is not allowed in JSON');
  });

  it('a strange input file name reaches only a comment, with its control characters replaced', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'name-'));
    const input = path.join(folder, 'a\nserver { listen 1; }.yaml');
    fs.writeFileSync(input, 'strategy: round-robin' + REPLICAS);
    const r = await cli([input, '-o', path.join(folder, 'run', 'nginx.conf'), '--module-path', loadNginxEnv().modulePath]);
    expect(r.code).toBe(0);
    const conf = fs.readFileSync(path.join(folder, 'run', 'nginx.conf'), 'utf8');
    expect(conf.split('\n')[0]).toBe(`# Generated by \`llm-balancer nginx-config ${folder}/a?server { listen 1; }.yaml\`: edit that file and regenerate.`);
    expect(await nginxT(path.join(folder, 'run'), 'nginx.conf')).toContain('test is successful');
  });

  it('--module-path is resolved against the current folder; usage errors print the usage', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'module-'));
    fs.writeFileSync(path.join(folder, 'b.yaml'), 'strategy: round-robin' + REPLICAS);
    const r = await cliProcess(['b.yaml', '-o', 'run/nginx.conf', '--module-path', 'mods/ngx_http_js_module.so'], folder);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(path.join(folder, 'run', 'nginx.conf'), 'utf8')).toContain(`load_module "${path.join(folder, 'mods', 'ngx_http_js_module.so')}";`);
    for (const args of [['b.yaml', '-o'], ['b.yaml', '--output='], ['b.yaml', '--sniped'], []]) {
      const usage = await cli(args);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('usage: llm-balancer nginx-config');
    }
  });
});

describe('js_engine qjs', () => {
  const renderQjs = (extra: string) => {
    const loaded = loadBalancerFile('nginx:\n  js_engine: qjs\n' + extra + REPLICAS);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    const conf = renderNginxConfig({ config: loaded.config, nginx: { ...loaded.nginx, js_path: '/js', config_json: '/etc/llm/balancer.config.js' }, source: 'spec' }, 'full');
    return { loaded, conf };
  };

  it('imports the config as a module before the bundle, instead of js_preload_object (njs-engine only)', () => {
    const { conf } = renderQjs('  js_context_reuse: 64\n');
    expect(conf).toContain('  js_engine qjs;\n  js_context_reuse 64;\n  js_import llm_balancer_preload from "/etc/llm/balancer.config.js";\n  js_import llm_balancer from llm_balancer.js;\n');
    expect(conf).not.toContain('js_preload_object');
    // nginx's own reuse default when unset.
    expect(renderQjs('').conf).not.toContain('js_context_reuse');
  });

  it("the config module sets the same global the njs engine's js_preload_object would, with the same object", () => {
    const { loaded } = renderQjs('');
    if (!loaded.ok) throw new Error('invalid');
    const preloaded = preloadedConfig(loaded.config, loaded.nginx);
    const source = configModule(preloaded);
    expect(source.endsWith('export default {};\n')).toBe(true);
    const target: Record<string, unknown> = {};
    new Function('globalThis', source.replace('export default {};\n', ''))(target);
    expect(target.llm_balancer_config).toEqual(JSON.parse(JSON.stringify(preloaded)));
    // A line separator in a string stays inside the literal.
    expect(configModule({ ...preloaded, consumerVariable: 'a\u2028b' } as typeof preloaded)).toContain('a\\u2028b');
  });

  it('the CLI writes FILE.config.js (a module) instead of FILE.json', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'qjs-'));
    const input = path.join(folder, 'balancer.yaml');
    fs.writeFileSync(input, 'nginx:\n  js_engine: qjs\n' + REPLICAS);
    const r = await cliProcess([input]);
    expect(r.code).toBe(0);
    expect(listing(folder)).toEqual(['balancer.yaml', 'balancer.yaml.config.js']);
    expect(fs.readFileSync(input + '.config.js', 'utf8')).toContain('globalThis.llm_balancer_config = {');
    expect(r.stdout).toContain(`js_import llm_balancer_preload from "${input}.config.js";`);
  });
});

describe('the README', () => {
  it('carries the current table of the nginx: section (run `npm run docs` when this fails)', () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const marker = '<!-- nginx-options:start -->\n';
    const start = text.indexOf(marker);
    const end = text.indexOf('<!-- nginx-options:end -->');
    expect(start).toBeGreaterThan(text.indexOf('## NGINX: install and configure'));
    expect(text.slice(start + marker.length, end)).toBe(configTable(nginxSectionSchema).trimEnd() + '\n');
    // Every option of the section has its row.
    for (const entry of nginxOptionsSchema) expect(text.slice(start, end)).toContain('| `nginx.' + Object.keys(entry)[0] + '` |');
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
