// Kong's side of the plugin-server protocol, played against the REAL kong-js-pluginserver
// (kong-pdk 0.6.0). Kong itself cannot run here, but the plugin server is exactly the process
// Kong starts, so driving it over its unix socket the way Kong's
// kong/runloop/plugin_servers/rpc/mp_rpc.lua does tests the plugin where it will really run.
//
// Layers, each usable alone:
//   startPluginServer   spawns the server on a copy of a plugins directory, in a temp prefix
//   KongRpc             one MessagePack-RPC connection, one call at a time (a Kong pooled connection)
//   KongSide            instances and phases: HandleEvent, then answer each PDK call with Step/StepError
//   kongRequest         one fake request through "Kong": access phase, a REAL HTTP request to the
//                       target the plugin chose (127.0.0.1 only), then the log phase with
//                       kong.log.serialize() in Kong 3.x's shape
//   createFakeRequestState + fakePdkHandlers
//                       the PDK answers kongRequest gives, for callers (the benchmark) that skip HTTP
//
// What the real server taught us (spec/kong-harness.spec.ts proves each point):
//   - kong.response.exit / kong.response.error do not wait for an answer on the JS side
//     (kong-pdk pdk.js NON_RETURN_METHODS). Kong still answers them with a Step; the server queues
//     that answer and replies with the plugin's NEXT message ("ret" or its next PDK call). If the
//     plugin calls the PDK again after exit, that call receives the queued exit answer (null) and
//     every later call the answer meant for the one before it. Plugins must return right after exit.
//   - A StepError reaches the plugin as a thrown PDKError "PDK method <m> failed:  <message>"
//     (two spaces, sic). An exception the plugin does not catch is logged on the server's STDOUT
//     (node-color-log) and the event ends with "ret": Kong then proxies to the Service (fail-open).
//   - Events on an unknown instance id fail with "no plugin instance #N"; Kong then starts a new
//     instance with the same config and retries, as KongSide.runPhase does.
//   - The server decodes each socket chunk as ONE message: two requests in one write would break
//     it. Kong never pipelines on a connection; KongRpc queues calls so neither do we.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Decoder, Encoder } from '@msgpack/msgpack';

// ---------------------------------------------------------------------------------------------
// The plugin server process

export interface PluginServer {
  socketPath: string;
  /** The server process (for CPU accounting in the benchmark). */
  pid: number;
  stop(): Promise<void>;
  stderr(): string;
  /** The server logs (node-color-log) go to STDOUT, colour codes removed here: load warnings, "unhandled exception in ...". */
  stdout(): string;
  /**
   * Resolves with stdout once it contains `fragment`. The server writes its log line and its RPC
   * reply on different pipes, so a reply can arrive before the line that explains it.
   */
  waitForStdout(fragment: string, timeoutMs?: number): Promise<string>;
}

export interface StartPluginServerOptions {
  /** Bound on the wait for the socket to accept connections. */
  startTimeoutMs?: number;
  /** Passes -v -v: the server then logs every RPC (slow; for debugging a spec). */
  verbose?: boolean;
}

const SOCKET_NAME = 'js_pluginserver.sock';
// Each server loads ts-node (~1.5 s alone); a spec starting seven at once on a busy 2-core machine
// has seen 10 s pass. Well inside vitest's 60 s hook timeout.
const START_TIMEOUT_MS = 30_000;
// SIGTERM first so the server can close its socket; a server stuck in a plugin gets SIGKILL.
const STOP_GRACE_MS = 3_000;
// Enough of the server's output to diagnose a failure, without growing without bound in the benchmark.
const OUTPUT_CAP_CHARS = 256 * 1024;
const POLL_INTERVAL_MS = 25;
const OUTPUT_WAIT_MS = 2_000;
// node-color-log colours every line and moves the cursor between them.
const ANSI_ESCAPE = /\x1b\[[0-9;]*[A-Za-z]/g;

// Resolved from this module's location, so it also works once bundled elsewhere (bench/kong.js).
const requireFromHere = createRequire(import.meta.url);

// Servers still running when this process exits (process.exit, an uncaught error) are killed and
// their temp dirs removed, so no plugin server outlives the spec or benchmark that started it.
const liveServers = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function killLiveServersOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [child, root] of liveServers) {
      child.kill('SIGKILL');
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
}

function pluginServerBin(): string {
  return path.join(path.dirname(requireFromHere.resolve('kong-pdk/package.json')), 'bin', 'kong-js-pluginserver');
}

function capped(text: string, more: string): string {
  const joined = text + more;
  return joined.length > OUTPUT_CAP_CHARS ? joined.slice(joined.length - OUTPUT_CAP_CHARS) : joined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function socketAccepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Spawns `kong-js-pluginserver -d <plugins> -p <tmp prefix> --sock-name js_pluginserver.sock` and
 * waits until its socket accepts connections. The plugins directory is COPIED into the temp prefix
 * and the server runs there: outside this checkout, as under Kong. (The server's ts-node reads the
 * tsconfig.json above its working directory, and this repository's package.json would make Node
 * load a plugin's .js as an ES module.) stop() kills the server and removes the temp directory.
 */
export async function startPluginServer(pluginsDir: string, options: StartPluginServerOptions = {}): Promise<PluginServer> {
  if (!fs.statSync(pluginsDir).isDirectory()) throw new Error(`${pluginsDir} is not a directory`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-kong-'));
  const plugins = path.join(root, 'plugins');
  fs.cpSync(pluginsDir, plugins, { recursive: true });
  const socketPath = path.join(root, SOCKET_NAME);
  const args = [pluginServerBin(), '-d', plugins, '-p', root, '--sock-name', SOCKET_NAME];
  if (options.verbose) args.push('-v', '-v');
  const child = spawn(process.execPath, args, { cwd: plugins, stdio: ['ignore', 'pipe', 'pipe'] });
  liveServers.set(child, root);
  killLiveServersOnExit();
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout = capped(stdout, d)));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = capped(stderr, d)));
  let spawnError: Error | null = null;
  child.once('error', (error) => (spawnError = error));

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (!(await waitForExit(child, 0))) {
        child.kill('SIGTERM');
        if (!(await waitForExit(child, STOP_GRACE_MS))) {
          child.kill('SIGKILL');
          await waitForExit(child, STOP_GRACE_MS);
        }
      }
      fs.rmSync(root, { recursive: true, force: true });
      liveServers.delete(child);
    })();
    return stopped;
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? START_TIMEOUT_MS);
  for (;;) {
    const exited = child.exitCode !== null || child.signalCode !== null || spawnError !== null;
    if (!exited && fs.existsSync(socketPath) && (await socketAccepts(socketPath))) break;
    if (exited || Date.now() > deadline) {
      await stop();
      const why = exited ? `exited (${spawnError ?? child.exitCode ?? child.signalCode})` : `did not listen within ${options.startTimeoutMs ?? START_TIMEOUT_MS} ms`;
      throw new Error(`kong-js-pluginserver ${why} for ${pluginsDir}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    }
    await delay(POLL_INTERVAL_MS);
  }
  const cleanStdout = (): string => stdout.replace(ANSI_ESCAPE, '');
  const waitForStdout = async (fragment: string, timeoutMs = OUTPUT_WAIT_MS): Promise<string> => {
    const until = Date.now() + timeoutMs;
    while (!cleanStdout().includes(fragment)) {
      if (Date.now() > until) throw new Error(`plugin server stdout has no "${fragment}" after ${timeoutMs} ms:\n${cleanStdout()}`);
      await delay(POLL_INTERVAL_MS);
    }
    return cleanStdout();
  };
  return { socketPath, pid: child.pid as number, stop, stderr: () => stderr, stdout: cleanStdout, waitForStdout };
}

// ---------------------------------------------------------------------------------------------
// One RPC connection

/** The error string the plugin server answered with, as the message. */
export class KongRpcError extends Error {
  override readonly name = 'KongRpcError';
}

export interface KongRpcOptions {
  /** A call not answered in this time rejects (a plugin awaiting forever fails the test instead of hanging it). */
  callTimeoutMs?: number;
}

// One RPC normally takes well under a millisecond; 10 s only catches a plugin that never answers, inside vitest's 30 s test timeout.
const CALL_TIMEOUT_MS = 10_000;

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** Kong's side of one connection: `[0, msgid, method, [args]]` out, `[1, msgid, error, result]` back. */
export class KongRpc {
  private readonly encoder = new Encoder();
  private readonly pending = new Map<number, PendingCall>();
  private nextMsgId = 1;
  // Calls wait for the one before: Kong sends one call at a time per pooled connection, and the
  // server would fail to decode two requests arriving in one chunk.
  private queue: Promise<unknown> = Promise.resolve();
  private closedBecause: Error | null = null;

  private constructor(
    private readonly socket: net.Socket,
    private readonly callTimeoutMs: number,
  ) {
    void this.readReplies();
  }

  static connect(socketPath: string, options: KongRpcOptions = {}): Promise<KongRpc> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      socket.once('error', reject);
      // Later socket errors end the reply stream (readReplies fails every pending call); this
      // listener only keeps an error between connect and that stream from being "unhandled".
      socket.on('error', () => undefined);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new KongRpc(socket, options.callTimeoutMs ?? CALL_TIMEOUT_MS));
      });
    });
  }

  call(method: string, args: unknown[]): Promise<unknown> {
    const result = this.queue.then(() => this.send(method, args));
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.failAll(new Error('KongRpc closed'));
    this.socket.destroy();
  }

  private send(method: string, args: unknown[]): Promise<unknown> {
    if (this.closedBecause) return Promise.reject(this.closedBecause);
    const msgid = this.nextMsgId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(msgid);
        reject(new Error(`${method}: no answer from the plugin server within ${this.callTimeoutMs} ms`));
      }, this.callTimeoutMs);
      this.pending.set(msgid, { resolve, reject, timer });
      this.socket.write(this.encoder.encode([0, msgid, method, args]));
    });
  }

  // Replies may arrive split across chunks (large answers, e.g. a big schema): the stream decoder
  // waits for the rest of a message before yielding it.
  private async readReplies(): Promise<void> {
    try {
      for await (const message of new Decoder().decodeStream(this.socket)) this.dispatch(message);
      this.failAll(new Error('the plugin server closed the connection'));
    } catch (error) {
      this.failAll(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private dispatch(message: unknown): void {
    if (!Array.isArray(message) || message.length !== 4 || message[0] !== 1) {
      this.failAll(new Error(`not a MessagePack-RPC reply: ${JSON.stringify(message)}`));
      this.socket.destroy();
      return;
    }
    const call = this.pending.get(message[1] as number);
    if (!call) return; // answer to a call that already timed out
    this.pending.delete(message[1] as number);
    clearTimeout(call.timer);
    if (message[2] != null) call.reject(new KongRpcError(String(message[2])));
    else call.resolve(message[3]);
  }

  private failAll(error: Error): void {
    this.closedBecause ??= error;
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    this.pending.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Instances and phases

/** Answers one PDK call: the return value goes back with plugin.Step, a thrown Error's message with plugin.StepError. */
export type PdkHandler = (args: unknown[]) => unknown | Promise<unknown>;

export interface PdkCall {
  method: string;
  args: unknown[];
  /** What was sent back with plugin.Step (null for exit/error, which the JS side does not read). */
  answer?: unknown;
  /** What was sent back with plugin.StepError. */
  error?: string;
}

export interface PhaseRun {
  /** Every PDK call of the phase, in order. */
  calls: PdkCall[];
  /** The last kong.response.exit (or kong.response.error, whose body is {message}). */
  exited: { status: number; body?: unknown; headers?: unknown } | null;
  /** PDK methods no handler answered (each got a StepError "unexpected PDK call <method>"). */
  unexpected: string[];
  /** The instance the phase ran on: differs from the id passed in after a restart. */
  instanceId: number;
  /** The id that answered "no plugin instance" when the harness restarted it, else null. */
  restartedFrom: number | null;
}

export interface PluginInfo {
  Name: string;
  Version: string;
  Priority: number;
  Phases: string[];
  Schema: unknown;
}

export interface KongSideOptions {
  /** PDK calls allowed in one phase before the harness gives up on a runaway plugin. */
  maxStepsPerPhase?: number;
}

type Phase = 'access' | 'log' | 'rewrite' | 'response';

export interface InstanceRecord {
  name: string;
  /** The exact StartInstance argument: a restart sends the same. */
  start: { Name: string; Config: string };
}

// The JS side of these never reads an answer (kong-pdk pdk.js NON_RETURN_METHODS).
const NON_RETURNING = new Set(['kong.response.exit', 'kong.response.error']);
// Far above any real phase (ours makes under 10 PDK calls), low enough that a runaway loop fails in well under a second.
const MAX_STEPS_PER_PHASE = 1000;
const NO_INSTANCE = 'no plugin instance';

/** Kong's plugin.__plugin_id is the plugin entity's uuid: derive a stable uuid-shaped id from a name. */
export function pluginUuid(pluginId: string): string {
  const hex = createHash('sha1').update('llm-balancer-harness:' + pluginId).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Kong's plugin-server runloop over one connection. Several phases may run at once (concurrent
 * requests): their calls share the connection one at a time, and the server keys events by EventId.
 *
 * Restart: when HandleEvent answers "no plugin instance" (closed, or dropped after 60 s idle),
 * runPhase starts the instance again with the remembered StartInstance argument and retries once,
 * as Kong does. The new id is in PhaseRun.instanceId (with PhaseRun.restartedFrom = the old id),
 * and currentId(oldId) maps any id ever returned by startInstance to the live one.
 */
export class KongSide {
  private readonly instances = new Map<number, InstanceRecord>();
  private readonly replacedBy = new Map<number, number>();
  private readonly restarting = new Map<number, Promise<number>>();
  private readonly infos = new Map<string, Promise<PluginInfo>>();
  private seq = 0;
  private readonly maxSteps: number;

  constructor(
    readonly rpc: KongRpc,
    options: KongSideOptions = {},
  ) {
    this.maxSteps = options.maxStepsPerPhase ?? MAX_STEPS_PER_PHASE;
  }

  async getPluginInfo(name: string): Promise<PluginInfo> {
    return (await this.rpc.call('plugin.GetPluginInfo', [name])) as PluginInfo;
  }

  /** plugin.StartInstance({Name, Config}) with Kong's `__plugin_id` (stable per pluginId, default the name) and `__seq__`. */
  async startInstance(name: string, config: Record<string, unknown>, pluginId: string = name): Promise<number> {
    // Kong bumps __seq__ whenever it rebuilds plugin configurations; every startInstance here is a new one.
    this.seq += 1;
    const start = { Name: name, Config: JSON.stringify(Object.assign({}, config, { __plugin_id: pluginUuid(pluginId), __seq__: this.seq })) };
    const status = (await this.rpc.call('plugin.StartInstance', [start])) as { Id: number };
    this.instances.set(status.Id, { name, start });
    return status.Id;
  }

  /** plugin.CloseInstance. The config stays remembered: a later phase on this id restarts it, as Kong would. */
  async closeInstance(id: number): Promise<void> {
    await this.rpc.call('plugin.CloseInstance', [this.currentId(id)]);
  }

  /** The live instance for an id startInstance returned (follows restarts). */
  currentId(id: number): number {
    let current = id;
    for (let next = this.replacedBy.get(current); next !== undefined; next = this.replacedBy.get(current)) current = next;
    return current;
  }

  /** The phases the instance's plugin implements (GetPluginInfo, asked once per plugin name). */
  async pluginPhases(instanceId: number): Promise<string[]> {
    const record = this.instances.get(this.currentId(instanceId)) ?? (await this.adopt(this.currentId(instanceId)));
    let info = this.infos.get(record.name);
    if (!info) {
      info = this.getPluginInfo(record.name);
      this.infos.set(record.name, info);
    }
    return (await info).Phases;
  }

  /**
   * Learns an instance another KongSide (another connection of the same server) started, from
   * plugin.InstanceStatus, so this side can also name its plugin and restart it.
   */
  async adopt(id: number): Promise<InstanceRecord> {
    const status = (await this.rpc.call('plugin.InstanceStatus', [id])) as { Name: string; Config: unknown };
    const record = { name: status.Name, start: { Name: status.Name, Config: JSON.stringify(status.Config) } };
    this.instances.set(id, record);
    return record;
  }

  async runPhase(instanceId: number, phase: Phase, handlers: Record<string, PdkHandler>): Promise<PhaseRun> {
    let id = this.currentId(instanceId);
    let restartedFrom: number | null = null;
    let reply: unknown;
    try {
      reply = await this.rpc.call('plugin.HandleEvent', [{ InstanceId: id, EventName: phase }]);
    } catch (error) {
      if (!(error instanceof KongRpcError) || !error.message.startsWith(NO_INSTANCE) || !this.instances.has(id)) throw error;
      restartedFrom = id;
      id = await this.restart(id);
      reply = await this.rpc.call('plugin.HandleEvent', [{ InstanceId: id, EventName: phase }]);
    }
    const run: PhaseRun = { calls: [], exited: null, unexpected: [], instanceId: id, restartedFrom };
    for (let steps = 0; ; steps++) {
      const event = reply as { Data: unknown; EventId: number };
      if (event.Data === 'ret') return run;
      if (steps >= this.maxSteps) {
        throw new Error(`runaway plugin: more than ${this.maxSteps} PDK calls in one ${phase} phase; the last: ${JSON.stringify(run.calls.slice(-3))}`);
      }
      const data = event.Data as { Method: string; Args: unknown[] | null };
      const call: PdkCall = { method: data.Method, args: Array.isArray(data.Args) ? data.Args : [] };
      run.calls.push(call);
      let stepMethod = 'plugin.Step';
      let stepData: unknown = null;
      if (NON_RETURNING.has(call.method)) {
        run.exited = exitOf(call);
        call.answer = null;
      } else if (!Object.prototype.hasOwnProperty.call(handlers, call.method)) {
        run.unexpected.push(call.method);
        call.error = `unexpected PDK call ${call.method}`;
        stepMethod = 'plugin.StepError';
        stepData = call.error;
      } else {
        try {
          const value = await handlers[call.method](call.args);
          stepData = value === undefined ? null : value;
          call.answer = stepData;
        } catch (error) {
          call.error = errorMessage(error);
          stepMethod = 'plugin.StepError';
          stepData = call.error;
        }
      }
      reply = await this.rpc.call(stepMethod, [{ EventId: event.EventId, Data: stepData }]);
    }
  }

  private restart(id: number): Promise<number> {
    // Concurrent phases that all find the instance gone share one restart (one new instance).
    let restarting = this.restarting.get(id);
    if (!restarting) {
      const record = this.instances.get(id) as InstanceRecord;
      restarting = (async () => {
        const status = (await this.rpc.call('plugin.StartInstance', [record.start])) as { Id: number };
        this.instances.set(status.Id, record);
        this.replacedBy.set(id, status.Id);
        return status.Id;
      })();
      this.restarting.set(id, restarting);
      restarting.catch(() => this.restarting.delete(id));
    }
    return restarting;
  }
}

function exitOf(call: PdkCall): PhaseRun['exited'] {
  const [status, second, headers] = call.args;
  // kong.response.error(status, message, headers) answers {"message": message}.
  const body = call.method === 'kong.response.error' ? { message: second ?? defaultErrorMessage(Number(status)) } : second;
  const exited: NonNullable<PhaseRun['exited']> = { status: Number(status) };
  if (body !== undefined && body !== null) exited.body = body;
  if (headers !== undefined && headers !== null) exited.headers = headers;
  return exited;
}

// Kong 3.x's default error bodies (kong/tools/http.lua get_default_exit_body / kong.response.error).
export const KONG_ERROR_MESSAGES: Record<number, string> = {
  500: 'An unexpected error occurred',
  502: 'An invalid response was received from the upstream server',
  503: 'Service unavailable',
  504: 'The upstream server is timed out',
};

/**
 * What Kong's error handler (kong/error_handlers.lua BODIES) answers when nginx itself failed the
 * proxying (refused, timed out): error_page sends those to it, and error_template_json (kong.conf)
 * can reshape them.
 */
export const KONG_PROXY_ERROR_MESSAGES: Record<number, string> = {
  502: 'An invalid response was received from the upstream server',
  504: 'The upstream server is timing out',
};

/** The timeouts in force for a request (ms): set_timeouts when the plugin called it, else the Service's. */
export function upstreamTimeouts(state: FakeRequestState): { connectMs: number; writeMs: number; readMs: number } {
  const service = state.service;
  const pick = (set: unknown, configured: unknown): number => (typeof set === 'number' ? set : typeof configured === 'number' ? configured : 60_000);
  const t = state.timeouts;
  return {
    connectMs: pick(t ? t.connect : undefined, service.connect_timeout),
    writeMs: pick(t ? t.write : undefined, service.write_timeout),
    readMs: pick(t ? t.read : undefined, service.read_timeout),
  };
}

/**
 * Marks a failed try the way Kong does: a try's state and code are written only when the NEXT try
 * starts (Kong.balancer: `previous_try.state, previous_try.code = get_last_failure()`), so the last
 * try of a failed exchange carries none. nginx writes its own 502/504 into $upstream_status
 * ("502, 502" after a retry), which the log entry shows as upstream_status.
 */
export function markRetriedTry(tries: KongTry[], code: 502 | 504): void {
  const last = tries[tries.length - 1];
  last.state = 'failed';
  last.code = code;
}

function defaultErrorMessage(status: number): string {
  return KONG_ERROR_MESSAGES[status] ?? 'An unexpected error occurred';
}

// ---------------------------------------------------------------------------------------------
// A fake request through "Kong"

export interface FakeRequest {
  /** Default 'POST'. */
  method?: string;
  /** Default '/v1/chat/completions'. */
  path?: string;
  /** Request headers (get_headers returns them lower-cased, like Kong). `host` defaults to localhost:8000. */
  headers?: Record<string, string>;
  /** Raw body: get_raw_body returns its bytes (a Uint8Array on the JS side). */
  body?: string;
  /** Kong could not buffer the body (too big): get_raw_body answers null. The body is still proxied. */
  bodyUnbuffered?: boolean;
  /** Default '127.0.0.1'. */
  clientIp?: string;
  /** What kong.client.get_consumer returns (null = anonymous). */
  consumer?: { id: string; username?: string } | null;
  query?: Record<string, string>;
}

export interface Target {
  host: string;
  port: number;
}

export interface LogMessage {
  phase: string;
  level: string;
  message: string;
}

/** Everything one request's PDK answers read and write, shared by its access and log phases. */
export interface FakeRequestState {
  request: Required<Omit<FakeRequest, 'consumer' | 'body'>> & { body: string | undefined; consumer: FakeRequest['consumer'] | null };
  phase: string;
  /** ms since the epoch when "Kong" received the request. */
  startedAt: number;
  shared: Map<string, unknown>;
  pluginCtx: Map<string, unknown>;
  nginxCtx: Map<string, unknown>;
  target: Target | null;
  retries: number | null;
  timeouts: { connect: unknown; write: unknown; read: unknown } | null;
  /** The request as it will go upstream (kong.service.request.* edits it). */
  upstream: { method: string; path: string; query: Record<string, string>; headers: Record<string, string>; body: string | undefined };
  /** Headers the plugin added to the client response (kong.response.set_header/add_header). */
  responseHeaders: Record<string, string>;
  /** Set before the log phase: what the client got. */
  response: { status: number; headers: Record<string, string>; source: 'exit' | 'service' | 'error' } | null;
  /** The kong.log.serialize() answer of the log phase (a JSON string, as the JS PDK receives it). */
  serialized: string | null;
  logs: LogMessage[];
  service: Record<string, unknown>;
  route: Record<string, unknown>;
}

const DEFAULT_PATH = '/v1/chat/completions';
const LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'err', 'crit', 'alert', 'emerg'];
const NODE_ID = pluginUuid('kong-node');

function lowerKeys(record: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(record)) out[name.toLowerCase()] = record[name];
  return out;
}

/** Kong matches header names case-insensitively and treats `_` as `-`. */
function headerName(name: unknown): string {
  return String(name).toLowerCase().replace(/_/g, '-');
}

function firstN<T>(record: Record<string, T>, max: unknown): Record<string, T> {
  const limit = typeof max === 'number' && max > 0 ? max : 100; // Kong's default max_headers / max_args
  const out: Record<string, T> = {};
  for (const key of Object.keys(record).slice(0, limit)) out[key] = record[key];
  return out;
}

export function createFakeRequestState(request: FakeRequest): FakeRequestState {
  const headers = lowerKeys(request.headers ?? {});
  if (headers.host === undefined) headers.host = 'localhost:8000';
  if (request.body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
  const normalized: FakeRequestState['request'] = {
    method: request.method ?? 'POST',
    path: request.path ?? DEFAULT_PATH,
    headers,
    body: request.body,
    bodyUnbuffered: request.bodyUnbuffered ?? false,
    clientIp: request.clientIp ?? '127.0.0.1',
    consumer: request.consumer ?? null,
    query: Object.assign({}, request.query ?? {}),
  };
  const serviceId = pluginUuid('service');
  return {
    request: normalized,
    phase: 'access',
    startedAt: Date.now(),
    shared: new Map(),
    pluginCtx: new Map(),
    nginxCtx: new Map(),
    target: null,
    retries: null,
    timeouts: null,
    upstream: { method: normalized.method, path: normalized.path, query: Object.assign({}, normalized.query), headers: Object.assign({}, headers), body: normalized.body },
    responseHeaders: {},
    response: null,
    serialized: null,
    logs: [],
    service: {
      id: serviceId, name: 'llm-service', protocol: 'http', host: 'llm-service.invalid', port: 80, path: null,
      retries: 5, connect_timeout: 60000, write_timeout: 60000, read_timeout: 60000, enabled: true,
      created_at: 1700000000, updated_at: 1700000000, ws_id: pluginUuid('workspace'),
    },
    route: {
      id: pluginUuid('route'), name: 'llm-route', paths: ['/v1'], protocols: ['http', 'https'], strip_path: false,
      preserve_host: false, https_redirect_status_code: 426, request_buffering: true, response_buffering: true,
      service: { id: serviceId }, created_at: 1700000000, updated_at: 1700000000, ws_id: pluginUuid('workspace'),
    },
  };
}

function mapHandlers(prefix: string, map: Map<string, unknown>): Record<string, PdkHandler> {
  return {
    [prefix + '.get']: ([key]) => (map.has(String(key)) ? map.get(String(key)) : null),
    [prefix + '.set']: ([key, value]) => {
      map.set(String(key), value);
      return null;
    },
    [prefix + '.delete']: ([key]) => {
      map.delete(String(key));
      return null;
    },
  };
}

export function queryString(query: Record<string, string>): string {
  const text = new URLSearchParams(query).toString();
  return text ? '?' + text : '';
}

/** The PDK answers of one fake request (what kongRequest gives the plugin). `state.phase` says which phase is running. */
export function fakePdkHandlers(state: FakeRequestState): Record<string, PdkHandler> {
  const req = state.request;
  const handlers: Record<string, PdkHandler> = {
    'kong.request.get_header': ([name]) => req.headers[headerName(name)] ?? null,
    'kong.request.get_headers': ([max]) => firstN(req.headers, max),
    'kong.request.get_query': ([max]) => firstN(req.query, max),
    'kong.request.get_query_arg': ([name]) => req.query[String(name)] ?? null,
    'kong.request.get_raw_query': () => new URLSearchParams(req.query).toString(),
    'kong.request.get_raw_body': () => (req.bodyUnbuffered ? null : Buffer.from(req.body ?? '', 'utf8')),
    'kong.request.get_method': () => req.method,
    'kong.request.get_path': () => req.path,
    'kong.request.get_path_with_query': () => req.path + queryString(req.query),
    'kong.request.get_scheme': () => 'http',
    'kong.request.get_host': () => (req.headers.host ?? 'localhost').split(':')[0],
    'kong.request.get_port': () => 8000,
    'kong.request.get_http_version': () => 1.1,
    'kong.request.get_start_time': () => state.startedAt,
    'kong.client.get_ip': () => req.clientIp,
    'kong.client.get_forwarded_ip': () => req.clientIp,
    'kong.client.get_port': () => 54321,
    'kong.client.get_protocol': () => 'http',
    'kong.client.get_consumer': () => req.consumer,
    'kong.client.get_credential': () => (req.consumer ? { id: pluginUuid('credential:' + req.consumer.id), consumer: { id: req.consumer.id } } : null),
    'kong.service.set_target': ([host, port]) => {
      state.target = { host: String(host), port: Number(port) };
      return null;
    },
    'kong.service.set_retries': ([retries]) => {
      if (typeof retries !== 'number' || Math.floor(retries) !== retries) throw new Error('retries must be an integer');
      if (retries < 0 || retries > 32767) throw new Error('retries must be an integer between 0 and 32767: given ' + retries);
      state.retries = retries;
      return null;
    },
    // kong/pdk/service.lua checks each argument the same way (a Lua error, a 500 in Kong).
    'kong.service.set_timeouts': ([connect, write, read]) => {
      const names = ['connect_timeout', 'write_timeout', 'read_timeout'];
      [connect, write, read].forEach((value, i) => {
        if (typeof value !== 'number' || Math.floor(value) !== value) throw new Error(names[i] + ' must be an integer');
        if (value < 1 || value > 2147483646) throw new Error(names[i] + ' must be an integer between 1 and 2147483646: given ' + value);
      });
      state.timeouts = { connect, write, read };
      return null;
    },
    'kong.service.request.set_header': ([name, value]) => {
      state.upstream.headers[headerName(name)] = String(value);
      return null;
    },
    'kong.service.request.add_header': ([name, value]) => {
      const key = headerName(name);
      state.upstream.headers[key] = state.upstream.headers[key] === undefined ? String(value) : state.upstream.headers[key] + ', ' + String(value);
      return null;
    },
    'kong.service.request.clear_header': ([name]) => {
      delete state.upstream.headers[headerName(name)];
      return null;
    },
    'kong.service.request.set_path': ([p]) => {
      state.upstream.path = String(p);
      return null;
    },
    'kong.service.request.set_method': ([m]) => {
      state.upstream.method = String(m);
      return null;
    },
    'kong.service.request.set_raw_body': ([b]) => {
      state.upstream.body = b instanceof Uint8Array ? Buffer.from(b).toString('utf8') : String(b);
      return null;
    },
    'kong.response.set_header': ([name, value]) => {
      state.responseHeaders[String(name).toLowerCase()] = String(value);
      return null;
    },
    'kong.response.add_header': ([name, value]) => {
      const key = String(name).toLowerCase();
      state.responseHeaders[key] = state.responseHeaders[key] === undefined ? String(value) : state.responseHeaders[key] + ', ' + String(value);
      return null;
    },
    // ngx.status: 0 until a response exists.
    'kong.response.get_status': () => (state.response ? state.response.status : 0),
    'kong.response.get_header': ([name]) => (state.response ? (state.response.headers[String(name).toLowerCase()] ?? null) : null),
    'kong.response.get_headers': ([max]) => firstN(state.response ? state.response.headers : {}, max),
    'kong.response.get_source': () => (state.response ? state.response.source : 'error'),
    'kong.log.serialize': () => {
      if (state.serialized === null) throw new Error('kong.log.serialize is only available in the log phase');
      return state.serialized;
    },
    'kong.node.get_id': () => NODE_ID,
    'kong.node.get_hostname': () => os.hostname(),
    'kong.router.get_route': () => state.route,
    'kong.router.get_service': () => state.service,
    'kong.nginx.get_ctx': ([key]) => (state.nginxCtx.has(String(key)) ? state.nginxCtx.get(String(key)) : null),
    'kong.nginx.set_ctx': ([key, value]) => {
      state.nginxCtx.set(String(key), value);
      return null;
    },
    ...mapHandlers('kong.ctx.shared', state.shared),
    ...mapHandlers('kong.ctx.plugin', state.pluginCtx),
  };
  for (const level of LOG_LEVELS) {
    // Kong concatenates the arguments without separators, as ngx.log does.
    handlers['kong.log.' + level] = (args) => {
      state.logs.push({ phase: state.phase, level, message: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join('') });
      return null;
    };
  }
  return handlers;
}

export interface KongResult {
  /** What the client got: the exit status, the upstream's, 502 (refused), 504 (timeout), 499 (client gave up before the response headers). */
  status: number;
  body: string;
  headers: Record<string, string>;
  /** The plugin answered itself (kong.response.exit / error). */
  exited: boolean;
  /** What set_target chose. */
  target: Target | null;
  /** What set_retries set, if called. */
  retries: number | null;
  access: PhaseRun;
  /** null when the plugin has no log phase. */
  log: PhaseRun | null;
  /** The kong.log.serialize() object handed to the log phase (as a JSON string). */
  serialized: KongLogEntry | null;
  /** Every kong.log.* message of both phases, in order. */
  logs: LogMessage[];
  /** How the upstream exchange ended early, if it did (body then truncated, status kept once the headers had arrived). */
  interrupted: 'timeout' | 'client-abort' | 'upstream-reset' | null;
  /** The shared request state (kong.ctx.shared, timeouts, the upstream request as sent). */
  state: FakeRequestState;
}

export interface KongRequestOptions {
  /** Deadline of the whole upstream exchange (all tries); 504 when no response headers by then. Default 10 s. */
  timeoutMs?: number;
  /** The client disconnects this many ms after the request went upstream. */
  clientAbortAfterMs?: number;
  /** The Service's own retries, used when the plugin does not call set_retries (Kong's default 5). */
  serviceRetries?: number;
  /** The Service's host: where Kong proxies when the plugin sets no target (fail-open). Default none. */
  serviceTarget?: Target | null;
  /** Extra or replacement PDK answers, merged over the defaults. */
  pdk?: (state: FakeRequestState) => Record<string, PdkHandler>;
}

// Bounded well inside vitest's 30 s test timeout (Kong's own read_timeout is 60 s).
const REQUEST_TIMEOUT_MS = 10_000;
// A Kong Service's default `retries`.
const KONG_DEFAULT_RETRIES = 5;
// The harness never leaves the machine: any other host is "name resolution failed" (Kong's 503).
const LOOPBACK_HOSTS: Record<string, string> = { '127.0.0.1': '127.0.0.1', localhost: '127.0.0.1', '::1': '::1' };
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);
const JSON_UTF8 = 'application/json; charset=utf-8';

/** One entry of kong.log.serialize().tries: a balancer try. */
export interface KongTry {
  ip: string;
  port: number;
  balancer_latency: number;
  balancer_start: number;
  state?: 'failed';
  code?: number;
}

/** kong.log.serialize()'s object (Kong 3.x, kong/pdk/log.lua), as far as the harness fills it. */
export interface KongLogEntry {
  request: { method: string; uri: string; url: string; querystring: Record<string, string>; headers: Record<string, string>; size: number };
  response: { status: number; headers: Record<string, string>; size: number };
  upstream_uri: string;
  /** A string, as in Kong; absent when no upstream response arrived. */
  upstream_status?: string;
  /** Integer ms. proxy: sending upstream → response headers (-1 without them); receive: the body; kong: the access phase. */
  latencies: { request: number; kong: number; proxy: number; receive: number };
  /** Absent when the plugin exited in access (the balancer never ran). */
  tries?: KongTry[];
  client_ip: string;
  started_at: number;
  consumer?: { id: string; username?: string };
  authenticated_entity?: { id: string };
  service: Record<string, unknown>;
  route: Record<string, unknown>;
  workspace: unknown;
  workspace_name: string;
  [key: string]: unknown;
}

interface Exchange extends ExchangeSummary {
  status: number;
  body: string;
  headers: Record<string, string>;
  interrupted: KongResult['interrupted'];
  source: 'service' | 'error';
}

type Attempt =
  | { kind: 'failed'; error: string }
  | { kind: 'timeout'; byKong: boolean }
  | { kind: 'client-abort' }
  | { kind: 'response'; status: number; headers: Record<string, string>; body: string; ttfbMs: number; totalMs: number; interrupted: KongResult['interrupted'] };

export function flatHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function errorExchange(status: number, message: string, tries: KongTry[] | null, interrupted: KongResult['interrupted'], totalMs: number, statuses: number[] = []): Exchange {
  return {
    status,
    body: status === 499 ? '' : JSON.stringify({ message }),
    headers: status === 499 ? {} : { 'content-type': JSON_UTF8 },
    upstreamStatus: null,
    upstreamStatuses: statuses,
    ttfbMs: -1,
    totalMs,
    tries,
    interrupted,
    source: 'error',
  };
}

/**
 * One try: resolves at the end of the body, or at the deadline / client abort / connection failure,
 * or when Kong's timeouts in force (set_timeouts, else the Service's) expire: connect_timeout until
 * the connection is up, read_timeout between two reads (before the response headers and between
 * body chunks), as nginx's proxy_connect_timeout / proxy_read_timeout do.
 */
function attempt(ip: string, port: number, state: FakeRequestState, sentAt: number, deadline: number, abortAt: number): Promise<Attempt> {
  const up = state.upstream;
  const limits = upstreamTimeouts(state);
  const headers: Record<string, string> = {};
  for (const name of Object.keys(up.headers)) if (!HOP_BY_HOP.has(name) && name !== 'content-length') headers[name] = up.headers[name];
  // set_target rewrites the upstream Host (preserve_host is off); Kong adds the X-Forwarded-* family.
  headers.host = `${state.target?.host ?? ip}:${port}`;
  headers['x-forwarded-for'] = state.request.clientIp;
  headers['x-real-ip'] = state.request.clientIp;
  if (up.body !== undefined) headers['content-length'] = String(Buffer.byteLength(up.body));
  return new Promise((resolve) => {
    let settled = false;
    let response: { status: number; headers: Record<string, string>; ttfbMs: number } | null = null;
    let silence: ReturnType<typeof setTimeout> | null = null;
    const chunks: Buffer[] = [];
    const finish = (result: Attempt): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (silence !== null) clearTimeout(silence);
      req.destroy();
      resolve(result);
    };
    const partial = (interrupted: KongResult['interrupted']): Attempt | null =>
      response ? { kind: 'response', status: response.status, headers: response.headers, body: Buffer.concat(chunks).toString('utf8'), ttfbMs: response.ttfbMs, totalMs: performance.now() - sentAt, interrupted } : null;
    // Kong's timeouts: the connect phase, then the silence between two reads.
    const expectWithin = (ms: number): void => {
      if (silence !== null) clearTimeout(silence);
      silence = setTimeout(() => finish(partial('timeout') ?? { kind: 'timeout', byKong: true }), ms);
    };
    const byAbort = abortAt < deadline;
    const timer = setTimeout(() => {
      const interrupted = byAbort ? 'client-abort' : 'timeout';
      finish(partial(interrupted) ?? (interrupted === 'timeout' ? { kind: 'timeout', byKong: false } : { kind: 'client-abort' }));
    }, Math.max(0, Math.min(deadline, abortAt) - performance.now()));
    const req = http.request({ host: ip, port, method: up.method, path: up.path + queryString(up.query), headers, agent: false });
    expectWithin(limits.connectMs);
    req.on('socket', (socket) => socket.once('connect', () => expectWithin(limits.readMs)));
    req.on('response', (res) => {
      response = { status: res.statusCode ?? 0, headers: flatHeaders(res.headers), ttfbMs: performance.now() - sentAt };
      expectWithin(limits.readMs);
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        expectWithin(limits.readMs);
      });
      res.on('end', () => finish(partial(null) as Attempt));
      res.on('error', () => finish(partial('upstream-reset') as Attempt));
      res.on('aborted', () => finish(partial('upstream-reset') as Attempt));
    });
    req.on('error', (error) => finish(partial('upstream-reset') ?? { kind: 'failed', error: error.message }));
    req.end(up.body);
  });
}

/**
 * Kong's proxying of one request to `target`: tries, retries (connection failures and Kong's
 * timeouts, on the SAME host:port when set_target chose it), the overall deadline, client abort.
 */
async function proxy(state: FakeRequestState, target: Target, options: KongRequestOptions): Promise<Exchange> {
  const sentAt = performance.now();
  const ip = LOOPBACK_HOSTS[target.host];
  if (ip === undefined) return errorExchange(503, 'name resolution failed', null, null, 0);
  const deadline = sentAt + (options.timeoutMs ?? REQUEST_TIMEOUT_MS);
  const abortAt = options.clientAbortAfterMs === undefined ? Infinity : sentAt + options.clientAbortAfterMs;
  const retries = state.retries ?? options.serviceRetries ?? KONG_DEFAULT_RETRIES;
  const tries: KongTry[] = [];
  // $upstream_status: every try's status, nginx's own 502/504 for a failed one.
  const statuses: number[] = [];
  for (;;) {
    if (tries.length > 0) markRetriedTry(tries, statuses[statuses.length - 1] === 504 ? 504 : 502);
    tries.push({ ip, port: target.port, balancer_latency: 0, balancer_start: Date.now() });
    const result = await attempt(ip, target.port, state, sentAt, deadline, abortAt);
    const totalMs = performance.now() - sentAt;
    if (result.kind === 'response') {
      statuses.push(result.status);
      return {
        status: result.status, body: result.body, headers: result.headers, upstreamStatus: result.status, upstreamStatuses: statuses,
        ttfbMs: result.ttfbMs, totalMs: result.totalMs, tries, interrupted: result.interrupted, source: 'service',
      };
    }
    if (result.kind === 'client-abort') return errorExchange(499, '', tries, 'client-abort', totalMs, statuses);
    const code = result.kind === 'timeout' ? 504 : 502;
    statuses.push(code);
    // The harness's own deadline ends the exchange (the spec's bound, not Kong's): no retry then.
    const deadlineHit = result.kind === 'timeout' && !result.byKong;
    if (tries.length > retries || deadlineHit) return errorExchange(code, KONG_PROXY_ERROR_MESSAGES[code], tries, result.kind === 'timeout' ? 'timeout' : null, totalMs, statuses);
  }
}

function bodyText(body: unknown): string {
  if (body === undefined || body === null) return '';
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  return JSON.stringify(body);
}

function headerBytes(headers: Record<string, string>): number {
  let bytes = 0;
  for (const name of Object.keys(headers)) bytes += name.length + 2 + Buffer.byteLength(headers[name]) + 2;
  return bytes;
}

/** What the log entry needs of the upstream exchange (null when the plugin exited in access). */
export interface ExchangeSummary {
  /** null when no upstream response headers arrived. */
  upstreamStatus: number | null;
  /** $upstream_status: each try's status, nginx's own 502/504 for a try that failed (log entry: "502, 200"). */
  upstreamStatuses?: number[];
  /** ms from sending to the response headers (-1 without them), and to the end of the body. */
  ttfbMs: number;
  totalMs: number;
  tries: KongTry[] | null;
}

/** kong.log.serialize()'s object, Kong 3.x shape (kong/pdk/log.lua). */
export function serializeEntry(
  state: FakeRequestState,
  exchange: ExchangeSummary | null,
  response: { status: number; headers: Record<string, string>; bodyBytes: number },
  kongMs: number,
  endedAt: number,
): KongLogEntry {
  const req = state.request;
  const uri = req.path + queryString(req.query);
  const entry: KongLogEntry = {
    request: {
      method: req.method,
      uri,
      url: `http://${req.headers.host}${uri}`,
      querystring: Object.assign({}, req.query),
      headers: Object.assign({}, req.headers),
      size: req.method.length + uri.length + 11 + headerBytes(req.headers) + 2 + Buffer.byteLength(req.body ?? ''),
    },
    response: {
      status: response.status,
      headers: Object.assign({}, response.headers),
      size: 17 + headerBytes(response.headers) + 2 + response.bodyBytes,
    },
    upstream_uri: state.upstream.path + queryString(state.upstream.query),
    latencies: {
      request: Math.round(endedAt - state.startedAt),
      kong: Math.round(kongMs),
      // Kong reports -1 when no upstream response headers arrived.
      proxy: exchange && exchange.ttfbMs >= 0 ? Math.round(exchange.ttfbMs) : -1,
      receive: exchange && exchange.ttfbMs >= 0 ? Math.round(exchange.totalMs - exchange.ttfbMs) : 0,
    },
    client_ip: req.clientIp,
    started_at: state.startedAt,
    service: state.service,
    route: state.route,
    workspace: state.service.ws_id,
    workspace_name: 'default',
  };
  if (exchange && exchange.upstreamStatuses && exchange.upstreamStatuses.length > 0) entry.upstream_status = exchange.upstreamStatuses.join(', ');
  else if (exchange && exchange.upstreamStatus !== null) entry.upstream_status = String(exchange.upstreamStatus);
  // An exit in access ends the request before the balancer runs: no tries.
  if (exchange && exchange.tries) entry.tries = exchange.tries;
  if (req.consumer) {
    entry.consumer = Object.assign({}, req.consumer);
    entry.authenticated_entity = { id: pluginUuid('credential:' + req.consumer.id) };
  }
  return entry;
}

export const NO_RUN = (instanceId: number): PhaseRun => ({ calls: [], exited: null, unexpected: [], instanceId, restartedFrom: null });

/**
 * One request through "Kong": the access phase with the PDK answers of `request`; if the plugin
 * exited, that is the answer; else a REAL HTTP request (127.0.0.1 only) to the target it set; then
 * the log phase, where kong.log.serialize() returns Kong 3.x's JSON string. Phases the plugin does
 * not implement are skipped, as Kong does.
 *
 * A plugin that neither exits nor sets a target is "failing open": Kong would proxy to the Service's
 * host. Given options.serviceTarget the harness does so; without it the client gets a 502 and
 * `target` is null.
 * Client abort: before the response headers → status 499, no upstream_status; after them the
 * status stays the upstream's (nginx keeps a status once headers went out), body truncated,
 * `interrupted: 'client-abort'`.
 */
export async function kongRequest(kong: KongSide, instanceId: number, request: FakeRequest, options: KongRequestOptions = {}): Promise<KongResult> {
  const state = createFakeRequestState(request);
  // The log entry's Service shows the retries it is configured with.
  if (options.serviceRetries !== undefined) state.service.retries = options.serviceRetries;
  const handlers = Object.assign(fakePdkHandlers(state), options.pdk ? options.pdk(state) : {});
  const phases = await kong.pluginPhases(instanceId);

  const accessStarted = performance.now();
  const access = phases.includes('access') ? await kong.runPhase(instanceId, 'access', handlers) : NO_RUN(kong.currentId(instanceId));
  const kongMs = performance.now() - accessStarted;

  let exchange: Exchange | null = null;
  let client: { status: number; headers: Record<string, string>; body: string; source: 'exit' | 'service' | 'error' };
  if (access.exited) {
    const headers = lowerKeys((access.exited.headers as Record<string, string> | undefined) ?? {});
    const body = access.exited.body;
    if (body !== undefined && body !== null && typeof body === 'object' && !(body instanceof Uint8Array) && headers['content-type'] === undefined) {
      headers['content-type'] = JSON_UTF8;
    }
    headers['x-kong-response-latency'] = String(Math.round(kongMs));
    client = { status: access.exited.status, headers, body: bodyText(body), source: 'exit' };
  } else {
    const destination = state.target ?? options.serviceTarget ?? null;
    if (destination) {
      exchange = await proxy(state, destination, options);
    } else {
      exchange = errorExchange(502, 'no target: the plugin set none and the fake Service has no host (Kong would proxy to the Service)', null, null, 0);
    }
    const headers = Object.assign({}, exchange.headers);
    if (exchange.source === 'service') {
      headers['x-kong-upstream-latency'] = String(Math.round(exchange.ttfbMs));
      headers['x-kong-proxy-latency'] = String(Math.round(kongMs));
    }
    client = { status: exchange.status, headers, body: exchange.body, source: exchange.source };
  }
  Object.assign(client.headers, state.responseHeaders);
  const endedAt = Date.now();

  state.phase = 'log';
  state.response = { status: client.status, headers: client.headers, source: client.source };
  const serialized = serializeEntry(state, exchange, { status: client.status, headers: client.headers, bodyBytes: Buffer.byteLength(client.body) }, kongMs, endedAt);
  state.serialized = JSON.stringify(serialized);
  const log = phases.includes('log') ? await kong.runPhase(instanceId, 'log', handlers) : null;

  return {
    status: client.status,
    body: client.body,
    headers: client.headers,
    exited: access.exited !== null,
    target: state.target,
    retries: state.retries,
    access,
    log,
    serialized,
    logs: state.logs,
    interrupted: exchange ? exchange.interrupted : null,
    state,
  };
}
