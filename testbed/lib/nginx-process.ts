// Runs the provisioned nginx (testbed/lib/nginx-env.ts) for integration specs, npm start and the
// benchmarks: a temporary prefix with temp/ and logs/, `nginx -t`, start in the foreground (daemon off: the master is our
// child, so we always know whom to kill), wait until the port accepts, reload with HUP (never
// USR2: the binary upgrade re-executes without the loader), and a stop() that always ends the
// master AND its workers. Every wait is bounded; instances still running when the test process
// exits are killed synchronously, so no nginx outlives a crashed spec.
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadNginxEnv } from './nginx-env';
import type { NginxGeneration } from './nginx-env';

const START_TIMEOUT_MS = 5_000;
const RELOAD_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;
const STDERR_LIMIT = 256 * 1024;

/** A free TCP port on 127.0.0.1 (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(500, () => done(false));
  });
}

/** Pids whose parent is `ppid` (Linux /proc). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses; ppid follows the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Every running instance, so the exit hook can end them if a spec never reached stop(). */
const running = new Set<NginxInstance>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const instance of running) instance.kill();
  });
}

export interface NginxPrefix {
  dir: string;
  /** Writes `text` to `name` inside the prefix; returns the absolute path. */
  write(name: string, text: string): string;
  remove(): void;
}

/** A temporary nginx prefix with the temp/ and logs/ folders the configs refer to. */
export function createPrefix(label = 'nginx'): NginxPrefix {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `llmb-${label}-`));
  // mkdtemp makes it 0700: run as root, nginx's workers (user nobody) could not reach temp/ and
  // a request body larger than client_body_buffer_size would fail with 500 (found by npm start).
  fs.chmodSync(dir, 0o755);
  fs.mkdirSync(path.join(dir, 'temp'));
  fs.mkdirSync(path.join(dir, 'logs'));
  return {
    dir,
    write(name, text) {
      const file = path.join(dir, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      return file;
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface NginxTestResult {
  ok: boolean;
  /** nginx's own words (stderr). */
  output: string;
}

/** `nginx -t` on the config file `confPath` with prefix `prefixDir`, by the nginx of `generation` (default: trixie). */
export function testConfig(prefixDir: string, confPath: string, generation?: NginxGeneration): Promise<NginxTestResult> {
  const env = loadNginxEnv(generation);
  return new Promise((resolve) => {
    execFile(
      env.nginxArgv[0],
      env.nginxArgv.slice(1).concat(['-e', 'stderr', '-p', prefixDir, '-c', confPath, '-t']),
      { timeout: 10_000, killSignal: 'SIGKILL', encoding: 'utf8' },
      (error, _stdout, stderr) => resolve({ ok: !error, output: stderr }),
    );
  });
}

export interface NginxInstance {
  readonly prefix: NginxPrefix;
  readonly confPath: string;
  readonly port: number;
  readonly pid: number;
  /** http://127.0.0.1:<port><path> */
  url(pathAndQuery: string): string;
  /** The error log so far (nginx runs with -e stderr). */
  stderr(): string;
  workerPids(): number[];
  /** Optionally rewrites the config, sends HUP and waits until a new set of workers serves and the old one is gone. */
  reload(newConf?: string): Promise<void>;
  /** Ends master and workers (TERM, then KILL after a bound); idempotent; removes nothing. */
  stop(): Promise<void>;
  /** Synchronous SIGKILL of master and workers (exit hook). */
  kill(): void;
}

export interface StartOptions {
  /** nginx.conf text (written to <prefix>/nginx.conf). */
  conf: string;
  /** The port the conf listens on (awaited). */
  port: number;
  prefix: NginxPrefix;
  /** Whose nginx (default: trixie). */
  generation?: NginxGeneration;
}

/** Starts nginx in the foreground; resolves once `port` accepts connections. */
export async function startNginx(options: StartOptions): Promise<NginxInstance> {
  const env = loadNginxEnv(options.generation);
  const prefix = options.prefix;
  const confPath = prefix.write('nginx.conf', options.conf);
  const child: ChildProcess = spawn(
    env.nginxArgv[0],
    env.nginxArgv.slice(1).concat(['-e', 'stderr', '-p', prefix.dir, '-c', confPath, '-g', 'daemon off;']),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
    if (stderr.length > STDERR_LIMIT) stderr = stderr.slice(stderr.length - STDERR_LIMIT);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  const pid = child.pid ?? -1;
  let knownWorkers: number[] = [];

  const instance: NginxInstance = {
    prefix,
    confPath,
    port: options.port,
    pid,
    url: (p) => `http://127.0.0.1:${options.port}${p}`,
    stderr: () => stderr,
    workerPids() {
      if (exited) return [];
      knownWorkers = childPids(pid);
      return knownWorkers;
    },
    async reload(newConf?: string) {
      if (newConf !== undefined) prefix.write('nginx.conf', newConf);
      const old = instance.workerPids();
      const logBefore = stderr.length;
      process.kill(pid, 'SIGHUP');
      const deadline = Date.now() + RELOAD_TIMEOUT_MS;
      while (Date.now() < deadline) {
        const now = instance.workerPids();
        const fresh = now.filter((p) => !old.includes(p));
        const oldLeft = old.filter((p) => alive(p) && now.includes(p));
        if (fresh.length > 0 && oldLeft.length === 0) return;
        if (/\[emerg\]/.test(stderr.slice(logBefore))) throw new Error(`nginx refused the reload:\n${stderr.slice(logBefore)}`);
        await sleep(25);
      }
      throw new Error(`nginx reload did not complete in ${RELOAD_TIMEOUT_MS} ms:\n${stderr.slice(logBefore)}`);
    },
    async stop() {
      if (!running.has(instance)) return;
      const workers = instance.workerPids();
      if (!exited) killQuietly(pid, 'SIGTERM');
      await Promise.race([exit, sleep(STOP_TIMEOUT_MS)]);
      if (!exited) killQuietly(pid, 'SIGKILL');
      for (const w of workers.concat(knownWorkers)) if (alive(w)) killQuietly(w, 'SIGKILL');
      await Promise.race([exit, sleep(STOP_TIMEOUT_MS)]);
      running.delete(instance);
    },
    kill() {
      const workers = exited ? knownWorkers : childPids(pid).concat(knownWorkers);
      if (!exited) killQuietly(pid, 'SIGKILL');
      for (const w of workers) killQuietly(w, 'SIGKILL');
      running.delete(instance);
    },
  };
  installExitHook();
  running.add(instance);

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) break;
    if ((await canConnect(options.port)) && instance.workerPids().length > 0) return instance;
    await sleep(20);
  }
  await instance.stop();
  throw new Error(`nginx did not start listening on ${options.port} within ${START_TIMEOUT_MS} ms (exited: ${exited}):\n${stderr}`);
}
