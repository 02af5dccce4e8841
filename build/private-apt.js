// Shared by the provisioning scripts (fetch-nginx.js, fetch-redis.js): download Debian packages
// without root and without touching `/`, with apt-get pointed at a private configuration (lists,
// status and cache all in a stage folder), unpack them with `dpkg-deb -x`, check that every shared
// library the binaries need resolves inside the prefix, and a mkdir lock so concurrent runs (spec
// workers, two `npm test`s) download once.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEB_ARCH = 'amd64';
export const MULTIARCH = 'x86_64-linux-gnu';
// How long a second process waits for the first one's download before giving up.
const LOCK_WAIT_MS = 10 * 60 * 1000;
// A lock without a pid file this old was left by a process killed right after mkdir.
const LOCK_PIDLESS_STALE_MS = 10 * 1000;
// apt-get update + download of a few MB; generous for slow mirrors, bounded so CI never hangs.
const APT_TIMEOUT_MS = 5 * 60 * 1000;

export class ProvisionError extends Error {}

export function fail(message) {
  throw new ProvisionError(message);
}

export function run(argv, opts = {}) {
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

export function which(cmd) {
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

function lockAgeMs(lockDir) {
  try {
    return Date.now() - fs.statSync(lockDir).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * mkdir is atomic: whoever creates `lockDir` provisions; the others wait, then re-read their env.json.
 * Returns the release function. `what` names the script in the waiting message.
 */
export function acquireLock(lockDir, log, what) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      return () => fs.rmSync(lockDir, { recursive: true, force: true });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let owner = NaN;
    try {
      owner = Number(fs.readFileSync(path.join(lockDir, 'pid'), 'utf8'));
    } catch {
      // the owner is between mkdir and writing its pid, died there, or just released the lock
    }
    const known = Number.isInteger(owner) && owner > 0;
    if ((known && !pidAlive(owner)) || (!known && lockAgeMs(lockDir) > LOCK_PIDLESS_STALE_MS)) {
      log(`removing stale lock${known ? ` of dead process ${owner}` : ''}`);
      fs.rmSync(lockDir, { recursive: true, force: true });
      continue;
    }
    const who = known ? `pid ${owner}` : 'pid unknown';
    if (Date.now() > deadline) fail(`timed out waiting for ${lockDir} (${who}); delete it if no ${what} is running`);
    if (!announced) {
      log(`waiting for another ${what} (${who}) to finish…`);
      announced = true;
    }
    sleepMs(200);
  }
}

/**
 * apt-get update + apt-get download `packages` of Debian `suite` into `stage`/apt/debs with a private
 * configuration, then `dpkg-deb -x` each into `stage`/root. Returns { root, packages: [{name, version}] }.
 */
export function downloadDebianPackages({ stage, suite, packages: wanted, log, relativeTo }) {
  const apt = path.join(stage, 'apt');
  for (const d of ['lists/partial', 'cache/archives/partial', 'sourceparts', 'preferences.d', 'debs']) {
    fs.mkdirSync(path.join(apt, d), { recursive: true });
  }
  fs.writeFileSync(path.join(apt, 'status'), '');
  const keyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
  const signedBy = fs.existsSync(keyring) ? ` [signed-by=${keyring}]` : '';
  fs.writeFileSync(path.join(apt, 'sources.list'), `deb${signedBy} ${DEBIAN_MIRROR} ${suite} main\n`);
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

  log(`apt-get update (${suite}, private lists in ${path.relative(relativeTo, apt)})`);
  let r = run(['apt-get', '-q', 'update'], { env, timeout: APT_TIMEOUT_MS });
  if (r.code !== 0) fail(`apt-get update failed (exit ${r.code}${r.signal ? ', ' + r.signal : ''}):\n${r.stderr.trim() || r.stdout.trim()}`);
  // apt-get update exits 0 when an index could not be fetched (it only warns): check for one.
  if (!fs.readdirSync(path.join(apt, 'lists')).some((n) => n.includes('_Packages'))) {
    fail(`apt-get update could not fetch the ${suite} package index from ${DEBIAN_MIRROR}:\n${(r.stdout + r.stderr).trim()}`);
  }

  log(`apt-get download ${wanted.length} packages`);
  const debs = path.join(apt, 'debs');
  r = run(['apt-get', '-q', 'download', ...wanted], { env, cwd: debs, timeout: APT_TIMEOUT_MS });
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
  const missing = wanted.filter((p) => !packages.some((q) => q.name === p));
  if (missing.length) fail(`apt-get download did not produce: ${missing.join(', ')}`);
  return { root, packages };
}

/**
 * Every shared object `targets` need must come from `root`: the loader would otherwise fall back to
 * the host's (possibly older) libraries through /etc/ld.so.cache. `script` names the file whose
 * PACKAGES list to extend in the error.
 */
export function verifyClosure({ loader, libraryPath, root, targets, script }) {
  const problems = [];
  for (const t of targets) {
    const r = run([loader, '--library-path', libraryPath, '--list', t]);
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
      if (m[1].startsWith('/lib64/ld-linux') || resolved.startsWith(root + path.sep)) continue;
      problems.push(`${path.basename(t)} needs ${m[1]}, resolved outside the prefix to ${m[2]}`);
    }
  }
  if (problems.length) {
    fail(`the downloaded package set is incomplete (add the Debian package that ships the library to PACKAGES in ${script}):\n  ${problems.join('\n  ')}`);
  }
}
