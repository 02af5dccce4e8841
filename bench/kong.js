// `npm run bench:kong`: what our Kong plugin costs inside the REAL kong-js-pluginserver. Kong itself
// cannot run here, so this plays Kong's side of the plugin-server protocol with the harness of the
// integration specs (testbed/lib/kong-harness.ts) and measures access+log event pairs: every PDK
// call is a real MessagePack-RPC round trip over the unix socket, as under Kong. No HTTP is
// proxied: the log phase's kong.log.serialize() answers a canned Kong 3.x entry (status 200).
//
// Variants, in the same run, CONCURRENCY connections each sending one call at a time (as Kong's
// pooled connections do), one plugin server per plugin (as Kong 3.9+ runs them):
//   fixed-target (reference)   bench/kong-reference/fixed-target: set_target + one ctx.shared.get,
//                              the plugin server and its RPC with none of our code
//   llm-balancer <strategy>    dist/kong/llm-balancer.js with four static replicas
//   ..., kong.redis            the same with in-flight counts shared through a real local
//                              redis-server (build/fetch-redis.js); its own CPU is not counted
// Prints pairs/s, the ratio to the reference, p50/p99 per pair and the plugin server's CPU per pair,
// and writes bench/results/kong.json. A benchmark, not a test: nothing here asserts a speed.
// Kong's own Lua side (its PDK calls, its msgpack) is not in these numbers; the harness stands in.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, KONG_OUTFILE, buildNodeModule } from '../build/build.js';

const RESULTS = path.join(REPO_ROOT, 'bench', 'results', 'kong.json');
const WORK = path.join(REPO_ROOT, '.cache', 'bench');
const REFERENCE_DIR = path.join(REPO_ROOT, 'bench', 'kong-reference', 'fixed-target');
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const WARMUP_S = 1;
// Kong keeps a pool of connections to a plugin server; 8 keeps both cores busy on this machine.
const CONCURRENCY = 8;
// Distinct consumers and client addresses: consistent-hash spreads them over the replicas.
const DISTINCT_CLIENTS = 64;
// Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux x86-64).
const CLOCK_TICKS_PER_S = 100;

const KONG_PDK_VERSION = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'node_modules', 'kong-pdk', 'package.json'), 'utf8')).version;

const REPLICAS = [{ address: '127.0.0.1:8001' }, { address: '127.0.0.1:8002' }, { address: '127.0.0.1:8003' }, { address: '127.0.0.1:8004' }];

// serviceRetries: the Service's `retries` in Kong's log entry. With Kong's default 5 the plugin
// calls set_retries(0) on every request; with 0 (as kong.yml configures it) that call is skipped.
// serviceTimeouts: the Service's connect/write/read timeouts (ms) in the entry. kong.yml's
// (3000/300000/300000) equal what the plugin sets for a request not known to stream, so
// set_timeouts is skipped; with Kong's defaults (60 s each) it is called on every request.
// kong.stream_timeouts reads every body to know "stream" (the chat body streams: read timeout
// 60 s, unlike the Service's, so set_timeouts is called too).
const KONG_YML_TIMEOUTS = { connect: 3000, write: 300000, read: 300000 };
const KONG_DEFAULT_TIMEOUTS = { connect: 60000, write: 60000, read: 60000 };
const VARIANTS = [
  { name: 'fixed-target (reference)', plugin: 'fixed-target', config: {}, serviceRetries: 0 },
  { name: 'llm-balancer least-connections, Service retries 5', plugin: 'llm-balancer', config: { strategy: 'least-connections', replicas: REPLICAS }, serviceRetries: 5 },
  { name: "llm-balancer least-connections, Service timeouts Kong's 60 s", plugin: 'llm-balancer', config: { strategy: 'least-connections', replicas: REPLICAS }, serviceRetries: 0, serviceTimeouts: KONG_DEFAULT_TIMEOUTS },
  { name: 'llm-balancer least-connections, kong.stream_timeouts', plugin: 'llm-balancer', config: { strategy: 'least-connections', replicas: REPLICAS, kong: { stream_timeouts: true } }, serviceRetries: 0 },
  { name: 'llm-balancer least-connections', plugin: 'llm-balancer', config: { strategy: 'least-connections', replicas: REPLICAS }, serviceRetries: 0 },
  // In-flight counts shared through a real local redis-server (kong.redis): one Lua read per access
  // phase, pipelined writes nobody waits for. Its url is filled in once the server is up.
  { name: 'llm-balancer least-connections, kong.redis', plugin: 'llm-balancer', config: { strategy: 'least-connections', replicas: REPLICAS }, serviceRetries: 0, redis: true },
  // The prefix table too (prefix-affinity on a ~1.5 kB system prompt, 6 blocks): without Redis, and
  // with it (the request's slots read in the same one Lua call; the entries written after the answer).
  { name: 'llm-balancer prefix-affinity, 1.5 kB prompt', plugin: 'llm-balancer', config: { strategy: 'prefix-affinity', replicas: REPLICAS }, serviceRetries: 0, body: 'prefix' },
  { name: 'llm-balancer prefix-affinity, 1.5 kB prompt, kong.redis', plugin: 'llm-balancer', config: { strategy: 'prefix-affinity', replicas: REPLICAS }, serviceRetries: 0, body: 'prefix', redis: true },
  { name: 'llm-balancer consistent-hash (consumer)', plugin: 'llm-balancer', config: { strategy: 'consistent-hash', hash_key: { source: 'consumer' }, replicas: REPLICAS }, serviceRetries: 0 },
  { name: 'llm-balancer round-robin', plugin: 'llm-balancer', config: { strategy: 'round-robin', replicas: REPLICAS }, serviceRetries: 0 },
];

/** The harness is TypeScript: bundle it for Node once per run. */
async function loadHarness() {
  const outfile = path.join(WORK, 'kong-harness.mjs');
  await buildNodeModule(path.join(REPO_ROOT, 'testbed', 'lib', 'kong-harness.ts'), outfile);
  return import(pathToFileURL(outfile).href + '?t=' + Date.now());
}

/** testbed/lib/redis-process.ts, bundled like the harness (the redis-server of build/fetch-redis.js). */
async function loadRedisProcess() {
  const outfile = path.join(WORK, 'redis-process.mjs');
  await buildNodeModule(path.join(REPO_ROOT, 'testbed', 'lib', 'redis-process.ts'), outfile);
  return import(pathToFileURL(outfile).href + '?t=' + Date.now());
}

const CHAT_BODY = JSON.stringify({
  model: 'llama-3-8b-instruct',
  stream: true,
  max_tokens: 256,
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Summarise the plot of Hamlet in three sentences.' },
  ],
});

function fakeRequests() {
  const requests = [];
  for (let i = 0; i < DISTINCT_CLIENTS; i++) {
    requests.push({
      method: 'POST',
      path: '/v1/chat/completions',
      headers: {
        Host: 'llm.example.com',
        'Content-Type': 'application/json',
        'User-Agent': 'bench-kong/1.0',
        Authorization: 'Bearer sk-bench',
        'X-Session-Id': `session-${i}`,
      },
      body: CHAT_BODY,
      clientIp: `10.0.0.${i + 1}`,
      consumer: { id: `0000000${i % 10}-0000-4000-8000-0000000000${String(i).padStart(2, '0')}`, username: `consumer-${i}` },
    });
  }
  return requests;
}

/** A system prompt of ~1.5 kB (6 prefix blocks of 256 characters), one of 8, and a user turn per client. */
function withPrefixPrompts(requests) {
  return requests.map((request, i) =>
    Object.assign({}, request, {
      body: JSON.stringify({
        model: 'llama-3-8b-instruct',
        stream: true,
        max_tokens: 256,
        messages: [
          { role: 'system', content: `[agent ${i % 8}] You are a careful assistant; follow the policy. `.repeat(24) },
          { role: 'user', content: `Question ${i}: summarise the plot of Hamlet in three sentences.` },
        ],
      }),
    }),
  );
}

/** What kong.log.serialize() answers in every log phase: a Kong 3.x entry for a 200 (its try is set per request in pair()). */
function cannedSerialize(request, serviceRetries, serviceTimeouts = KONG_YML_TIMEOUTS) {
  const headers = {};
  for (const name of Object.keys(request.headers)) headers[name.toLowerCase()] = request.headers[name];
  return JSON.stringify({
    request: { method: 'POST', uri: request.path, url: `http://llm.example.com:8000${request.path}`, querystring: {}, headers, size: 612 },
    response: { status: 200, headers: { 'content-type': 'text/event-stream', 'x-kong-upstream-latency': '5', 'x-kong-proxy-latency': '1' }, size: 4096 },
    upstream_uri: request.path,
    upstream_status: '200',
    latencies: { proxy: 5, receive: 20, request: 26, kong: 1 },
    tries: [{ ip: '127.0.0.1', port: 8001, balancer_latency: 0, balancer_start: Date.now() }],
    client_ip: request.clientIp,
    started_at: Date.now(),
    consumer: request.consumer,
    service: { id: '5ca1ab1e-0000-4000-8000-000000000001', name: 'llm-service', host: 'llm-service.invalid', port: 80, protocol: 'http', retries: serviceRetries, connect_timeout: serviceTimeouts.connect, write_timeout: serviceTimeouts.write, read_timeout: serviceTimeouts.read },
    route: { id: '5ca1ab1e-0000-4000-8000-000000000002', name: 'llm-route', paths: ['/v1'], protocols: ['http', 'https'] },
    workspace: '5ca1ab1e-0000-4000-8000-000000000003',
    workspace_name: 'default',
  });
}

const TRY_PLACEHOLDER = '"ip":"127.0.0.1","port":8001';

/** One access+log pair through the plugin server. */
async function pair(harness, kong, instanceId, request, serialized) {
  const state = harness.createFakeRequestState(request);
  const handlers = harness.fakePdkHandlers(state);
  const access = await kong.runPhase(instanceId, 'access', handlers);
  state.phase = 'log';
  state.response = { status: 200, headers: { 'content-type': 'text/event-stream' }, source: 'service' };
  // Kong's try names the target the plugin set, as in a real log entry.
  const target = state.target;
  state.serialized = target ? serialized.replace(TRY_PLACEHOLDER, `"ip":"${target.host}","port":${target.port}`) : serialized;
  const log = await kong.runPhase(instanceId, 'log', handlers);
  return { state, access, log };
}

function problemOf(result) {
  const unexpected = result.access.unexpected.concat(result.log.unexpected);
  if (unexpected.length) return `PDK calls the benchmark does not answer: ${unexpected.join(', ')}`;
  if (result.access.exited) return `access answered ${result.access.exited.status} ${JSON.stringify(result.access.exited.body ?? '')}`;
  if (!result.state.target) return 'access set no target (the plugin threw, or returned without picking)';
  const errors = result.state.logs.filter((l) => l.level === 'err' || l.level === 'crit');
  if (errors.length) return `the plugin logged errors: ${errors.map((l) => l.message).join(' | ')}`;
  return null;
}

function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const after = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
  return (Number(after[11]) + Number(after[12])) / CLOCK_TICKS_PER_S; // utime, stime (fields 14 and 15 of stat)
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runVariant(harness, server, connections, variant, requests) {
  const serialized = requests.map((request) => cannedSerialize(request, variant.serviceRetries, variant.serviceTimeouts));
  const first = connections[0];
  let instanceId;
  try {
    instanceId = await first.startInstance(variant.plugin, variant.config, 'bench-' + variant.name);
  } catch (error) {
    throw new Error(`${variant.name}: plugin.StartInstance failed: ${error.message}\nplugin server output:\n${server.stdout()}${server.stderr()}`);
  }
  // One pair first: a plugin that rejects the config or fails would otherwise be measured as fast.
  const check = await pair(harness, first, instanceId, requests[0], serialized[0]);
  const problem = problemOf(check);
  if (problem) {
    const logs = check.state.logs.map((l) => `  [${l.phase} ${l.level}] ${l.message}`).join('\n');
    throw new Error(`${variant.name} with config ${JSON.stringify(variant.config)}: ${problem}\nkong.log messages:\n${logs || '  (none)'}`);
  }

  const started = performance.now();
  const measureFrom = started + WARMUP_S * 1000;
  const measureUntil = measureFrom + DURATION_S * 1000;
  const samples = [];
  let pdkCalls = 0;
  let failures = 0;
  let firstFailure = null;
  let cpuBefore = null;
  const timer = setTimeout(() => (cpuBefore = cpuSeconds(server.pid)), WARMUP_S * 1000);
  await Promise.all(
    connections.map(async (kong, c) => {
      for (let i = c; performance.now() < measureUntil; i += CONCURRENCY) {
        const k = i % requests.length;
        const t0 = performance.now();
        const result = await pair(harness, kong, instanceId, requests[k], serialized[k]);
        const t1 = performance.now();
        if (t0 < measureFrom) continue;
        samples.push(t1 - t0);
        pdkCalls += result.access.calls.length + result.log.calls.length;
        const failed = problemOf(result);
        if (failed) {
          failures += 1;
          firstFailure ??= failed;
        }
      }
    }),
  );
  clearTimeout(timer);
  const cpu = cpuSeconds(server.pid) - (cpuBefore ?? cpuSeconds(server.pid));
  await first.closeInstance(instanceId);
  const methods = (run) => run.calls.map((call) => call.method);
  const sorted = Float64Array.from(samples).sort();
  return {
    variant: variant.name,
    pairsPerSecond: samples.length / DURATION_S,
    pairs: samples.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    serverCpuUsPerPair: (cpu * 1e6) / samples.length,
    // HandleEvent twice, then one Step per PDK call.
    rpcRoundTripsPerPair: 2 + pdkCalls / samples.length,
    failures,
    firstFailure,
    // What one pair asked of "Kong" (the first, checked pair).
    pdkCalls: { access: methods(check.access), log: methods(check.log) },
  };
}

function printTable(results) {
  const baseline = results[0].pairsPerSecond;
  const header = ['variant', 'pairs/s', 'vs fixed-target', 'p50 ms/pair', 'p99 ms/pair', 'server CPU µs/pair', 'RPCs/pair', 'failed'];
  const rows = results.map((r) => [
    r.variant,
    r.pairsPerSecond.toFixed(0),
    (r.pairsPerSecond / baseline).toFixed(2),
    r.p50Ms.toFixed(3),
    r.p99Ms.toFixed(3),
    r.serverCpuUsPerPair.toFixed(1),
    r.rpcRoundTripsPerPair.toFixed(1),
    String(r.failures),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells) => '| ' + cells.map((cell, c) => cell.padEnd(widths[c])).join(' | ') + ' |';
  console.log(`Kong plugin server: kong-js-pluginserver (kong-pdk ${KONG_PDK_VERSION}) on Node ${process.version}, ${CONCURRENCY} RPC connections, ${WARMUP_S} s warm-up + ${DURATION_S} s per variant, access+log pairs, canned serialize()\n`);
  console.log([line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)].join('\n'));
  for (const r of results) if (r.firstFailure) console.log(`\n${r.variant}: ${r.failures} failed pairs, first: ${r.firstFailure}`);
}

async function main() {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${path.relative(REPO_ROOT, KONG_OUTFILE)} is missing: run \`node build/build.js\``);
  fs.mkdirSync(WORK, { recursive: true });
  const harness = await loadHarness();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-bench-kong-'));
  const servers = [];
  const connections = [];
  let redis = null;
  // One stop for both the signal handler and the normal end: whichever comes first, the other waits for it.
  let stopping = null;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const kong of connections) kong.rpc.close();
      await Promise.all(servers.map((s) => s.stop()));
      if (redis !== null) await redis.stop();
      fs.rmSync(root, { recursive: true, force: true });
    })();
    return stopping;
  };
  // Ctrl-C during a run: stop the plugin servers, then leave.
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // Our bundle alone in a directory, as a deployment has it (the server loads every file there).
    const ours = path.join(root, 'llm-balancer');
    fs.mkdirSync(ours);
    fs.copyFileSync(KONG_OUTFILE, path.join(ours, path.basename(KONG_OUTFILE)));
    const dirs = { 'fixed-target': REFERENCE_DIR, 'llm-balancer': ours };
    const byPlugin = {};
    for (const plugin of Object.keys(dirs)) {
      const server = await harness.startPluginServer(dirs[plugin]);
      servers.push(server);
      const sides = [];
      for (let c = 0; c < CONCURRENCY; c++) {
        const kong = new harness.KongSide(await harness.KongRpc.connect(server.socketPath));
        sides.push(kong);
        connections.push(kong);
      }
      try {
        await sides[0].getPluginInfo(plugin);
      } catch (error) {
        throw new Error(`the plugin server did not load ${plugin}: ${error.message}\nplugin server output:\n${server.stdout()}${server.stderr()}`);
      }
      byPlugin[plugin] = { server, sides };
    }
    const requests = fakeRequests();
    const prefixRequests = withPrefixPrompts(requests);
    // BENCH_VARIANTS=least,round runs only the variants whose names contain one of the words (the reference always runs).
    const only = process.env.BENCH_VARIANTS ? process.env.BENCH_VARIANTS.split(',') : null;
    const results = [];
    const selected = VARIANTS.filter((v, i) => i === 0 || !only || only.some((word) => v.name.includes(word)));
    if (selected.some((v) => v.redis)) {
      const { ensureRedis } = await import('../build/fetch-redis.js');
      await ensureRedis({ quiet: true });
      redis = await (await loadRedisProcess()).startRedis();
    }
    for (const variant of selected) {
      const { server, sides } = byPlugin[variant.plugin];
      const config = variant.redis ? Object.assign({}, variant.config, { kong: { redis: { url: redis.url } } }) : variant.config;
      results.push(await runVariant(harness, server, sides, Object.assign({}, variant, { config }), variant.body === 'prefix' ? prefixRequests : requests));
    }
    printTable(results);
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(
      RESULTS,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, node: process.version, kongPdk: KONG_PDK_VERSION },
          settings: { durationS: DURATION_S, warmupS: WARMUP_S, concurrency: CONCURRENCY, distinctClients: DISTINCT_CLIENTS, replicas: REPLICAS.length },
          results,
        },
        null,
        2,
      ) + '\n',
    );
    console.log(`\nwrote ${path.relative(REPO_ROOT, RESULTS)}`);
  } catch (error) {
    // Connections closed by the signal handler fail the run: that is not the error to report.
    if (interrupted) await new Promise(() => undefined);
    throw error;
  } finally {
    if (!interrupted) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await stopAll();
    }
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
