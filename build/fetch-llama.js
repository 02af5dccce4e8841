#!/usr/bin/env node
// Provision llama.cpp's `llama-server` (a real OpenAI-compatible inference server, for the specs and
// the benchmark that put real replicas behind the gateways) without root.
//
// 1. If `.cache/llama/env.json` describes a working install, use it (no network).
// 2. Else, if `llama-server` on PATH runs (`--version`), describe it (LLMB_LLAMA_SYSTEM=0 skips this).
// 3. Else download Debian forky's llama.cpp-tools and its runtime libraries with apt-get pointed at
//    a private configuration (build/private-apt.js, the recipe of fetch-nginx.js and fetch-redis.js),
//    unpack them under .cache/llama/root and run the binary through forky's own loader. Debian
//    stable has no llama.cpp; testing (forky) and sid do.
//
// ggml finds its CPU backends (libggml-cpu-<microarchitecture>.so, one per instruction set; it loads
// the best the processor supports) in a compiled-in system folder, else beside the executable, else in
// the working directory. Run through the loader, "the executable" is ld-linux itself, so the backends
// are linked beside it: without them llama-server loads no backend and refuses every model.
//
// No model comes with it (none can be downloaded here): testbed/llama/tiny-model.ts writes one.
//
// Writes .cache/llama/env.json: { schema, source, serverArgv, version, root, libraryPath, packages }
// and .cache/llama/bin/llama-server (run it by hand with any arguments).
//
// Usage: node build/fetch-llama.js [--force] [--no-system] [--quiet]
//        import { ensureLlama } from './build/fetch-llama.js'
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail, MULTIARCH, ProvisionError, run, verifyClosure, which } from './private-apt.js';
import { provision, reuseRecordedRoot, stagedDownload, writeWrapper } from './provision.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'llama');
export const ENV_PATH = path.join(CACHE_DIR, 'env.json');
const ROOT_DIR = path.join(CACHE_DIR, 'root');
const LOCK_DIR = path.join(CACHE_DIR, '.lock');
// Bumped when the env.json shape or the package set changes: older caches are rebuilt.
const ENV_SCHEMA = 1;
const DEBIAN_SUITE = 'forky';
const LOADER_NAME = 'ld-linux-x86-64.so.2';
// The runtime closure of llama-server and its CPU backends (checked with `ld.so --list` by
// verifyClosure). libc6 is included so the binaries never mix the host's older glibc with forky's.
export const PACKAGES = [
  'llama.cpp-tools', 'libllama0', 'libggml0', 'libc6', 'libgcc-s1', 'libgomp1', 'libstdc++6', 'libssl3t64', 'zlib1g', 'libzstd1',
];

// "version: 0.7.0 (build 11669, commit Debian)"
function llamaVersionOf(argv, cwd) {
  const r = run([...argv, '--version'], { cwd });
  const text = r.stdout + r.stderr;
  const m = /version: (\S+)(?: \(build (\d+))?/.exec(text);
  if (r.code !== 0 || !m) return { ok: false, detail: `\`${argv.join(' ')} --version\` → exit ${r.code} ${r.error ?? ''} ${text.trim().slice(0, 400)}` };
  return { ok: true, version: m[2] ? `${m[1]} (build ${m[2]})` : m[1] };
}

function trySystem(log) {
  const server = which('llama-server');
  if (!server) {
    log('system: no llama-server on PATH');
    return null;
  }
  const v = llamaVersionOf([server]);
  if (!v.ok) {
    log(`system: ${v.detail}`);
    return null;
  }
  return { schema: ENV_SCHEMA, source: 'system', serverArgv: [server], version: v.version, root: null, libraryPath: null, packages: [] };
}

function libDir(root) {
  return path.join(root, 'usr', 'lib', MULTIARCH);
}

// forky is merged-usr: every library is under usr/lib; llama-server's own implementation library
// sits in usr/lib/<multiarch>/llama (its RUNPATH, which the prefix must repeat).
function envFor(root, packages) {
  const libraryPath = [libDir(root), path.join(libDir(root), 'llama')].join(':');
  const loader = path.join(libDir(root), LOADER_NAME);
  return {
    schema: ENV_SCHEMA,
    source: `debian-${DEBIAN_SUITE}`,
    serverArgv: [loader, '--library-path', libraryPath, path.join(root, 'usr', 'bin', 'llama-server')],
    version: null,
    root,
    libraryPath,
    packages,
  };
}

function backendFiles(root) {
  const dir = path.join(libDir(root), 'ggml', 'backends0');
  if (!fs.existsSync(dir)) fail(`libggml0 has no CPU backends in ${dir}: its layout changed; update build/fetch-llama.js`);
  return fs.readdirSync(dir).filter((n) => /^libggml-cpu-.*\.so$/.test(n)).map((n) => path.join(dir, n));
}

// See the header: the backends must sit beside the loader, the process's executable.
function linkBackends(root) {
  for (const file of backendFiles(root)) {
    const link = path.join(libDir(root), path.basename(file));
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.relative(libDir(root), file), link);
  }
}

function last(argv) {
  return argv[argv.length - 1];
}

function verify(env) {
  const v = llamaVersionOf(env.serverArgv);
  if (!v.ok) fail(`llama-server does not run: ${v.detail}`);
  return Object.assign({}, env, { version: v.version });
}

function closureOf(env) {
  const targets = [last(env.serverArgv)].concat(backendFiles(env.root));
  verifyClosure({ loader: env.serverArgv[0], libraryPath: env.libraryPath, root: env.root, targets, script: 'build/fetch-llama.js' });
}

function readEnv() {
  try {
    const env = JSON.parse(fs.readFileSync(ENV_PATH, 'utf8'));
    if (env.schema !== ENV_SCHEMA) return null;
    if (!fs.existsSync(env.serverArgv[0]) || !fs.existsSync(last(env.serverArgv))) return null;
    if (env.root && env.root !== ROOT_DIR) return null; // the checkout moved: rewrite absolute paths
    return env;
  } catch {
    return null;
  }
}

export const LLAMA_SERVER_WRAPPER = path.join(CACHE_DIR, 'bin', 'llama-server');

function writeRunnables(env) {
  writeWrapper(LLAMA_SERVER_WRAPPER, env.serverArgv, `build/fetch-llama.js (${env.source})`);
  return env;
}

const ROOT_TOOL = { rootDir: ROOT_DIR, envPath: ENV_PATH, packages: PACKAGES, relativeTo: REPO_ROOT, envFor, check: closureOf };

// The backend links are relative: they survive the move from the stage.
function download(log) {
  return stagedDownload(Object.assign({ cacheDir: CACHE_DIR, suite: DEBIAN_SUITE, log, what: 'llama-server', prepare: linkBackends }, ROOT_TOOL, {
    check: (env) => {
      closureOf(env);
      verify(env);
    },
  }));
}

function reuseRoot(log) {
  return reuseRecordedRoot(Object.assign({ marker: path.join('usr', 'bin', 'llama-server'), log, prepare: linkBackends }, ROOT_TOOL));
}

/**
 * Make sure llama-server is available and return the env.json object.
 * @param {{force?: boolean, allowSystem?: boolean, quiet?: boolean}} [options]
 */
export async function ensureLlama(options = {}) {
  const log = options.quiet ? () => {} : (msg) => process.stderr.write(`fetch-llama: ${msg}\n`);
  return provision(
    {
      tag: 'fetch-llama',
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
    { force: Boolean(options.force), allowSystem: options.allowSystem ?? process.env.LLMB_LLAMA_SYSTEM !== '0', log },
  );
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = new Set(process.argv.slice(2));
  const started = Date.now();
  ensureLlama({ force: args.has('--force'), allowSystem: args.has('--no-system') ? false : undefined, quiet: args.has('--quiet') })
    .then((env) => {
      const where = env.source === 'system' ? env.serverArgv[0] : path.relative(REPO_ROOT, env.root);
      process.stdout.write(`fetch-llama: llama-server ${env.version} (${env.source}: ${where}) → ${path.relative(REPO_ROOT, ENV_PATH)} in ${Date.now() - started} ms\n`);
    })
    .catch((e) => {
      process.stderr.write(`fetch-llama: FAILED: ${e instanceof ProvisionError ? e.message : e.stack}\n`);
      process.exitCode = 1;
    });
}
