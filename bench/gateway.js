// `npm run bench:gateway`: what the njs picker costs inside real nginx, on every nginx target in
// the same run: trixie/njs (Debian stable's nginx 1.26 + njs 0.8.9), forky/njs and forky/qjs
// (Debian testing's nginx 1.30 + njs 1.0 on its njs engine and on QuickJS; only when provisioned:
// `node build/fetch-nginx.js --generation forky`). Each target's nginx proxies tiny responses from
// the same four keepalive upstreams, driven by the same wrk, once per variant:
//   native least_conn           nginx's own balancer on that nginx (the req/s baseline)
//   native hash consistent      nginx's own ketama on the session header
//   njs least-connections       llm-balancer, config from the generator (route reads the body: "stream" picks the read bound)
//   njs least-connections js_set path  the same with equal read bounds: the pick in js_set, no body read
//   njs round-robin             llm-balancer, the cheapest strategy
//   njs consistent-hash         llm-balancer, bounded-load rendezvous on the session header
//   njs least-tokens            llm-balancer, token load from the body (GET: the default request size)
//   njs prefix-affinity         llm-balancer, the prefix table (GET: no prompt, so no prefix to match)
// and two reference points that are not products (bench/njs-reference/, plain js_import modules:
// under QuickJS they only need `js_engine qjs`):
//   njs floor                   a js_set returning a constant + an empty log-phase js_set: njs itself
//   njs minimal hand-written LC the least bookkeeping any njs least-connections picker needs (the CPU baseline)
// The native rows do not involve the engine: they run once per nginx and appear in each of its
// targets' tables. Prints per target requests/s, p50 and p99, nginx worker CPU per request, the
// req/s ratio to native least_conn on the same nginx and the CPU ratio to the hand-written
// reference on the same nginx and engine, and writes bench/results/gateway.json (one entry per
// target). Rounds interleave: every variant runs on every target before the next one, and each
// round starts one variant later, so drift hits all rows alike. The pure parts:
// bench/gateway/variants.ts (targets, variants, run order) and report.ts (medians, ratios, tables).
// A benchmark, not a test: nothing here asserts a speed.
// Environment: BENCH_DURATION_S (default 8), BENCH_VARIANTS=least,round (only those rows, plus the
// two baselines), BENCH_TARGETS=forky/qjs,trixie/njs (only those targets; default LLMB_NGINX_TARGET
// when set, else all three), BENCH_ROUNDS=N (interleaved rounds, report medians), BENCH_NJS_PATHS=a=DIR,b=DIR
// (A/B of njs bundles, below), BENCH_POST=1 (POST a ~0.5 KB chat body, BENCH_POST_KB=N: ~N KB, half of them streaming,
// instead of a bodyless GET /v1/chat/completions). Not GET /v1/models: the gateway answers that
// itself once the replicas list models (and built its status rows for it until 2026-12-03).

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { register } from 'tsx/esm/api';
import { REPO_ROOT, build } from '../build/build.js';
import { ensureNginx, generationConfig, oneLine } from '../build/fetch-nginx.js';
import { nativeNginxConf } from '../testbed/lib/native-nginx.js';

// The generator, the config module and the report's pure parts are TypeScript: tsx loads them as they are.
register();
const { configModule, preloadedConfig, renderNginxConfig } = await import('../plugins/nginx/generator/generate.ts');
const { loadBalancerFile } = await import('../plugins/nginx/generator/load.ts');
const report = await import('./gateway/report.ts');
const plan = await import('./gateway/variants.ts');

const run = promisify(execFile);
const WORK = path.join(REPO_ROOT, '.cache', 'bench');
// A/B runs (BENCH_NJS_PATHS) are experiments: they go to .cache, never over the published results.
const RESULTS = process.env.BENCH_NJS_PATHS ? path.join(WORK, 'gateway-ab.json') : path.join(REPO_ROOT, 'bench', 'results', 'gateway.json');
const REPLICAS = 4;
// wrk settings: one thread (2 cores are shared by wrk, nginx and the backends), 32 connections.
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 8);
const CONNECTIONS = 32;
const GATEWAY_WORKERS = 2;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = server.address().port;
      server.close(() => resolve(port));
    });
  });
}

function tempPaths(dir) {
  for (const d of ['temp', 'logs']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  return [
    'client_body_temp_path temp/client_body;',
    'proxy_temp_path temp/proxy;',
    'fastcgi_temp_path temp/fastcgi;',
    'uwsgi_temp_path temp/uwsgi;',
    'scgi_temp_path temp/scgi;',
  ].join('\n  ');
}

async function waitForPort(port, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/** Starts nginx in the foreground on `conf`; returns a stop function, its pid and what it wrote to stderr. */
async function startNginx(env, dir, conf, port) {
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, conf);
  const child = spawn(env.nginxArgv[0], env.nginxArgv.slice(1).concat(['-e', 'stderr', '-p', dir, '-c', confPath, '-g', 'daemon off;']), {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    await waitForPort(port, 5000);
  } catch {
    child.kill('SIGKILL');
    throw new Error(`nginx did not start: ${stderr}`);
  }
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  return { stop, pid: child.pid, stderr: () => stderr };
}

/** The worker processes of an nginx master (its children). */
function workerPids(masterPid) {
  const out = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === masterPid) out.push(Number(entry));
    } catch {
      // gone while we looked
    }
  }
  return out;
}

// Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux x86-64).
const CLOCK_TICKS_PER_S = 100;

/**
 * CPU seconds (user + system) the processes have used so far. Throughput on a shared 2-core
 * machine swings by ±20% run to run; CPU per request of the nginx workers is far steadier.
 */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const after = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
    ticks += Number(after[11]) + Number(after[12]); // utime, stime (fields 14 and 15 of stat)
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** Four tiny OpenAI-ish backends served by one single-worker nginx: cheap and steady. */
function backendsConf(dir, ports) {
  const servers = ports
    .map((port) => `  server { listen 127.0.0.1:${port}; keepalive_requests 1000000; location / { default_type application/json; return 200 '{"id":"x","object":"chat.completion","choices":[]}'; } }`)
    .join('\n');
  return `worker_processes 1;\npid nginx.pid;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  ${tempPaths(dir)}\n${servers}\n}\n`;
}

function nativeConf(dir, port, ports, balancing) {
  tempPaths(dir); // creates temp/ and logs/ in the prefix
  return nativeNginxConf({ port, servers: ports.map((p) => `127.0.0.1:${p}`), balancing, workers: GATEWAY_WORKERS, keepalive: 32 });
}

/**
 * The same four keepalive upstreams as one block each, picked by a bench/njs-reference module.
 * The modules hold nothing request-scoped at module level and read no preloaded object, so under
 * QuickJS (reused contexts) they run as they are: only the engine is named.
 */
function referenceConf(env, engine, dir, port, ports, moduleFile) {
  const upstreams = ports.map((p, i) => `  upstream reference_${i} {\n    server 127.0.0.1:${p} max_fails=0;\n    keepalive 32;\n  }`).join('\n');
  return `worker_processes ${GATEWAY_WORKERS};\npid nginx.pid;\nload_module ${env.modulePath};\nevents { worker_connections 4096; }\nhttp {
  ${tempPaths(dir)}
  js_path ${path.join(REPO_ROOT, 'bench', 'njs-reference')};${engine === 'qjs' ? '\n  js_engine qjs;' : ''}
  js_import reference from ${moduleFile};
  js_shared_dict_zone zone=reference:1m type=number;
  js_set $reference_upstream reference.pick;
  js_set $reference_outcome reference.outcome;
  js_var $reference_picked;
  log_format reference '$reference_outcome';
  access_log /dev/null reference;
${upstreams}
  server {
    listen 127.0.0.1:${port};
    location /v1/ {
      proxy_pass http://$reference_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}\n`;
}

/**
 * llm-balancer's config for `variant` as the generator renders it for `engine`: under the njs
 * engine a JSON file for js_preload_object, under QuickJS the config module (configModule) that
 * testbed/lib/nginx-balancer.ts and the CLI write too.
 */
function njsConf(env, engine, dir, port, ports, variant) {
  const yaml = plan.balancerFile(variant.balancer, ports.map((p) => `127.0.0.1:${p}`), `127.0.0.1:${port}`, GATEWAY_WORKERS, engine);
  const loaded = loadBalancerFile(yaml);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const preloaded = preloadedConfig(loaded.config, loaded.nginx);
  // A/B against bundles older than the preloaded `replicas` field: they read the keys from `keys`.
  if (variant.jsPath && preloaded.replicas && !preloaded.keys) preloaded.keys = preloaded.replicas.map((r) => r.keys);
  const configFile = path.join(dir, engine === 'qjs' ? 'llm-balancer.config.js' : 'llm-balancer.json');
  fs.writeFileSync(configFile, engine === 'qjs' ? configModule(preloaded) : JSON.stringify(preloaded));
  tempPaths(dir);
  const jsPath = variant.jsPath ? path.resolve(variant.jsPath) : path.join(REPO_ROOT, 'dist', 'nginx');
  return renderNginxConfig({ config: loaded.config, nginx: { ...loaded.nginx, module_path: env.modulePath, js_path: jsPath, config_json: configFile }, source: 'bench' }, 'full');
}

/** The nginx.conf of `variant` on `env` (`engine`: null for native rows), listening on `port`. */
function variantConf(variant, env, engine, dir, port, ports) {
  if (variant.kind === 'native') return nativeConf(dir, port, ports, variant.balancing);
  if (variant.kind === 'reference') return referenceConf(env, engine, dir, port, ports, variant.file);
  return njsConf(env, engine, dir, port, ports, variant);
}

/**
 * BENCH_POST's request body: a short OpenAI chat request (~0.5 KB), or with BENCH_POST_KB=N a
 * system prompt padded to about N KB (long prompts: what hashing the prompt's blocks costs).
 */
function chatBody(kb) {
  const padding = kb > 0.5 ? ' You follow the policy.'.repeat(Math.ceil(((kb - 0.5) * 1024) / 23)) : '';
  return JSON.stringify({ model: 'm', stream: false, max_tokens: 64, messages: [{ role: 'system', content: 'You are a helpful assistant.' + padding }, { role: 'user', content: 'Explain '.repeat(50) }] });
}
const POST_KB = Number(process.env.BENCH_POST_KB ?? 0.5);
const CHAT_BODY = chatBody(POST_KB);

/** wrk with a Lua script that spreads requests over 1000 session ids (the hash variants key on it). */
function wrkScript(dir) {
  const file = path.join(dir, 'sessions.lua');
  fs.writeFileSync(
    file,
    [
      'local counter = 0',
      'request = function()',
      '  counter = counter + 1',
      '  wrk.headers["x-session-id"] = "session-" .. (counter % 1000)',
      ...(process.env.BENCH_POST
        ? // BENCH_POST=1: a small chat completion body instead of a GET, every other one streaming (what `route` reads).
          ['  wrk.headers["content-type"] = "application/json"', `  local body = '${CHAT_BODY}'`, '  if counter % 2 == 0 then body = string.gsub(body, \'"stream":false\', \'"stream":true\') end', '  return wrk.format("POST", "/v1/chat/completions", nil, body)']
        : ['  return wrk.format("GET", "/v1/chat/completions")']),
      'end',
      '',
    ].join('\n'),
  );
  return file;
}

/**
 * The environments of the targets asked for, and the targets left out with why: trixie is
 * provisioned when missing (as before there were targets); forky only runs when it already is.
 */
async function targetEnvs(wanted) {
  const envs = {};
  const skipped = [];
  for (const generation of plan.generationsOf(wanted)) {
    const gen = generationConfig(generation);
    let reason = null;
    if (generation !== 'trixie' && !fs.existsSync(gen.envPath)) {
      reason = `nginx ${generation} is not provisioned (node build/fetch-nginx.js --generation ${generation})`;
    } else {
      try {
        envs[generation] = await ensureNginx({ generation, quiet: true });
      } catch (error) {
        reason = `nginx ${generation} is not usable: ${oneLine(error instanceof Error ? error.message : String(error))}`;
      }
    }
    if (reason !== null) for (const t of wanted) if (t.generation === generation) skipped.push({ target: t.name, reason });
  }
  for (const t of wanted) {
    const env = envs[t.generation];
    if (env && !env.engines.includes(t.engine)) skipped.push({ target: t.name, reason: `njs ${env.njsVersion} of nginx ${t.generation} has no ${t.engine} engine` });
  }
  const targets = wanted.filter((t) => envs[t.generation] && envs[t.generation].engines.includes(t.engine));
  return { envs, targets, skipped };
}

/** The first line of the gateway's stderr or error log where the module failed (level error or worse), or null. */
function moduleErrorLine(dir, stderr) {
  let text = stderr;
  try {
    text += '\n' + fs.readFileSync(path.join(dir, 'logs', 'error.log'), 'utf8');
  } catch {
    // the native and reference configs log to stderr only
  }
  const line = text.split('\n').find((l) => /\[(error|crit|alert|emerg)\]/.test(l) || /js exception/.test(l));
  return line === undefined ? null : line.replace(/^\S+ \S+ /, '').slice(0, 300);
}

async function main() {
  const wanted = plan.parseTargets(process.env.BENCH_TARGETS || process.env.LLMB_NGINX_TARGET);
  const { envs, targets, skipped } = await targetEnvs(wanted);
  for (const line of plan.skippedLines(skipped)) console.error(line);
  if (targets.length === 0) throw new Error('no nginx target to measure');
  // One wrk and one backend nginx for every target: the default nginx's when it runs, else the first.
  const home = envs.trixie ?? envs[targets[0].generation];
  if (!home.wrkArgv) throw new Error('wrk is not available: install it, or let build/fetch-nginx.js provision Debian\'s (LLMB_NGINX_SYSTEM=0)');
  const wrk = home.wrkArgv;
  await build();
  fs.mkdirSync(WORK, { recursive: true });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-bench-gateway-'));
  const stops = [];
  try {
    const ports = [];
    for (let i = 0; i < REPLICAS; i++) ports.push(await freePort());
    const backendDir = path.join(root, 'backends');
    fs.mkdirSync(backendDir);
    stops.push((await startNginx(home, backendDir, backendsConf(backendDir, ports), ports[0])).stop);
    for (const port of ports) await waitForPort(port, 5000);
    const script = wrkScript(root);

    // A/B of njs bundles: BENCH_NJS_PATHS=old=/some/dir,new=/other/dir runs every llm-balancer row
    // once per js_path directory (each holding an llm_balancer.js), next to each other, with the
    // generator of this tree; BENCH_ROUNDS=N repeats the whole sequence and the table shows per-row
    // medians (one run is ±15 µs/req on this machine: alternate and take medians).
    const selected = plan.expandBundles(plan.selectVariants(plan.VARIANTS, process.env.BENCH_VARIANTS), process.env.BENCH_NJS_PATHS);
    const byName = new Map(selected.map((v) => [v.name, v]));
    const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
    const sequence = plan.runSequence(selected, targets, rounds);
    // Where a job runs: a generation (native rows) or a target.
    const placeOf = (on) => {
      const target = targets.find((t) => t.name === on);
      return target ? { env: envs[target.generation], engine: target.engine } : { env: envs[on], engine: null };
    };
    console.error(`bench:gateway: ${targets.map((t) => t.name).join(', ')}; ${selected.length} variants, ${rounds} round(s): ${sequence.length} runs of ~${DURATION_S + 2} s`);
    const runs = [];
    for (let n = 0; n < sequence.length; n++) {
      const job = sequence[n];
      const variant = byName.get(job.variant);
      const { env, engine } = placeOf(job.on);
      const dir = path.join(root, `${job.variant}-${job.on}-${job.round}`.replace(/[^a-z0-9]+/gi, '-'));
      fs.mkdirSync(dir);
      const label = `[${n + 1}/${sequence.length}] round ${job.round + 1}/${rounds} ${job.on} ${job.variant}`;
      let gateway = null;
      try {
        const port = await freePort();
        gateway = await startNginx(env, dir, variantConf(variant, env, engine, dir, port, ports), port);
        const url = `http://127.0.0.1:${port}/v1/chat/completions`;
        // Warm up connections and, for njs, the shared state (and QuickJS's pooled contexts).
        await run(wrk[0], wrk.slice(1).concat(['-t1', `-c${CONNECTIONS}`, '-d1s', '-s', script, url]));
        const workers = workerPids(gateway.pid);
        const cpuBefore = cpuSeconds(workers);
        const r = await run(wrk[0], wrk.slice(1).concat(['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', '-s', script, url]));
        const cpu = cpuSeconds(workers) - cpuBefore;
        const parsed = report.parseWrk(r.stdout);
        const cpuUsPerRequest = (cpu * 1e6) / parsed.requests;
        runs.push({ ...job, error: null, ...parsed, cpuUsPerRequest, errorLog: moduleErrorLine(dir, gateway.stderr()) });
        console.error(`${label}: ${cpuUsPerRequest.toFixed(1)} µs/req, ${parsed.requestsPerSecond.toFixed(0)} req/s${parsed.non2xx ? `, ${parsed.non2xx} non-2xx` : ''}`);
      } catch (error) {
        const message = oneLine(error instanceof Error ? error.message : String(error)).replace(/\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, '');
        runs.push({ ...job, error: message });
        console.error(`${label}: FAILED: ${message}`);
      } finally {
        if (gateway) await gateway.stop();
      }
    }
    const summaries = report.summarizeRuns(runs);
    const reports = targets.map((t) => ({
      target: t.name,
      generation: t.generation,
      engine: t.engine,
      nginx: envs[t.generation].nginxVersion,
      njs: envs[t.generation].njsVersion,
      rows: report.targetRows(t, selected, summaries),
    }));
    const request = process.env.BENCH_POST ? `POST /v1/chat/completions, ~${(CHAT_BODY.length / 1024).toFixed(1)} KB body, half streaming` : 'GET /v1/chat/completions (no body)';
    console.log(`Gateway overhead: ${GATEWAY_WORKERS} workers, ${REPLICAS} keepalive upstreams, wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, ${request}, tiny responses, medians of ${rounds} interleaved round(s)`);
    for (const r of reports) console.log('\n' + report.renderTarget(r));
    for (const line of plan.skippedLines(skipped)) console.log('\n' + line);
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    const document = report.resultsDocument({
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length },
      settings: { durationS: DURATION_S, connections: CONNECTIONS, workers: GATEWAY_WORKERS, rounds, request, wrk: `${home.generation} (${home.source})` },
      targets: reports,
      skipped,
    });
    fs.writeFileSync(RESULTS, JSON.stringify(document, null, 2) + '\n');
    console.log(`\nwrote ${path.relative(REPO_ROOT, RESULTS)}`);
  } finally {
    for (const stop of stops.reverse()) await stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
