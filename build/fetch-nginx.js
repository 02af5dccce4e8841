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
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
const DEB_ARCH = 'amd64';
const MULTIARCH = 'x86_64-linux-gnu';
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
// How long a second process waits for the first one's download before giving up.
const LOCK_WAIT_MS = 10 * 60 * 1000;
// A lock without a pid file this old was left by a process killed right after mkdir.
const LOCK_PIDLESS_STALE_MS = 10 * 1000;
// apt-get update + download of ~9 MB; generous for slow mirrors, bounded so CI never hangs.
const APT_TIMEOUT_MS = 5 * 60 * 1000;

class ProvisionError extends Error {}

function fail(message) {
  throw new ProvisionError(message);
}

function run(argv, opts = {}) {
  const r = spawnSync(argv[0], argv.slice(1), {
    encoding: 'utf8',
    timeout: opts.timeout ?? 20_000,
    killSignal: 'SIGKILL',
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return {
    code: r.error ? -1 : r.status,
    signal: r.signal,
    error: r.error,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
  };
}

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

function which(cmd) {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
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
  const loader = env.nginxArgv[0];
  const targets = [env.nginxArgv[env.nginxArgv.length - 1], env.njsArgv[env.njsArgv.length - 1], env.modulePath];
  if (env.wrkArgv) targets.push(env.wrkArgv[env.wrkArgv.length - 1]);
  const problems = [];
  for (const t of targets) {
    const r = run([loader, '--library-path', env.libraryPath, '--list', t]);
    if (r.code !== 0) {
      problems.push(`${t}: ${r.stderr.trim() || r.stdout.trim()}`);
      continue;
    }
    for (const line of r.stdout.split('\n')) {
      const m = /^\s*(\S+) => (.+?) \(0x/.exec(line);
      if (!m) {
        if (/not found/.test(line)) problems.push(`${path.basename(t)}: ${line.trim()}`);
        continue;
      }
      const resolved = path.resolve(m[2]);
      if (m[1].startsWith('/lib64/ld-linux') || resolved.startsWith(env.root + path.sep)) continue;
      problems.push(`${path.basename(t)} needs ${m[1]}, resolved outside the prefix to ${m[2]}`);
    }
  }
  if (problems.length) {
    fail(`the downloaded package set is incomplete (add the Debian package that ships the library to PACKAGES in build/fetch-nginx.js):\n  ${problems.join('\n  ')}`);
  }
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

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

const sleepBuf = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms) {
  Atomics.wait(sleepBuf, 0, 0, ms);
}

function lockAgeMs() {
  try {
    return Date.now() - fs.statSync(LOCK_DIR).mtimeMs;
  } catch {
    return 0;
  }
}

// mkdir is atomic: whoever creates .lock provisions; the others wait, then re-read env.json.
function acquireLock(log) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      fs.mkdirSync(LOCK_DIR);
      fs.writeFileSync(path.join(LOCK_DIR, 'pid'), String(process.pid));
      return () => fs.rmSync(LOCK_DIR, { recursive: true, force: true });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let owner = NaN;
    try {
      owner = Number(fs.readFileSync(path.join(LOCK_DIR, 'pid'), 'utf8'));
    } catch {
      // the owner is between mkdir and writing its pid, died there, or just released the lock
    }
    const known = Number.isInteger(owner) && owner > 0;
    if ((known && !pidAlive(owner)) || (!known && lockAgeMs() > LOCK_PIDLESS_STALE_MS)) {
      log(`removing stale lock${known ? ` of dead process ${owner}` : ''}`);
      fs.rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    const who = known ? `pid ${owner}` : 'pid unknown';
    if (Date.now() > deadline) fail(`timed out waiting for ${LOCK_DIR} (${who}); delete it if no fetch is running`);
    if (!announced) {
      log(`waiting for another fetch-nginx (${who}) to finish…`);
      announced = true;
    }
    sleepMs(200);
  }
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
    const apt = path.join(stage, 'apt');
    for (const d of ['lists/partial', 'cache/archives/partial', 'sourceparts', 'preferences.d', 'debs']) {
      fs.mkdirSync(path.join(apt, d), { recursive: true });
    }
    fs.writeFileSync(path.join(apt, 'status'), '');
    const keyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
    const signedBy = fs.existsSync(keyring) ? ` [signed-by=${keyring}]` : '';
    fs.writeFileSync(path.join(apt, 'sources.list'), `deb${signedBy} ${DEBIAN_MIRROR} ${DEBIAN_SUITE} main\n`);
    const conf = [
      `Dir::State::Lists "${path.join(apt, 'lists')}";`,
      `Dir::State::status "${path.join(apt, 'status')}";`,
      `Dir::Cache "${path.join(apt, 'cache')}";`,
      `Dir::Etc::sourcelist "${path.join(apt, 'sources.list')}";`,
      `Dir::Etc::sourceparts "${path.join(apt, 'sourceparts')}";`,
      `Dir::Etc::preferencesparts "${path.join(apt, 'preferences.d')}";`,
      `APT::Architecture "${DEB_ARCH}";`,
      `APT::Architectures { "${DEB_ARCH}"; };`,
      'Acquire::Languages "none";',
      'Acquire::Retries "3";',
      'Acquire::http::Timeout "30";',
      // As root apt drops to the _apt user, which may not be able to write into this checkout.
      process.getuid?.() === 0 ? 'APT::Sandbox::User "root";' : '',
      '',
    ].join('\n');
    const aptConf = path.join(apt, 'apt.conf');
    fs.writeFileSync(aptConf, conf);
    const env = Object.assign({}, process.env, { APT_CONFIG: aptConf, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' });

    log(`apt-get update (${DEBIAN_SUITE}, private lists in ${path.relative(REPO_ROOT, apt)})`);
    let r = run(['apt-get', '-q', 'update'], { env, timeout: APT_TIMEOUT_MS });
    if (r.code !== 0) fail(`apt-get update failed (exit ${r.code}${r.signal ? ', ' + r.signal : ''}):\n${r.stderr.trim() || r.stdout.trim()}`);
    // apt-get update exits 0 when an index could not be fetched (it only warns): check for one.
    if (!fs.readdirSync(path.join(apt, 'lists')).some((n) => n.includes('_Packages'))) {
      fail(`apt-get update could not fetch the ${DEBIAN_SUITE} package index from ${DEBIAN_MIRROR}:\n${(r.stdout + r.stderr).trim()}`);
    }

    log(`apt-get download ${PACKAGES.length} packages`);
    const debs = path.join(apt, 'debs');
    r = run(['apt-get', '-q', 'download', ...PACKAGES], { env, cwd: debs, timeout: APT_TIMEOUT_MS });
    if (r.code !== 0) fail(`apt-get download failed (exit ${r.code}${r.signal ? ', ' + r.signal : ''}):\n${r.stderr.trim() || r.stdout.trim()}`);

    const root = path.join(stage, 'root');
    fs.mkdirSync(root);
    const packages = [];
    for (const f of fs.readdirSync(debs).filter((n) => n.endsWith('.deb')).sort()) {
      const x = run(['dpkg-deb', '-x', path.join(debs, f), root], { timeout: 60_000 });
      if (x.code !== 0) fail(`dpkg-deb -x ${f} failed: ${x.stderr.trim()}`);
      const [name, version] = f.replace(/\.deb$/, '').split('_');
      packages.push({ name, version: decodeURIComponent(version) });
    }
    const missing = PACKAGES.filter((p) => !packages.some((q) => q.name === p));
    if (missing.length) fail(`apt-get download did not produce: ${missing.join(', ')}`);

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
  const release = acquireLock(log);
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
