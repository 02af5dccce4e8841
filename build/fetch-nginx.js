#!/usr/bin/env node
// Provision nginx >= 1.25 with the njs HTTP module (>= 0.8) and the `njs` command-line
// interpreter, without installing anything into `/`.
//
// 1. If `.cache/nginx/env.json` describes a working install, use it (no network, ~20 ms).
// 2. Else, if the system's nginx/njs are new enough and `load_module ngx_http_js_module.so` with a
//    `js_shared_dict_zone` passes `nginx -t`, describe those.
// 3. Else download Debian trixie's packages with apt-get pointed at a private configuration
//    (lists, status and cache all under .cache/nginx), unpack them with `dpkg-deb -x` and run
//    the binaries through trixie's own dynamic loader (see shared/GATEWAY-FACTS.md).
//
// Also writes what a person runs by hand (the README's NGINX walkthrough):
//   .cache/nginx/bin/nginx                          runs this nginx with any arguments (loader included)
//   .cache/nginx/modules/ngx_http_js_module.so      a link to its njs module, for load_module
//
// Writes .cache/nginx/env.json:
//   { nginxArgv, njsArgv, wrkArgv (null when unavailable), modulePath, nginxVersion, njsVersion, source, libraryPath, root, packages }
// A spawn of `[...nginxArgv, '-p', prefix, '-c', conf]` runs nginx; `[...njsArgv, '-p', dir, file]` runs njs.
//
// Usage: node build/fetch-nginx.js [--force] [--no-system] [--quiet]
//        import { ensureNginx } from './build/fetch-nginx.js'
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireLock as acquireDirLock, downloadDebianPackages, fail, MULTIARCH, ProvisionError, run, verifyClosure as verifyLibraryClosure, which } from './private-apt.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'nginx');
export const ENV_PATH = path.join(CACHE_DIR, 'env.json');
const ROOT_DIR = path.join(CACHE_DIR, 'root');
const LOCK_DIR = path.join(CACHE_DIR, '.lock');

// Bumped when the env.json shape or the package set changes: older caches are rebuilt.
const ENV_SCHEMA = 2;
const MIN_NGINX = [1, 25, 0];
const MIN_NJS = [0, 8, 0];
const DEBIAN_SUITE = 'trixie';
const LOADER_NAME = 'ld-linux-x86-64.so.2';
// The runtime closure of nginx + ngx_http_js_module.so (first line), of the njs CLI (second) and of wrk.
// Not apt's full dependency closure: that drags in debconf, iproute2, libnginx-mod-stream and
// ~30 more packages that the binaries never load. verifyClosure() checks that every shared
// library the three ELF files need resolves inside the prefix, so a missing one fails loudly.
export const PACKAGES = [
  'nginx', 'nginx-common', 'libnginx-mod-http-js', 'libc6', 'libcrypt1', 'libpcre2-8-0', 'libssl3t64',
  'libzstd1', 'zlib1g', 'libxml2', 'liblzma5', 'libgcc-s1',
  'njs', 'libedit2', 'libbsd0', 'libmd0', 'libtinfo6',
  // wrk, the HTTP load generator the gateway benchmark drives nginx with (43 KB + LuaJIT).
  'wrk', 'libluajit-5.1-2',
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

function nginxVersionOf(nginxArgv) {
  const r = run([...nginxArgv, '-v']);
  // nginx prints its version on stderr: "nginx version: nginx/1.26.3"
  const m = /nginx\/(\d+\.\d+\.\d+)/.exec(r.stderr + r.stdout);
  if (r.code !== 0 || !m) {
    return { ok: false, detail: `\`${nginxArgv.join(' ')} -v\` → exit ${r.code} ${r.error ?? ''} ${r.stderr.trim()}` };
  }
  return { ok: true, version: m[1] };
}

function njsVersionOf(njsArgv) {
  const r = run([...njsArgv, '-v']);
  const m = /^(\d+\.\d+\.\d+)/m.exec(r.stdout);
  if (r.code !== 0 || !m) {
    return { ok: false, detail: `\`${njsArgv.join(' ')} -v\` → exit ${r.code} ${r.error ?? ''} ${r.stderr.trim()}` };
  }
  return { ok: true, version: m[1] };
}

// `nginx -t` on a config that loads the module and declares a js_shared_dict_zone (njs >= 0.8.0)
// and imports a module with `export default`: proves module, engine and version in ~30 ms.
function smokeTestModule(nginxArgv, modulePath) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-nginx-probe-'));
  try {
    fs.writeFileSync(path.join(dir, 'probe.js'), 'function ping(r) { r.return(200, "ok"); }\nexport default { ping };\n');
    const temp = (name) => `${name} ${path.join(dir, name.replace('_path', ''))};`;
    const conf = [
      `pid ${path.join(dir, 'nginx.pid')};`,
      'error_log stderr warn;',
      `load_module ${modulePath};`,
      'events {}',
      'http {',
      '  access_log off;',
      `  ${temp('client_body_temp_path')} ${temp('proxy_temp_path')} ${temp('fastcgi_temp_path')}`,
      `  ${temp('uwsgi_temp_path')} ${temp('scgi_temp_path')}`,
      `  js_path ${dir};`,
      '  js_import probe.js;',
      '  js_shared_dict_zone zone=llmb_probe:64k type=number;',
      '}',
      '',
    ].join('\n');
    const confPath = path.join(dir, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    // -e: nginx opens its compiled-in error log (/var/log/nginx/error.log) before reading the config.
    const r = run([...nginxArgv, '-e', 'stderr', '-p', dir, '-c', confPath, '-t']);
    if (r.code !== 0) {
      return { ok: false, detail: `nginx -t with ngx_http_js_module failed (exit ${r.code}):\n${r.stderr.trim()}` };
    }
    return { ok: true };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function trySystem(log) {
  const nginx = which('nginx');
  const njs = which('njs');
  if (!nginx || !njs) {
    log(`system: ${nginx ? '' : 'no nginx '}${njs ? '' : 'no njs '}on PATH`);
    return null;
  }
  const nv = nginxVersionOf([nginx]);
  const jv = njsVersionOf([njs]);
  if (!nv.ok || !jv.ok) return null;
  if (!versionAtLeast(parseVersion(nv.version), MIN_NGINX) || !versionAtLeast(parseVersion(jv.version), MIN_NJS)) {
    log(`system: nginx ${nv.version} / njs ${jv.version} too old (need nginx >= ${MIN_NGINX.join('.')}, njs >= ${MIN_NJS.join('.')})`);
    return null;
  }
  const vv = run([nginx, '-V']);
  const candidates = [];
  const m = /--modules-path=(\S+)/.exec(vv.stderr);
  if (m) candidates.push(m[1]);
  const pm = /--prefix=(\S+)/.exec(vv.stderr);
  if (pm) candidates.push(path.join(pm[1], 'modules'));
  candidates.push('/usr/lib/nginx/modules', '/usr/lib64/nginx/modules', '/usr/share/nginx/modules', '/etc/nginx/modules');
  const modulePath = candidates.map((d) => path.join(d, 'ngx_http_js_module.so')).find((p) => fs.existsSync(p));
  if (!modulePath) {
    log('system: nginx is new enough but ngx_http_js_module.so was not found');
    return null;
  }
  const smoke = smokeTestModule([nginx], modulePath);
  if (!smoke.ok) {
    log(`system: ${smoke.detail}`);
    return null;
  }
  return {
    schema: ENV_SCHEMA,
    source: 'system',
    nginxArgv: [nginx],
    njsArgv: [njs],
    // The system route does not install anything: wrk is used when it is on PATH.
    wrkArgv: which('wrk') ? [which('wrk')] : null,
    modulePath,
    nginxVersion: nv.version,
    njsVersion: jv.version,
    libraryPath: null,
    root: null,
    packages: [],
  };
}

function envFor(root, packages) {
  const libdir = path.join(root, 'usr', 'lib', MULTIARCH);
  const loader = path.join(libdir, LOADER_NAME);
  return {
    schema: ENV_SCHEMA,
    source: `debian-${DEBIAN_SUITE}`,
    nginxArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'sbin', 'nginx')],
    njsArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'bin', 'njs')],
    wrkArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'bin', 'wrk')],
    modulePath: path.join(root, 'usr', 'lib', 'nginx', 'modules', 'ngx_http_js_module.so'),
    nginxVersion: null,
    njsVersion: null,
    libraryPath: libdir,
    root,
    packages,
  };
}

// Every shared object the binaries and the module need must come from the prefix: the loader
// would otherwise fall back to the host's (older) libraries through /etc/ld.so.cache.
function verifyClosure(env) {
  const targets = [env.nginxArgv[env.nginxArgv.length - 1], env.njsArgv[env.njsArgv.length - 1], env.modulePath];
  if (env.wrkArgv) targets.push(env.wrkArgv[env.wrkArgv.length - 1]);
  verifyLibraryClosure({ loader: env.nginxArgv[0], libraryPath: env.libraryPath, root: env.root, targets, script: 'build/fetch-nginx.js' });
}

function verify(env) {
  const nv = nginxVersionOf(env.nginxArgv);
  if (!nv.ok) fail(`nginx does not run: ${nv.detail}`);
  const jv = njsVersionOf(env.njsArgv);
  if (!jv.ok) fail(`njs does not run: ${jv.detail}`);
  if (!versionAtLeast(parseVersion(nv.version), MIN_NGINX)) fail(`nginx ${nv.version} < ${MIN_NGINX.join('.')}`);
  if (!versionAtLeast(parseVersion(jv.version), MIN_NJS)) fail(`njs ${jv.version} < ${MIN_NJS.join('.')}`);
  if (!fs.existsSync(env.modulePath)) fail(`missing ${env.modulePath}`);
  return Object.assign({}, env, { nginxVersion: nv.version, njsVersion: jv.version });
}

function readEnv() {
  try {
    const env = JSON.parse(fs.readFileSync(ENV_PATH, 'utf8'));
    if (env.schema !== ENV_SCHEMA) return null;
    const files = [env.nginxArgv[0], env.nginxArgv[env.nginxArgv.length - 1], env.njsArgv[env.njsArgv.length - 1], env.modulePath];
    if (!files.every((f) => typeof f === 'string' && fs.existsSync(f))) return null;
    if (env.root && env.root !== ROOT_DIR) return null; // the checkout moved: rewrite absolute paths
    return env;
  } catch {
    return null;
  }
}

function writeEnvAtomic(env) {
  const tmp = `${ENV_PATH}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(env, null, 2) + '\n');
  fs.renameSync(tmp, ENV_PATH);
}

function download(log) {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`no system nginx >= ${MIN_NGINX.join('.')} with njs >= ${MIN_NJS.join('.')}, and the Debian download only supports linux x64 (this is ${process.platform} ${process.arch}); install nginx + njs yourself`);
  }
  if (!which('apt-get') || !which('dpkg-deb')) {
    fail(`no system nginx >= ${MIN_NGINX.join('.')} with njs >= ${MIN_NJS.join('.')}, and apt-get/dpkg-deb are not available to download Debian's; install nginx + the njs module + the njs CLI yourself`);
  }
  const stage = fs.mkdtempSync(path.join(CACHE_DIR, 'stage-'));
  try {
    const { root, packages } = downloadDebianPackages({ stage, suite: DEBIAN_SUITE, packages: PACKAGES, log, relativeTo: REPO_ROOT });

    // Check in the stage with stage paths, then move into place; env.json is written after.
    const staged = envFor(root, packages);
    verifyClosure(staged);
    verify(staged);
    fs.rmSync(ROOT_DIR, { recursive: true, force: true });
    fs.renameSync(root, ROOT_DIR);
    return envFor(ROOT_DIR, packages);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * Make sure nginx + njs are available and return the env.json object.
 * @param {{force?: boolean, allowSystem?: boolean, quiet?: boolean}} [options]
 */
export async function ensureNginx(options = {}) {
  const force = Boolean(options.force);
  const allowSystem = options.allowSystem ?? process.env.LLMB_NGINX_SYSTEM !== '0';
  const log = options.quiet ? () => {} : (msg) => process.stderr.write(`fetch-nginx: ${msg}\n`);

  if (!force) {
    const cached = readEnv();
    if (cached) return writeRunnables(verify(cached));
  }
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const release = acquireDirLock(LOCK_DIR, log, 'fetch-nginx');
  try {
    // Another process may have finished while this one waited for the lock.
    if (!force) {
      const cached = readEnv();
      if (cached) return writeRunnables(verify(cached));
    }
    // Stages of runs that were killed mid-download (only the lock holder stages).
    for (const name of fs.readdirSync(CACHE_DIR)) {
      if (name.startsWith('stage-')) fs.rmSync(path.join(CACHE_DIR, name), { recursive: true, force: true });
    }
    let env = null;
    if (allowSystem) env = trySystem(log);
    if (!env) {
      // A checkout that moved keeps a valid root: rewrite env.json without the network.
      const moved = !force && fs.existsSync(path.join(ROOT_DIR, 'usr', 'sbin', 'nginx')) ? reuseRoot(log) : null;
      env = moved ?? download(log);
    }
    env = verify(env);
    if (env.source !== 'system') {
      const smoke = smokeTestModule(env.nginxArgv, env.modulePath);
      if (!smoke.ok) fail(smoke.detail);
    }
    writeEnvAtomic(env);
    return writeRunnables(env);
  } finally {
    release();
  }
}

export const NGINX_WRAPPER = path.join(CACHE_DIR, 'bin', 'nginx');
export const MODULE_LINK = path.join(CACHE_DIR, 'modules', 'ngx_http_js_module.so');

/** A shell word: single-quoted, with embedded single quotes closed and reopened. */
function shellWord(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

/**
 * .cache/nginx/bin/nginx and .cache/nginx/modules/ngx_http_js_module.so (see the header): rewritten
 * only when they differ, so concurrent runs (spec workers) leave them alone. Returns `env`.
 */
function writeRunnables(env) {
  const script = '#!/bin/sh\n# Written by build/fetch-nginx.js: the nginx the specs use (' + env.source + ').\nexec ' + env.nginxArgv.map(shellWord).join(' ') + ' "$@"\n';
  let current = null;
  try {
    current = fs.readFileSync(NGINX_WRAPPER, 'utf8');
  } catch {
    // not written yet
  }
  if (current !== script) {
    fs.mkdirSync(path.dirname(NGINX_WRAPPER), { recursive: true });
    const tmp = `${NGINX_WRAPPER}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, script, { mode: 0o755 });
    fs.renameSync(tmp, NGINX_WRAPPER);
  }
  let target = null;
  try {
    target = fs.readlinkSync(MODULE_LINK);
  } catch {
    // not linked yet
  }
  if (target !== env.modulePath) {
    fs.mkdirSync(path.dirname(MODULE_LINK), { recursive: true });
    const tmp = `${MODULE_LINK}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(env.modulePath, tmp);
    fs.renameSync(tmp, MODULE_LINK);
  }
  return env;
}

function reuseRoot(log) {
  let packages = [];
  try {
    const old = JSON.parse(fs.readFileSync(ENV_PATH, 'utf8'));
    if (Array.isArray(old.packages)) packages = old.packages;
  } catch {
    // no or unreadable env.json
  }
  // Reuse only a root known to hold the current package set (PACKAGES may have grown).
  if (!PACKAGES.every((name) => packages.some((p) => p && p.name === name))) return null;
  try {
    const env = envFor(ROOT_DIR, packages);
    verifyClosure(env);
    log('reusing the unpacked packages in .cache/nginx/root');
    return env;
  } catch {
    return null;
  }
}

function summary(env) {
  const where = env.source === 'system' ? env.nginxArgv[0] : path.relative(REPO_ROOT, env.root);
  return `nginx ${env.nginxVersion} + njs ${env.njsVersion} (${env.source}: ${where}) → ${path.relative(REPO_ROOT, ENV_PATH)}`;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = new Set(process.argv.slice(2));
  const started = Date.now();
  ensureNginx({ force: args.has('--force'), allowSystem: args.has('--no-system') ? false : undefined, quiet: args.has('--quiet') })
    .then((env) => {
      process.stdout.write(`fetch-nginx: ${summary(env)} in ${Date.now() - started} ms\n`);
    })
    .catch((e) => {
      process.stderr.write(`fetch-nginx: FAILED: ${e instanceof ProvisionError ? e.message : e.stack}\n`);
      process.exitCode = 1;
    });
}
