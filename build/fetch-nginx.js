#!/usr/bin/env node
// Provision nginx with the njs HTTP module and the `njs` command-line interpreter, without
// installing anything into `/`, in one of two GENERATIONS (each its own folder, env.json, lock):
//
//   trixie (the default)  Debian 13's nginx 1.26 + njs 0.8.9, njs engine only: what every spec,
//                         `npm start` and the benchmarks run against.    → .cache/nginx/
//   forky                 Debian testing's nginx 1.30 + njs 1.0 with QuickJS (libqjs0): the second
//                         nginx the specs run the module in (`js_engine qjs`); testing moves, so no
//                         versions are pinned, only minimums.            → .cache/nginx-forky/
//
// 1. If <cache>/env.json describes a working install, use it (no network, ~20 ms).
// 2. Else (default generation only), if the system's nginx/njs are new enough and `load_module
//    ngx_http_js_module.so` with a `js_shared_dict_zone` passes `nginx -t`, describe those.
// 3. Else download the generation's Debian packages with apt-get pointed at a private configuration
//    (lists, status and cache all under <cache>), unpack them with `dpkg-deb -x` and run the
//    binaries through the suite's own dynamic loader (see shared/GATEWAY-FACTS.md).
//
// Also writes what a person runs by hand (the README's NGINX walkthrough):
//   <cache>/bin/nginx                          runs this nginx with any arguments (loader included)
//   <cache>/modules/ngx_http_js_module.so      a link to its njs module, for load_module
//
// Writes <cache>/env.json:
//   { generation, nginxArgv, njsArgv, njsQjsArgv (null without QuickJS), wrkArgv (null when unavailable),
//     modulePath, engines, nginxVersion, njsVersion, source, libraryPath, root, packages }
// A spawn of `[...nginxArgv, '-p', prefix, '-c', conf]` runs nginx; `[...njsArgv, '-p', dir, file]` runs
// njs (njs engine, script mode: `import` works); `[...njsQjsArgv, '-p', dir, file]` runs `file` as a
// module under QuickJS. `engines` lists the `js_engine` values `nginx -t` accepted with the module
// loaded and a js_shared_dict_zone declared: ['njs'] or ['njs', 'qjs'].
//
// Usage: node build/fetch-nginx.js [--generation trixie|forky] [--force] [--no-system] [--quiet] [--optional]
//          --optional: a failure prints one line and exits 0 (npm test's pretest provisions forky so)
//        import { ensureNginx } from './build/fetch-nginx.js'
//        ensureNginx() (trixie) or ensureNginx({ generation: 'forky' })
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireLock as acquireDirLock, downloadDebianPackages, fail, MULTIARCH, ProvisionError, run, verifyClosure as verifyLibraryClosure, which } from './private-apt.js';
import { recordedPackages, writeWrapper } from './provision.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Bumped when the env.json shape or a package set changes: older caches are rebuilt (from the
// unpacked root when it still holds every package: no network). 3: generation, engines, njsQjsArgv.
const ENV_SCHEMA = 3;
const LOADER_NAME = 'ld-linux-x86-64.so.2';
export const DEFAULT_GENERATION = 'trixie';

// Each list is the runtime closure of nginx + ngx_http_js_module.so (first line), of the njs CLI
// (second) and of wrk (third: the HTTP load generator the gateway benchmark drives nginx with, 43 KB
// + LuaJIT). Not apt's full dependency closure: that drags in debconf, iproute2, libnginx-mod-stream
// and ~30 more packages that the binaries never load. verifyClosure() checks that every shared
// library the four ELF files need resolves inside the prefix, so a missing one fails loudly.
export const PACKAGES = [
  'nginx', 'nginx-common', 'libnginx-mod-http-js', 'libc6', 'libcrypt1', 'libpcre2-8-0', 'libssl3t64',
  'libzstd1', 'zlib1g', 'libxml2', 'liblzma5', 'libgcc-s1',
  'njs', 'libedit2', 'libbsd0', 'libmd0', 'libtinfo6',
  'wrk', 'libluajit-5.1-2',
];
// forky against trixie (checked with `ld.so --list` on all four files, 2026-12): the module links
// libxml2.so.16 (package libxml2-16, which no longer needs liblzma5) and libqjs.so.0 (libqjs0, the
// QuickJS engine, also linked by the njs CLI); libgcc-s1 is wrk's only.
export const FORKY_PACKAGES = [
  'nginx', 'nginx-common', 'libnginx-mod-http-js', 'libqjs0', 'libc6', 'libcrypt1', 'libpcre2-8-0',
  'libssl3t64', 'libzstd1', 'zlib1g', 'libxml2-16',
  'njs', 'libedit2', 'libbsd0', 'libmd0', 'libtinfo6',
  'wrk', 'libluajit-5.1-2', 'libgcc-s1',
];

/**
 * The generations this script provisions. `dir` is the folder under .cache; `minNginx`/`minNjs` are
 * the oldest versions accepted; `needsQjs` makes a module without `js_engine qjs` (or an njs CLI
 * without `-n QuickJS`) a failure; `system` lets step 2 (the system's nginx) satisfy the generation.
 */
export const GENERATIONS = {
  trixie: {
    suite: 'trixie',
    dir: 'nginx',
    packages: PACKAGES,
    // js_shared_dict_zone needs njs 0.8.0; nginx 1.25 is the oldest we test against.
    minNginx: [1, 25, 0],
    minNjs: [0, 8, 0],
    needsQjs: false,
    system: true,
  },
  forky: {
    suite: 'forky',
    dir: 'nginx-forky',
    packages: FORKY_PACKAGES,
    // njs 1.0 is the release that recommends QuickJS; what forky had when this was written: 1.30.6 / 1.0.2.
    minNginx: [1, 29, 0],
    minNjs: [1, 0, 0],
    needsQjs: true,
    // Never the system's nginx: this generation exists to be a SECOND, known nginx + njs pair next to
    // the default one. A system nginx new enough for it is already what the default generation uses,
    // so accepting it here would run "both" generations on the same binaries.
    system: false,
  },
};

/** The generation's settings plus its paths under .cache (throws a ProvisionError for an unknown name). */
export function generationConfig(name = DEFAULT_GENERATION) {
  if (!Object.prototype.hasOwnProperty.call(GENERATIONS, name)) {
    fail(`unknown nginx generation ${JSON.stringify(name)} (known: ${Object.keys(GENERATIONS).join(', ')})`);
  }
  const cacheDir = path.join(REPO_ROOT, '.cache', GENERATIONS[name].dir);
  return Object.assign({ name }, GENERATIONS[name], {
    cacheDir,
    envPath: path.join(cacheDir, 'env.json'),
    rootDir: path.join(cacheDir, 'root'),
    lockDir: path.join(cacheDir, '.lock'),
    wrapper: path.join(cacheDir, 'bin', 'nginx'),
    moduleLink: path.join(cacheDir, 'modules', 'ngx_http_js_module.so'),
  });
}

const DEFAULT = generationConfig(DEFAULT_GENERATION);
export const CACHE_DIR = DEFAULT.cacheDir;
export const ENV_PATH = DEFAULT.envPath;
export const NGINX_WRAPPER = DEFAULT.wrapper;
export const MODULE_LINK = DEFAULT.moduleLink;

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
// `engine` adds `js_engine <engine>;` (njs >= 0.8.6; 'qjs' only in builds with QuickJS).
function smokeTestModule(nginxArgv, modulePath, engine) {
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
      engine ? `  js_engine ${engine};` : '',
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
      return { ok: false, detail: `nginx -t with ngx_http_js_module${engine ? ` and js_engine ${engine}` : ''} failed (exit ${r.code}):\n${r.stderr.trim()}` };
    }
    return { ok: true };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The `js_engine` values this module accepts. An njs older than 0.8.6 has no js_engine directive
 * (every value fails): it runs the njs engine only.
 */
function probeEngines(nginxArgv, modulePath) {
  const engines = ['njs', 'qjs'].filter((engine) => smokeTestModule(nginxArgv, modulePath, engine).ok);
  return engines.length ? engines : ['njs'];
}

/**
 * The argv prefix that runs a file as an ES module under QuickJS (`njs -n QuickJS -m`), or null when
 * this njs CLI has no QuickJS. Checked by running a module that imports another one from `-p`.
 */
function probeNjsQjsArgv(njsArgv) {
  const argv = [...njsArgv, '-n', 'QuickJS', '-m'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-njs-probe-'));
  try {
    fs.writeFileSync(path.join(dir, 'lib.js'), 'function hello() { return "hello"; }\nexport default { hello };\n');
    fs.writeFileSync(path.join(dir, 'main.js'), 'import lib from "lib.js";\nconsole.log(lib.hello() + " from " + njs.engine);\n');
    const r = run([...argv, '-p', dir, path.join(dir, 'main.js')]);
    return r.code === 0 && r.stdout.trim() === 'hello from QuickJS' ? argv : null;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function trySystem(gen, log) {
  const nginx = which('nginx');
  const njs = which('njs');
  if (!nginx || !njs) {
    log(`system: ${nginx ? '' : 'no nginx '}${njs ? '' : 'no njs '}on PATH`);
    return null;
  }
  const nv = nginxVersionOf([nginx]);
  const jv = njsVersionOf([njs]);
  if (!nv.ok || !jv.ok) return null;
  if (!versionAtLeast(parseVersion(nv.version), gen.minNginx) || !versionAtLeast(parseVersion(jv.version), gen.minNjs)) {
    log(`system: nginx ${nv.version} / njs ${jv.version} too old (need nginx >= ${gen.minNginx.join('.')}, njs >= ${gen.minNjs.join('.')})`);
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
    generation: gen.name,
    source: 'system',
    nginxArgv: [nginx],
    njsArgv: [njs],
    njsQjsArgv: null,
    // The system route does not install anything: wrk is used when it is on PATH.
    wrkArgv: which('wrk') ? [which('wrk')] : null,
    modulePath,
    engines: null,
    nginxVersion: nv.version,
    njsVersion: jv.version,
    libraryPath: null,
    root: null,
    packages: [],
  };
}

function envFor(gen, root, packages) {
  const libdir = path.join(root, 'usr', 'lib', MULTIARCH);
  const loader = path.join(libdir, LOADER_NAME);
  return {
    schema: ENV_SCHEMA,
    generation: gen.name,
    source: `debian-${gen.suite}`,
    nginxArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'sbin', 'nginx')],
    njsArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'bin', 'njs')],
    njsQjsArgv: null,
    wrkArgv: [loader, '--library-path', libdir, path.join(root, 'usr', 'bin', 'wrk')],
    modulePath: path.join(root, 'usr', 'lib', 'nginx', 'modules', 'ngx_http_js_module.so'),
    engines: null,
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

function verify(gen, env) {
  const nv = nginxVersionOf(env.nginxArgv);
  if (!nv.ok) fail(`nginx does not run: ${nv.detail}`);
  const jv = njsVersionOf(env.njsArgv);
  if (!jv.ok) fail(`njs does not run: ${jv.detail}`);
  if (!versionAtLeast(parseVersion(nv.version), gen.minNginx)) fail(`nginx ${nv.version} < ${gen.minNginx.join('.')} (${gen.name})`);
  if (!versionAtLeast(parseVersion(jv.version), gen.minNjs)) fail(`njs ${jv.version} < ${gen.minNjs.join('.')} (${gen.name})`);
  if (!fs.existsSync(env.modulePath)) fail(`missing ${env.modulePath}`);
  return Object.assign({}, env, { nginxVersion: nv.version, njsVersion: jv.version });
}

/** What the module and the CLI run: the engines `nginx -t` accepts and the QuickJS argv of the njs CLI. */
function probeCapabilities(gen, env) {
  const engines = probeEngines(env.nginxArgv, env.modulePath);
  const njsQjsArgv = probeNjsQjsArgv(env.njsArgv);
  if (gen.needsQjs && !engines.includes('qjs')) {
    fail(`the ${gen.name} njs module ${env.njsVersion} has no QuickJS engine:\n${smokeTestModule(env.nginxArgv, env.modulePath, 'qjs').detail}`);
  }
  if (gen.needsQjs && !njsQjsArgv) fail(`the ${gen.name} njs CLI ${env.njsVersion} cannot run a module under QuickJS (\`njs -n QuickJS -m\`)`);
  return Object.assign({}, env, { engines, njsQjsArgv });
}

function readEnv(gen) {
  try {
    const env = JSON.parse(fs.readFileSync(gen.envPath, 'utf8'));
    if (env.schema !== ENV_SCHEMA || env.generation !== gen.name) return null;
    const files = [env.nginxArgv[0], env.nginxArgv[env.nginxArgv.length - 1], env.njsArgv[env.njsArgv.length - 1], env.modulePath];
    if (!files.every((f) => typeof f === 'string' && fs.existsSync(f))) return null;
    if (env.root && env.root !== gen.rootDir) return null; // the checkout moved: rewrite absolute paths
    return env;
  } catch {
    return null;
  }
}

function writeEnvAtomic(gen, env) {
  const tmp = `${gen.envPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(env, null, 2) + '\n');
  fs.renameSync(tmp, gen.envPath);
}

function diskBytes(dir) {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += diskBytes(p);
    else if (entry.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function download(gen, log) {
  const wanted = gen.system
    ? `no system nginx >= ${gen.minNginx.join('.')} with njs >= ${gen.minNjs.join('.')}, and`
    : `nginx ${gen.name} comes from Debian ${gen.suite} only, but`;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`${wanted} the Debian download only supports linux x64 (this is ${process.platform} ${process.arch}); install nginx + njs yourself`);
  }
  if (!which('apt-get') || !which('dpkg-deb')) {
    fail(`${wanted} apt-get/dpkg-deb are not available to download Debian's; install nginx + the njs module + the njs CLI yourself`);
  }
  const stage = fs.mkdtempSync(path.join(gen.cacheDir, 'stage-'));
  try {
    const started = Date.now();
    const { root, packages } = downloadDebianPackages({ stage, suite: gen.suite, packages: gen.packages, log, relativeTo: REPO_ROOT });
    log(`${packages.length} packages: ${mb(diskBytes(path.join(stage, 'apt', 'debs')))} downloaded, ${mb(diskBytes(root))} unpacked in ${Date.now() - started} ms`);

    // Check in the stage with stage paths, then move into place; env.json is written after.
    const staged = envFor(gen, root, packages);
    verifyClosure(staged);
    verify(gen, staged);
    fs.rmSync(gen.rootDir, { recursive: true, force: true });
    fs.renameSync(root, gen.rootDir);
    return envFor(gen, gen.rootDir, packages);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * Make sure nginx + njs of `generation` (default 'trixie') are available and return its env.json object.
 * @param {{generation?: 'trixie' | 'forky', force?: boolean, allowSystem?: boolean, quiet?: boolean}} [options]
 */
export async function ensureNginx(options = {}) {
  const gen = generationConfig(options.generation ?? DEFAULT_GENERATION);
  const force = Boolean(options.force);
  const allowSystem = gen.system && (options.allowSystem ?? process.env.LLMB_NGINX_SYSTEM !== '0');
  const tag = gen.name === DEFAULT_GENERATION ? 'fetch-nginx' : `fetch-nginx ${gen.name}`;
  const log = options.quiet ? () => {} : (msg) => process.stderr.write(`${tag}: ${msg}\n`);

  if (!force) {
    const cached = readEnv(gen);
    if (cached) return writeRunnables(gen, verify(gen, cached));
  }
  fs.mkdirSync(gen.cacheDir, { recursive: true });
  const release = acquireDirLock(gen.lockDir, log, tag);
  try {
    // Another process may have finished while this one waited for the lock.
    if (!force) {
      const cached = readEnv(gen);
      if (cached) return writeRunnables(gen, verify(gen, cached));
    }
    // Stages of runs that were killed mid-download (only the lock holder stages).
    for (const name of fs.readdirSync(gen.cacheDir)) {
      if (name.startsWith('stage-')) fs.rmSync(path.join(gen.cacheDir, name), { recursive: true, force: true });
    }
    let env = null;
    if (allowSystem) env = trySystem(gen, log);
    if (!env) {
      // A checkout that moved keeps a valid root: rewrite env.json without the network.
      const moved = !force && fs.existsSync(path.join(gen.rootDir, 'usr', 'sbin', 'nginx')) ? reuseRoot(gen, log) : null;
      env = moved ?? download(gen, log);
    }
    env = verify(gen, env);
    if (env.source !== 'system') {
      const smoke = smokeTestModule(env.nginxArgv, env.modulePath);
      if (!smoke.ok) fail(smoke.detail);
    }
    env = probeCapabilities(gen, env);
    writeEnvAtomic(gen, env);
    return writeRunnables(gen, env);
  } finally {
    release();
  }
}

/**
 * <cache>/bin/nginx and <cache>/modules/ngx_http_js_module.so (see the header): rewritten only when
 * they differ, so concurrent runs (spec workers) leave them alone. Returns `env`.
 */
function writeRunnables(gen, env) {
  writeWrapper(gen.wrapper, env.nginxArgv, `build/fetch-nginx.js: the nginx the specs use (${env.source})`);
  let target = null;
  try {
    target = fs.readlinkSync(gen.moduleLink);
  } catch {
    // not linked yet
  }
  if (target !== env.modulePath) {
    fs.mkdirSync(path.dirname(gen.moduleLink), { recursive: true });
    const tmp = `${gen.moduleLink}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(env.modulePath, tmp);
    fs.renameSync(tmp, gen.moduleLink);
  }
  return env;
}

function reuseRoot(gen, log) {
  // Reuse only a root known to hold the current package set (the list may have grown).
  const packages = recordedPackages(gen.envPath, gen.packages);
  if (packages === null) return null;
  try {
    const env = envFor(gen, gen.rootDir, packages);
    verifyClosure(env);
    log(`reusing the unpacked packages in ${path.relative(REPO_ROOT, gen.rootDir)}`);
    return env;
  } catch {
    return null;
  }
}

function summary(env) {
  const gen = generationConfig(env.generation);
  const where = env.source === 'system' ? env.nginxArgv[0] : path.relative(REPO_ROOT, env.root);
  return `nginx ${env.nginxVersion} + njs ${env.njsVersion}, engines ${env.engines.join(' ')} (${env.source}: ${where}) → ${path.relative(REPO_ROOT, gen.envPath)}`;
}

/**
 * The command line: `--generation NAME` (or `--generation=NAME`), `--force`, `--no-system`, `--quiet`,
 * `--optional`. Throws a ProvisionError for anything else.
 */
export function parseArgs(argv) {
  const options = { generation: DEFAULT_GENERATION, force: false, allowSystem: undefined, quiet: false, optional: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--force') options.force = true;
    else if (arg === '--no-system') options.allowSystem = false;
    else if (arg === '--quiet') options.quiet = true;
    else if (arg === '--optional') options.optional = true;
    else if (arg === '--generation' || arg.startsWith('--generation=')) {
      const value = arg === '--generation' ? argv[++i] : arg.slice('--generation='.length);
      if (value === undefined) fail('--generation needs a value');
      options.generation = generationConfig(value).name;
    } else {
      fail(`unknown argument ${JSON.stringify(arg)} (usage: node build/fetch-nginx.js [--generation ${Object.keys(GENERATIONS).join('|')}] [--force] [--no-system] [--quiet] [--optional])`);
    }
  }
  return options;
}

/** A multi-line failure as one line: its headline, and apt's first E: (else W:, else the next) line when the headline ends in ':'. */
export function oneLine(message) {
  const lines = message.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  if (lines.length === 0) return 'unknown error';
  if (!lines[0].endsWith(':') || lines.length === 1) return lines[0];
  // apt's E: and W: lines carry the cause on one line ("W: Failed to fetch URL  Could not connect to ...").
  const rest = lines.slice(1);
  const detail = rest.find((line) => line.startsWith('E:')) ?? rest.find((line) => line.startsWith('W:')) ?? rest[0];
  return `${lines[0]} ${detail}`;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const started = Date.now();
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`fetch-nginx: ${e.message}\n`);
    process.exit(2);
  }
  ensureNginx(options)
    .then((env) => {
      process.stdout.write(`fetch-nginx: ${summary(env)} in ${Date.now() - started} ms\n`);
    })
    .catch((e) => {
      const message = e instanceof ProvisionError ? e.message : e.stack;
      if (options.optional) {
        // One line: the specs that need this generation skip and say so; everything else runs.
        process.stderr.write(`fetch-nginx: nginx ${options.generation} NOT provisioned, specs that need it will skip: ${oneLine(String(message))}\n`);
        return;
      }
      process.stderr.write(`fetch-nginx: FAILED: ${message}\n`);
      process.exitCode = 1;
    });
}
