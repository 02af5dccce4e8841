#!/usr/bin/env node
// Provision redis-server (>= 6.2, for the specs of the Kong plugin's shared state) without root.
//
// 1. If `.cache/redis/env.json` describes a working install, use it (no network).
// 2. Else, if `redis-server` on PATH is new enough, describe it.
// 3. Else download Debian bookworm's redis-server + redis-tools and their runtime libraries with
//    apt-get pointed at a private configuration (build/private-apt.js, the recipe fetch-nginx.js
//    uses), unpack them under .cache/redis/root and run the binary through bookworm's own loader.
//
// Writes .cache/redis/env.json: { schema, source, redisServerArgv, redisCliArgv, version, root, libraryPath, packages }
// and .cache/redis/bin/redis-server, .cache/redis/bin/redis-cli (run them by hand with any arguments).
//
// Usage: node build/fetch-redis.js [--force] [--no-system] [--quiet]
//        import { ensureRedis } from './build/fetch-redis.js'
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail, MULTIARCH, ProvisionError, run, verifyClosure, which } from './private-apt.js';
import { provision, reuseRecordedRoot, stagedDownload, writeWrapper } from './provision.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'redis');
export const ENV_PATH = path.join(CACHE_DIR, 'env.json');
const ROOT_DIR = path.join(CACHE_DIR, 'root');
const LOCK_DIR = path.join(CACHE_DIR, '.lock');
// Bumped when the env.json shape or the package set changes: older caches are rebuilt.
const ENV_SCHEMA = 1;
// ioredis needs nothing newer; 6.2 brought GETEX/SET ... GET and the HELLO 3 semantics we do not use.
const MIN_REDIS = [6, 2, 0];
// Debian 12, the suite these machines run: 7.0.x, built against its own glibc.
const DEBIAN_SUITE = 'bookworm';
const LOADER_NAME = 'ld-linux-x86-64.so.2';
// The runtime closure of redis-server / redis-cli (redis-server is a link to redis-check-rdb in
// redis-tools): verifyClosure() checks that every shared library resolves inside the prefix. libc6
// is included so the binaries never mix the host's glibc with the prefix's (a non-bookworm host).
export const PACKAGES = [
  'redis-server', 'redis-tools', 'libc6', 'libjemalloc2', 'liblzf1', 'libatomic1', 'libssl3', 'libsystemd0',
  // libsystemd0's own closure
  'libcap2', 'libgcrypt20', 'libgpg-error0', 'liblz4-1', 'liblzma5', 'libzstd1',
  // redis-server and redis-cli also link the C++ runtime (ld.so --list)
  'libstdc++6', 'libgcc-s1',
];

function parseVersion(text) {
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

function versionAtLeast(v, min) {
  for (let i = 0; i < 3; i++) {
    if (v[i] !== min[i]) return v[i] > min[i];
  }
  return true;
}

// "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..."
function redisVersionOf(argv) {
  const r = run([...argv, '--version']);
  const m = /v=(\d+\.\d+\.\d+)/.exec(r.stdout);
  if (r.code !== 0 || !m) return { ok: false, detail: `\`${argv.join(' ')} --version\` → exit ${r.code} ${r.error ?? ''} ${r.stderr.trim()}` };
  return { ok: true, version: m[1] };
}

function trySystem(log) {
  const server = which('redis-server');
  if (!server) {
    log('system: no redis-server on PATH');
    return null;
  }
  const v = redisVersionOf([server]);
  if (!v.ok || !versionAtLeast(parseVersion(v.version), MIN_REDIS)) {
    log(`system: ${v.ok ? `redis-server ${v.version} older than ${MIN_REDIS.join('.')}` : v.detail}`);
    return null;
  }
  const cli = which('redis-cli');
  return { schema: ENV_SCHEMA, source: 'system', redisServerArgv: [server], redisCliArgv: cli ? [cli] : null, version: v.version, root: null, libraryPath: null, packages: [] };
}

// bookworm is not merged-usr inside its packages: libc6 puts the loader and libc under lib/, the
// others under usr/lib/.
function envFor(root, packages) {
  const libdirs = [path.join(root, 'lib', MULTIARCH), path.join(root, 'usr', 'lib', MULTIARCH)];
  const loader = path.join(libdirs[0], LOADER_NAME);
  const libraryPath = libdirs.join(':');
  const prefix = [loader, '--library-path', libraryPath];
  return {
    schema: ENV_SCHEMA,
    source: `debian-${DEBIAN_SUITE}`,
    redisServerArgv: prefix.concat([path.join(root, 'usr', 'bin', 'redis-server')]),
    redisCliArgv: prefix.concat([path.join(root, 'usr', 'bin', 'redis-cli')]),
    version: null,
    root,
    libraryPath,
    packages,
  };
}

function last(argv) {
  return argv[argv.length - 1];
}

function verify(env) {
  const v = redisVersionOf(env.redisServerArgv);
  if (!v.ok) fail(`redis-server does not run: ${v.detail}`);
  if (!versionAtLeast(parseVersion(v.version), MIN_REDIS)) fail(`redis-server ${v.version} < ${MIN_REDIS.join('.')}`);
  return Object.assign({}, env, { version: v.version });
}

function closureOf(env) {
  // redis-server is a symlink to redis-check-rdb: list the real file.
  const targets = [fs.realpathSync(last(env.redisServerArgv)), fs.realpathSync(last(env.redisCliArgv))];
  verifyClosure({ loader: env.redisServerArgv[0], libraryPath: env.libraryPath, root: env.root, targets, script: 'build/fetch-redis.js' });
}

function readEnv() {
  try {
    const env = JSON.parse(fs.readFileSync(ENV_PATH, 'utf8'));
    if (env.schema !== ENV_SCHEMA) return null;
    if (!fs.existsSync(env.redisServerArgv[0]) || !fs.existsSync(last(env.redisServerArgv))) return null;
    if (env.root && env.root !== ROOT_DIR) return null; // the checkout moved: rewrite absolute paths
    return env;
  } catch {
    return null;
  }
}

export const REDIS_SERVER_WRAPPER = path.join(CACHE_DIR, 'bin', 'redis-server');
export const REDIS_CLI_WRAPPER = path.join(CACHE_DIR, 'bin', 'redis-cli');

function writeRunnables(env) {
  writeWrapper(REDIS_SERVER_WRAPPER, env.redisServerArgv, `build/fetch-redis.js (${env.source})`);
  if (env.redisCliArgv) writeWrapper(REDIS_CLI_WRAPPER, env.redisCliArgv, `build/fetch-redis.js (${env.source})`);
  return env;
}

const ROOT_TOOL = { rootDir: ROOT_DIR, envPath: ENV_PATH, packages: PACKAGES, relativeTo: REPO_ROOT, envFor, check: closureOf };

function download(log) {
  return stagedDownload(Object.assign({ cacheDir: CACHE_DIR, suite: DEBIAN_SUITE, log, what: `redis-server >= ${MIN_REDIS.join('.')}` }, ROOT_TOOL, {
    check: (env) => {
      closureOf(env);
      verify(env);
    },
  }));
}

function reuseRoot(log) {
  return reuseRecordedRoot(Object.assign({ marker: path.join('usr', 'bin', 'redis-check-rdb'), log }, ROOT_TOOL));
}

/**
 * Make sure redis-server is available and return the env.json object.
 * @param {{force?: boolean, allowSystem?: boolean, quiet?: boolean}} [options]
 */
export async function ensureRedis(options = {}) {
  const log = options.quiet ? () => {} : (msg) => process.stderr.write(`fetch-redis: ${msg}\n`);
  return provision(
    {
      tag: 'fetch-redis',
      cacheDir: CACHE_DIR,
      envPath: ENV_PATH,
      lockDir: LOCK_DIR,
      readEnv,
      trySystem: () => trySystem(log),
      reuse: () => reuseRoot(log),
      download: () => download(log),
      verify,
      finish: writeRunnables,
    },
    { force: Boolean(options.force), allowSystem: options.allowSystem ?? process.env.LLMB_REDIS_SYSTEM !== '0', log },
  );
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = new Set(process.argv.slice(2));
  const started = Date.now();
  ensureRedis({ force: args.has('--force'), allowSystem: args.has('--no-system') ? false : undefined, quiet: args.has('--quiet') })
    .then((env) => {
      const where = env.source === 'system' ? env.redisServerArgv[0] : path.relative(REPO_ROOT, env.root);
      process.stdout.write(`fetch-redis: redis ${env.version} (${env.source}: ${where}) → ${path.relative(REPO_ROOT, ENV_PATH)} in ${Date.now() - started} ms\n`);
    })
    .catch((e) => {
      process.stderr.write(`fetch-redis: FAILED: ${e instanceof ProvisionError ? e.message : e.stack}\n`);
      process.exitCode = 1;
    });
}
