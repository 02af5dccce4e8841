// `npm run bench:gateway`: what the njs picker costs inside real nginx. The same nginx proxies
// tiny responses from the same four keepalive upstreams, driven by the same wrk, once per
// variant in the same run:
//   native least_conn           nginx's own balancer (the baseline)
//   native hash consistent      nginx's own ketama on the session header
//   njs least-connections       llm-balancer, config from the generator (route reads the body: "stream" picks the read bound)
//   njs least-connections js_set path  the same with equal read bounds: the pick in js_set, no body read
//   njs round-robin             llm-balancer, the cheapest strategy
//   njs consistent-hash         llm-balancer, bounded-load rendezvous on the session header
// and two reference points that are not products (bench/njs-reference/):
//   njs floor                   a js_set returning a constant + an empty log-phase js_set: njs itself
//   njs minimal hand-written LC the least bookkeeping any njs least-connections picker needs
// Prints requests/s, p50 and p99 with the ratio to native least_conn and writes
// bench/results/gateway.json. A benchmark, not a test: nothing here asserts a speed.
// Environment: BENCH_DURATION_S (default 8), BENCH_VARIANTS=least,round (only those rows),
// BENCH_ROUNDS=N (repeat, report medians), BENCH_NJS_PATHS=a=DIR,b=DIR (A/B of njs bundles, below),
// BENCH_POST=1 (POST a ~0.5 KB chat body, half of them streaming, instead of GET /v1/models).

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, build, buildNodeModule } from '../build/build.js';
import { ensureNginx } from '../build/fetch-nginx.js';
import { nativeNginxConf } from '../testbed/lib/native-nginx.js';

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

/** Starts nginx in the foreground on `conf`; returns a stop function. */
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
  } catch (error) {
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
  return { stop, pid: child.pid };
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
function backendsConf(env, dir, ports) {
  const servers = ports
    .map((port) => `  server { listen 127.0.0.1:${port}; keepalive_requests 1000000; location / { default_type application/json; return 200 '{"id":"x","object":"chat.completion","choices":[]}'; } }`)
    .join('\n');
  return `worker_processes 1;\npid nginx.pid;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  ${tempPaths(dir)}\n${servers}\n}\n`;
}

function nativeConf(env, dir, port, ports, balancing) {
  tempPaths(dir); // creates temp/ and logs/ in the prefix
  return nativeNginxConf({ port, servers: ports.map((p) => `127.0.0.1:${p}`), balancing, workers: GATEWAY_WORKERS, keepalive: 32 });
}

/** The same four keepalive upstreams as one block each, picked by a bench/njs-reference module. */
function referenceConf(env, dir, port, ports, moduleFile) {
  const upstreams = ports.map((p, i) => `  upstream reference_${i} {\n    server 127.0.0.1:${p} max_fails=0;\n    keepalive 32;\n  }`).join('\n');
  return `worker_processes ${GATEWAY_WORKERS};\npid nginx.pid;\nload_module ${env.modulePath};\nevents { worker_connections 4096; }\nhttp {
  ${tempPaths(dir)}
  js_path ${path.join(REPO_ROOT, 'bench', 'njs-reference')};
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

async function generatorModules() {
  const outfile = path.join(WORK, 'generator.mjs');
  await buildNodeModule(
    { contents: "export { loadBalancerFile } from './plugins/nginx/generator/load';\nexport { renderNginxConfig, preloadedConfig } from './plugins/nginx/generator/generate';\n" },
    outfile,
  );
  return import(pathToFileURL(outfile).href + '?t=' + Date.now());
}

async function njsConf(env, dir, port, ports, strategyYaml, jsPath) {
  const generator = await generatorModules();
  const yaml = `${strategyYaml}\nretries: 1\nreplicas:\n${ports.map((p) => `  - address: 127.0.0.1:${p}`).join('\n')}\nnginx:\n  listen: 127.0.0.1:${port}\n  worker_processes: ${GATEWAY_WORKERS}\n`;
  const loaded = generator.loadBalancerFile(yaml);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const configJson = path.join(dir, 'llm-balancer.json');
  const preloaded = generator.preloadedConfig(loaded.config, loaded.nginx);
  // A/B against bundles older than the preloaded `replicas` field: they read the keys from `keys`.
  if (jsPath && preloaded.replicas && !preloaded.keys) preloaded.keys = preloaded.replicas.map((r) => r.keys);
  fs.writeFileSync(configJson, JSON.stringify(preloaded));
  tempPaths(dir);
  return generator.renderNginxConfig(
    {
      config: loaded.config,
      nginx: { ...loaded.nginx, module_path: env.modulePath, js_path: jsPath ?? path.join(REPO_ROOT, 'dist', 'nginx'), config_json: configJson },
      source: 'bench',
    },
    'full',
  );
}

/** Equal streaming and non-streaming read bounds: no body read for strategies that do not need it. */
const JS_SET_PATH = 'timeouts:\n  stream_idle_s: 300\n';

/** BENCH_POST's request body: a short OpenAI chat request (~0.5 KB). */
const CHAT_BODY = JSON.stringify({ model: 'm', stream: false, max_tokens: 64, messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Explain '.repeat(50) }] });

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
        : ['  return wrk.format("GET", "/v1/models")']),
      'end',
      '',
    ].join('\n'),
  );
  return file;
}

function parseWrk(output) {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const toMs = (value, unit) => Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? NaN);
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(output);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const errors = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const requests = /(\d+) requests in/.exec(output);
  const socket = /Socket errors:.*/.exec(output);
  return {
    requestsPerSecond: rps ? Number(rps[1]) : NaN,
    requests: requests ? Number(requests[1]) : NaN,
    p50Ms: pct(50),
    p99Ms: pct(99),
    non2xx: errors ? Number(errors[1]) : 0,
    socketErrors: socket ? socket[0] : null,
  };
}

async function main() {
  const env = await ensureNginx({ quiet: true });
  if (!env.wrkArgv) throw new Error('wrk is not available: install it, or let build/fetch-nginx.js provision Debian\'s (LLMB_NGINX_SYSTEM=0)');
  await build();
  fs.mkdirSync(WORK, { recursive: true });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-bench-gateway-'));
  const stops = [];
  try {
    const ports = [];
    for (let i = 0; i < REPLICAS; i++) ports.push(await freePort());
    const backendDir = path.join(root, 'backends');
    fs.mkdirSync(backendDir);
    stops.push((await startNginx(env, backendDir, backendsConf(env, backendDir, ports), ports[0])).stop);
    for (const port of ports) await waitForPort(port, 5000);
    const script = wrkScript(root);

    const variants = [
      { name: 'native least_conn', conf: (dir, port) => nativeConf(env, dir, port, ports, 'least_conn') },
      { name: 'native hash consistent', conf: (dir, port) => nativeConf(env, dir, port, ports, 'hash $http_x_session_id consistent') },
      { name: 'njs floor (reference)', conf: (dir, port) => referenceConf(env, dir, port, ports, 'floor.js') },
      { name: 'njs minimal hand-written LC (reference)', conf: (dir, port) => referenceConf(env, dir, port, ports, 'minimal-least-connections.js') },
      { name: 'njs least-connections', conf: (dir, port) => njsConf(env, dir, port, ports, 'strategy: least-connections'), njs: 'strategy: least-connections' },
      // The js_set path: equal read bounds, so nothing needs the body (the default reads it to know "stream").
      { name: 'njs least-connections js_set path', conf: (dir, port) => njsConf(env, dir, port, ports, JS_SET_PATH + 'strategy: least-connections'), njs: JS_SET_PATH + 'strategy: least-connections' },
      { name: 'njs round-robin', conf: (dir, port) => njsConf(env, dir, port, ports, 'strategy: round-robin'), njs: 'strategy: round-robin' },
      { name: 'njs consistent-hash', conf: (dir, port) => njsConf(env, dir, port, ports, 'strategy: consistent-hash\nhash_key:\n  source: header\n  name: x-session-id'), njs: 'strategy: consistent-hash\nhash_key:\n  source: header\n  name: x-session-id' },
    ];
    // BENCH_VARIANTS=least,round runs only the variants whose names contain one of the words.
    const only = process.env.BENCH_VARIANTS ? process.env.BENCH_VARIANTS.split(',') : null;
    let selected = variants.filter((v, i) => i === 0 || !only || only.some((word) => v.name.includes(word)));
    // A/B of njs bundles: BENCH_NJS_PATHS=old=/some/dir,new=/other/dir runs every llm-balancer row
    // once per js_path directory (each holding an llm_balancer.js), alternated, with the generator
    // of this tree; BENCH_ROUNDS=N repeats the whole sequence and the table shows per-row medians
    // (one run is ±15 µs/req on this machine: alternate and take medians).
    if (process.env.BENCH_NJS_PATHS) {
      const paths = process.env.BENCH_NJS_PATHS.split(',').map((pair) => pair.split('='));
      const expanded = [];
      for (const v of selected) {
        if (!v.njs) expanded.push(v);
        else for (const [label, dir] of paths) expanded.push({ name: `${v.name} [${label}]`, conf: (d, port) => njsConf(env, d, port, ports, v.njs, path.resolve(dir)) });
      }
      selected = expanded;
    }
    const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
    const sequence = [];
    for (let round = 0; round < rounds; round++) for (const v of selected) sequence.push({ ...v, round });
    const runs = [];
    for (const variant of sequence) {
      const dir = path.join(root, variant.name.replace(/[^a-z0-9]+/gi, '-') + '-' + variant.round);
      fs.mkdirSync(dir);
      const port = await freePort();
      const gateway = await startNginx(env, dir, await variant.conf(dir, port), port);
      try {
        const url = `http://127.0.0.1:${port}/v1/models`;
        // Warm up connections and, for njs, the shared state.
        await run(env.wrkArgv[0], env.wrkArgv.slice(1).concat(['-t1', `-c${CONNECTIONS}`, '-d1s', '-s', script, url]));
        const workers = workerPids(gateway.pid);
        const cpuBefore = cpuSeconds(workers);
        const r = await run(env.wrkArgv[0], env.wrkArgv.slice(1).concat(['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', '-s', script, url]));
        const cpu = cpuSeconds(workers) - cpuBefore;
        const parsed = parseWrk(r.stdout);
        runs.push({ variant: variant.name, ...parsed, cpuUsPerRequest: (cpu * 1e6) / parsed.requests });
        if (rounds > 1) console.error(`round ${variant.round + 1}/${rounds} ${variant.name}: ${((cpu * 1e6) / parsed.requests).toFixed(1)} µs/req, ${parsed.requestsPerSecond.toFixed(0)} req/s`);
      } finally {
        await gateway.stop();
      }
    }
    // One row per variant: the median run by CPU per request (with BENCH_ROUNDS=1, the run itself).
    const results = [];
    for (const v of selected) {
      const mine = runs.filter((r) => r.variant === v.name).sort((a, b) => a.cpuUsPerRequest - b.cpuUsPerRequest);
      if (mine.length === 0) continue;
      const median = (field) => {
        const values = mine.map((r) => r[field]).sort((a, b) => a - b);
        const mid = Math.floor(values.length / 2);
        return values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
      };
      results.push({ ...mine[Math.floor(mine.length / 2)], requestsPerSecond: median('requestsPerSecond'), cpuUsPerRequest: median('cpuUsPerRequest'), p50Ms: median('p50Ms'), p99Ms: median('p99Ms'), runs: mine.length });
    }
    const baseline = results[0].requestsPerSecond;
    const baseCpu = results[0].cpuUsPerRequest;
    const header = ['variant', 'req/s', 'vs native least_conn', 'nginx CPU µs/req', 'CPU vs native', 'p50 ms', 'p99 ms', 'non-2xx'];
    const rows = results.map((r) => [
      r.variant,
      r.requestsPerSecond.toFixed(0),
      (r.requestsPerSecond / baseline).toFixed(2),
      r.cpuUsPerRequest.toFixed(1),
      (r.cpuUsPerRequest / baseCpu).toFixed(2) + 'x',
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      String(r.non2xx),
    ]);
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
    const line = (cells) => '| ' + cells.map((cell, c) => cell.padEnd(widths[c])).join(' | ') + ' |';
    console.log(`Gateway overhead: nginx ${env.nginxVersion} + njs ${env.njsVersion}, ${GATEWAY_WORKERS} workers, ${REPLICAS} keepalive upstreams, wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, tiny responses\n`);
    console.log([line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)].join('\n'));
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(
      RESULTS,
      JSON.stringify({ date: new Date().toISOString(), machine: { cpus: os.cpus().length, nginx: env.nginxVersion, njs: env.njsVersion }, settings: { durationS: DURATION_S, connections: CONNECTIONS, workers: GATEWAY_WORKERS, rounds }, results }, null, 2) + '\n',
    );
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
