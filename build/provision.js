// The flow the provisioning scripts share (fetch-nginx.js, fetch-redis.js, fetch-llama.js): use the
// cached env.json if it still describes a working install; else, under a lock so concurrent runs
// (spec workers, two `npm test`s) provision once, take the system's binary, or the unpacked Debian
// root of a checkout that moved, or download; verify; write env.json and the runnable wrappers.
// What differs per tool (how to find, verify and describe it) comes in as functions.
import fs from 'node:fs';
import path from 'node:path';
import { acquireLock, downloadDebianPackages, fail, which } from './private-apt.js';

/** Writes `text` to `file` atomically; a file that already holds exactly `text` is left alone (concurrent runs). */
export function writeAtomic(file, text, mode) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let current = null;
  try {
    current = fs.readFileSync(file, 'utf8');
  } catch {
    // not written yet
  }
  if (current === text) return;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, mode ? { mode } : undefined);
  fs.renameSync(tmp, file);
}

/** A shell word: single-quoted, with embedded single quotes closed and reopened. */
export function shellWord(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

/** A /bin/sh script at `file` that runs `argv` with the caller's arguments; `what` says who wrote it and why. */
export function writeWrapper(file, argv, what) {
  writeAtomic(file, `#!/bin/sh\n# Written by ${what}.\nexec ${argv.map(shellWord).join(' ')} "$@"\n`, 0o755);
}

/**
 * The packages a previous run recorded in `envPath`, when they include every one of `wanted` (the
 * list may have grown since): an unpacked root known to hold them can be reused. Null otherwise.
 */
export function recordedPackages(envPath, wanted) {
  let packages = [];
  try {
    const old = JSON.parse(fs.readFileSync(envPath, 'utf8'));
    if (Array.isArray(old.packages)) packages = old.packages;
  } catch {
    // no or unreadable env.json
  }
  return wanted.every((name) => packages.some((p) => p && p.name === name)) ? packages : null;
}

/**
 * The whole flow. `tool`:
 *   tag          names the script in log lines and the lock message
 *   cacheDir, envPath, lockDir
 *   readEnv()    the cached env.json if it still describes files that exist, else null
 *   trySystem()  an env for the system's binary, or null (only called when allowed)
 *   reuse()      an env for an unpacked root left by an earlier run (a moved checkout), or null
 *   download()   downloads, unpacks and checks; returns its env (throws a ProvisionError on failure)
 *   verify(env)  runs the binary; returns env with what it learned (throws on failure)
 *   finish(env)  writes the wrappers; returns env
 * `options`: { force, allowSystem, log }.
 */
export function provision(tool, options) {
  const { force, allowSystem, log } = options;
  if (!force) {
    const cached = tool.readEnv();
    if (cached) return tool.finish(cached);
  }
  fs.mkdirSync(tool.cacheDir, { recursive: true });
  const release = acquireLock(tool.lockDir, log, tool.tag);
  try {
    // Another process may have finished while this one waited for the lock.
    if (!force) {
      const cached = tool.readEnv();
      if (cached) return tool.finish(cached);
    }
    // Stages of runs that were killed mid-download (only the lock holder stages).
    for (const name of fs.readdirSync(tool.cacheDir)) {
      if (name.startsWith('stage-')) fs.rmSync(path.join(tool.cacheDir, name), { recursive: true, force: true });
    }
    let env = allowSystem ? tool.trySystem() : null;
    if (!env) env = (!force ? tool.reuse() : null) ?? tool.download();
    env = tool.verify(env);
    writeAtomic(tool.envPath, JSON.stringify(env, null, 2) + '\n');
    return tool.finish(env);
  } finally {
    release();
  }
}

/**
 * Downloads `packages` of Debian `suite` into a stage folder under `cacheDir`, `prepare`s the
 * unpacked root, `check`s it with stage paths (envFor(root, packages)), then moves it to `rootDir`
 * and returns envFor(rootDir, packages). `what` names the tool in the errors.
 */
export function stagedDownload({ cacheDir, rootDir, suite, packages: wanted, log, relativeTo, what, envFor, prepare, check }) {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`no ${what} on PATH, and the Debian download only supports linux x64 (this is ${process.platform} ${process.arch}); install ${what} yourself`);
  }
  if (!which('apt-get') || !which('dpkg-deb')) {
    fail(`no ${what} on PATH, and apt-get/dpkg-deb are not available to download Debian's; install ${what} yourself`);
  }
  const stage = fs.mkdtempSync(path.join(cacheDir, 'stage-'));
  try {
    const { root, packages } = downloadDebianPackages({ stage, suite, packages: wanted, log, relativeTo });
    if (prepare) prepare(root);
    // Check in the stage with stage paths, then move into place; env.json is written after.
    check(envFor(root, packages));
    fs.rmSync(rootDir, { recursive: true, force: true });
    fs.renameSync(root, rootDir);
    return envFor(rootDir, packages);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * A checkout that moved keeps a valid root: an env for it without the network, when `marker` (a
 * file of the root) exists, env.json recorded every one of `packages`, and `check` passes. Else null.
 */
export function reuseRecordedRoot({ rootDir, marker, envPath, packages: wanted, log, relativeTo, envFor, prepare, check }) {
  if (!fs.existsSync(path.join(rootDir, marker))) return null;
  const packages = recordedPackages(envPath, wanted);
  if (packages === null) return null;
  try {
    if (prepare) prepare(rootDir);
    const env = envFor(rootDir, packages);
    check(env);
    log(`reusing the unpacked packages in ${path.relative(relativeTo, rootDir)}`);
    return env;
  } catch {
    return null;
  }
}
