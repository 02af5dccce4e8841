// The Kong harness (testbed/lib/kong-harness.ts) against the REAL kong-js-pluginserver, with tiny
// fixture plugins (spec/fixtures/kong-plugins/<name>/, one plugin per server as Kong 3.9+ runs
// them). Each test asserts what the plugin server really does, so the integration specs built on
// the harness can trust it.
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KongRpc, KongSide, kongRequest, startPluginServer } from './helpers/kong-harness';
import type { KongLogEntry, PluginServer } from './helpers/kong-harness';
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = path.join(REPO_ROOT, 'spec', 'fixtures', 'kong-plugins');
const FIXTURE_NAMES = ['target-from-config', 'exit-503', 'calls-after-exit', 'throws-in-access', 'unexpected-pdk-call', 'big-schema', 'runaway'] as const;
type Fixture = (typeof FIXTURE_NAMES)[number];

interface Connected {
  server: PluginServer;
  rpc: KongRpc;
  kong: KongSide;
}

const connected = new Map<Fixture, Connected>();

function side(name: Fixture): KongSide {
  const c = connected.get(name);
  if (!c) throw new Error(`no plugin server for ${name}`);
  return c.kong;
}

function serverOf(name: Fixture): PluginServer {
  return (connected.get(name) as Connected).server;
}

/** A live upstream on a free 127.0.0.1 port that echoes what it received. */
let backend: http.Server;
let backendPort = 0;
const backendSaw: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }> = [];

function listen(server: http.Server | net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: http.Server | net.Server): Promise<void> {
  return new Promise((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  const port = await listen(probe);
  await close(probe);
  return port;
}

beforeAll(async () => {
  backend = http.createServer((req, res) => {
    if (req.url?.startsWith('/hold')) {
      // A stream that sends its headers and first event, then stalls.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      backendSaw.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': 'one' });
      res.end(JSON.stringify({ echoed: body, url: req.url }));
    });
  });
  backendPort = await listen(backend);
  // One server per fixture, started together: each loads ts-node, which takes a while.
  await Promise.all(
    FIXTURE_NAMES.map(async (name) => {
      const server = await startPluginServer(path.join(FIXTURES, name));
      const rpc = await KongRpc.connect(server.socketPath);
      connected.set(name, { server, rpc, kong: new KongSide(rpc, { maxStepsPerPhase: 50 }) });
    }),
  );
});

afterAll(async () => {
  for (const c of connected.values()) c.rpc.close();
  await Promise.all([...connected.values()].map((c) => c.server.stop()));
  if (backend) await close(backend);
});

describe('startPluginServer + KongSide.getPluginInfo', () => {
  it("returns the fixture's Name, Version, Priority and Phases", async () => {
    const info = await side('target-from-config').getPluginInfo('target-from-config');
    expect(info).toMatchObject({ Name: 'target-from-config', Version: '1.2.3', Priority: 1234 });
    expect([...info.Phases].sort()).toEqual(['access', 'log']);
    expect(info.Schema).toMatchObject({ name: 'target-from-config', fields: [{ config: { type: 'record' } }] });
  });

  it('decodes a reply that arrives in several socket chunks (a ~200 KB schema)', async () => {
    const info = await side('big-schema').getPluginInfo('big-schema');
    const fields = (info.Schema as { fields: Array<{ config: { fields: unknown[] } }> }).fields[0].config.fields;
    expect(fields).toHaveLength(3000);
    expect(fields[2999]).toEqual({ field_2999: expect.objectContaining({ default: 'value number 2999' }) });
  });

  it('rejects with the server error string for an unknown plugin', async () => {
    await expect(side('exit-503').getPluginInfo('no-such-plugin')).rejects.toThrow('no-such-plugin not initizlied');
  });

  it('runs the server outside the checkout and stops it: socket and temp dir gone', async () => {
    const server = await startPluginServer(path.join(FIXTURES, 'exit-503'));
    expect(server.socketPath.startsWith(REPO_ROOT)).toBe(false);
    await server.stop();
    await expect(KongRpc.connect(server.socketPath)).rejects.toThrow(/ENOENT|ECONNREFUSED/);
  });
});

describe('kongRequest', () => {
  it('proxies to the target the plugin set and hands Kong-shaped serialize() JSON to the log phase', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort }, 'route-a');
    const result = await kongRequest(kong, id, {
      headers: { 'X-Request-Tag': 'tag-1', 'Content-Type': 'application/json' },
      body: '{"model":"m"}',
      query: { stream: 'false' },
    });

    expect(result.status).toBe(200);
    expect(result.exited).toBe(false);
    expect(result.target).toEqual({ host: '127.0.0.1', port: backendPort });
    expect(JSON.parse(result.body)).toEqual({ echoed: '{"model":"m"}', url: '/v1/chat/completions?stream=false' });
    expect(result.headers['x-backend']).toBe('one');
    const seen = backendSaw[backendSaw.length - 1];
    expect(seen.method).toBe('POST');
    expect(seen.headers['x-request-tag']).toBe('tag-1');
    expect(seen.headers.host).toBe(`127.0.0.1:${backendPort}`);

    expect(result.access.calls.map((c) => c.method)).toEqual(['kong.request.get_header', 'kong.ctx.shared.set', 'kong.service.set_target']);
    expect(result.access.calls[0]).toMatchObject({ args: ['X-Request-Tag'], answer: 'tag-1' });
    expect(result.log?.calls.map((c) => c.method)).toEqual(['kong.log.serialize', 'kong.ctx.shared.get', 'kong.response.get_source', 'kong.log.notice']);
    expect(result.access.unexpected).toEqual([]);
    expect(result.log?.unexpected).toEqual([]);

    const serialized = result.serialized as KongLogEntry;
    expect(serialized.response.status).toBe(200);
    expect(serialized.upstream_status).toBe('200');
    expect(serialized.request).toMatchObject({ method: 'POST', uri: '/v1/chat/completions?stream=false' });
    expect(serialized.tries).toEqual([{ ip: '127.0.0.1', port: backendPort, balancer_latency: 0, balancer_start: expect.any(Number) }]);
    for (const key of ['request', 'kong', 'proxy', 'receive'] as const) {
      expect(Number.isInteger(serialized.latencies[key]), `latencies.${key}`).toBe(true);
      expect(serialized.latencies[key]).toBeGreaterThanOrEqual(0);
    }
    expect(serialized.latencies.request).toBeGreaterThanOrEqual(serialized.latencies.proxy);

    // What the plugin itself read in its log phase, through the real server.
    const notices = result.logs.filter((l) => l.level === 'notice');
    expect(notices).toHaveLength(1);
    expect(notices[0].phase).toBe('log');
    const report = JSON.parse(notices[0].message);
    expect(report).toMatchObject({ tag: 'tag-1', status: 200, upstreamStatus: '200' });
    expect(report.latencies).toEqual(serialized.latencies);
    expect(report.pluginId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    await kong.closeInstance(id);
  });

  it('keeps kong.ctx.shared per request when requests run concurrently over one connection', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort });
    const tags = ['t0', 't1', 't2', 't3', 't4', 't5'];
    const results = await Promise.all(tags.map((tag) => kongRequest(kong, id, { headers: { 'x-request-tag': tag } })));
    expect(results.map((r) => r.status)).toEqual(tags.map(() => 200));
    expect(results.map((r) => JSON.parse(r.logs[0].message).tag)).toEqual(tags);
    await kong.closeInstance(id);
  });

  it('serves an instance started on another connection of the same server (learned via InstanceStatus)', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort });
    const other = new KongSide(await KongRpc.connect(serverOf('target-from-config').socketPath));
    try {
      const result = await kongRequest(other, id, { headers: { 'x-request-tag': 'other' } });
      expect(result.status).toBe(200);
      expect(JSON.parse(result.logs[0].message).tag).toBe('other');
      // It can restart it too, with the same config.
      await kong.closeInstance(id);
      const restarted = await kongRequest(other, id, {});
      expect(restarted.access.restartedFrom).toBe(id);
      expect(restarted.target).toEqual({ host: '127.0.0.1', port: backendPort });
    } finally {
      other.rpc.close();
    }
  });

  it('a client that gives up after the response headers keeps the upstream status (as nginx logs it)', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort });
    const result = await kongRequest(kong, id, { method: 'GET', path: '/hold' }, { clientAbortAfterMs: 150 });
    expect(result.interrupted).toBe('client-abort');
    expect(result.status).toBe(200);
    expect(result.body).toBe('data: first\n\n');
    const serialized = result.serialized as KongLogEntry;
    expect(serialized.upstream_status).toBe('200');
    expect(serialized.latencies.proxy).toBeGreaterThanOrEqual(0);
    // Headers, then the stalled body until the client left at 150 ms (each part rounded to a ms).
    expect(serialized.latencies.proxy + serialized.latencies.receive).toBeGreaterThanOrEqual(148);
    await kong.closeInstance(id);
  });

  it('gives the same __plugin_id for the same pluginId and a different one for another', async () => {
    const kong = side('target-from-config');
    const pluginIdOf = async (pluginId: string): Promise<string> => {
      const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort }, pluginId);
      const result = await kongRequest(kong, id, {});
      await kong.closeInstance(id);
      return JSON.parse(result.logs.find((l) => l.level === 'notice')?.message ?? '{}').pluginId;
    };
    const a1 = await pluginIdOf('route-a');
    expect(await pluginIdOf('route-a')).toBe(a1);
    expect(await pluginIdOf('route-b')).not.toBe(a1);
  });

  it('reports kong.response.exit as the answer: status, body, headers, no target, log phase without upstream', async () => {
    const kong = side('exit-503');
    const id = await kong.startInstance('exit-503', {});
    const result = await kongRequest(kong, id, {});
    expect(result.exited).toBe(true);
    expect(result.status).toBe(503);
    expect(JSON.parse(result.body)).toEqual({ message: 'no replica' });
    expect(result.headers).toMatchObject({ 'content-type': 'application/json', 'x-reason': 'fixture' });
    expect(result.target).toBeNull();
    expect(result.access.exited).toEqual({ status: 503, body: '{"message":"no replica"}', headers: { 'Content-Type': 'application/json', 'X-Reason': 'fixture' } });
    // The plugin has no log phase: Kong does not call it.
    expect(result.log).toBeNull();
    expect(result.serialized?.response).toMatchObject({ status: 503 });
    expect(result.serialized).not.toHaveProperty('upstream_status');
    expect(result.serialized).not.toHaveProperty('tries');
  });

  it('exit does not wait for its answer: calls after it receive the answer of the call before', async () => {
    const kong = side('calls-after-exit');
    const id = await kong.startInstance('calls-after-exit', {});
    const result = await kongRequest(kong, id, { clientIp: '10.1.2.3', method: 'PUT' });
    expect(result.exited).toBe(true);
    expect(result.status).toBe(503);
    expect(result.body).toBe('bye');
    expect(result.access.calls.map((c) => c.method)).toEqual(['kong.response.exit', 'kong.client.get_ip', 'kong.request.get_method', 'kong.log.notice']);
    // get_ip resolved with the Step answer sent for exit (null), get_method with get_ip's answer.
    expect(JSON.parse(result.logs[0].message)).toEqual({ ip: null, method: '10.1.2.3' });
  });

  it('a plugin that throws: the server logs it and sends "ret"; no target, no exit (Kong would fail open)', async () => {
    const kong = side('throws-in-access');
    const id = await kong.startInstance('throws-in-access', {});
    const result = await kongRequest(kong, id, {});
    expect(result.access.calls.map((c) => c.method)).toEqual(['kong.request.get_header']);
    expect(result.exited).toBe(false);
    expect(result.target).toBeNull();
    expect(result.status).toBe(502);
    expect(result.log?.calls.map((c) => c.method)).toEqual(['kong.log.info']);
    expect(await serverOf('throws-in-access').waitForStdout('unhandled exception in throws-in-access')).toContain(`unhandled exception in throws-in-access.access on instance #${id}: Error: fixture failure in access`);
  });

  it('a plugin that sets no target goes to the Service host when one is given (the fail-open path)', async () => {
    const kong = side('throws-in-access');
    const id = await kong.startInstance('throws-in-access', {});
    const result = await kongRequest(kong, id, { path: '/v1/models', method: 'GET' }, { serviceTarget: { host: '127.0.0.1', port: backendPort } });
    expect(result.target).toBeNull();
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body).url).toBe('/v1/models');
  });

  it('restarts an instance the server no longer has ("no plugin instance") and completes the phase', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort });
    await kong.closeInstance(id);
    await expect(kong.rpc.call('plugin.HandleEvent', [{ InstanceId: id, EventName: 'access' }])).rejects.toThrow(`no plugin instance #${id}`);

    const run = await kong.runPhase(id, 'access', {
      'kong.request.get_header': () => 'restarted',
      'kong.ctx.shared.set': () => null,
      'kong.service.set_target': () => null,
    });
    expect(run.restartedFrom).toBe(id);
    expect(run.instanceId).not.toBe(id);
    expect(kong.currentId(id)).toBe(run.instanceId);
    expect(run.calls.map((c) => c.method)).toEqual(['kong.request.get_header', 'kong.ctx.shared.set', 'kong.service.set_target']);
    expect(run.calls[2].args).toEqual(['127.0.0.1', backendPort]);

    // Later requests with the old id reach the new instance directly.
    const result = await kongRequest(kong, id, {});
    expect(result.status).toBe(200);
    expect(result.access.instanceId).toBe(run.instanceId);
    expect(result.access.restartedFrom).toBeNull();
  });

  it('a target refusing connections: 502 after Kong\'s default 5 retries; every try but the last says "failed" (Kong writes it when it starts the next)', async () => {
    const kong = side('target-from-config');
    const port = await closedPort();
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port });
    const result = await kongRequest(kong, id, {});
    expect(result.status).toBe(502);
    expect(JSON.parse(result.body)).toEqual({ message: 'An invalid response was received from the upstream server' });
    const serialized = result.serialized as KongLogEntry;
    expect(serialized.tries).toHaveLength(6);
    expect(serialized.tries?.[0]).toMatchObject({ ip: '127.0.0.1', port, state: 'failed', code: 502 });
    expect(serialized.tries?.[4]).toMatchObject({ state: 'failed', code: 502 });
    expect(serialized.tries?.[5]).not.toHaveProperty('state');
    // nginx's own status per try, as $upstream_status has it.
    expect(serialized.upstream_status).toBe('502, 502, 502, 502, 502, 502');
    expect(serialized.latencies.proxy).toBe(-1);
    expect(JSON.parse(result.logs[0].message)).toMatchObject({ status: 502, source: 'error' });
  });

  it('set_retries(0) makes it a single failed try', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: await closedPort(), retries: 0 });
    const result = await kongRequest(kong, id, {});
    expect(result.retries).toBe(0);
    expect(result.status).toBe(502);
    const serialized = result.serialized as KongLogEntry;
    expect(serialized.tries).toHaveLength(1);
    expect(serialized.tries?.[0]).not.toHaveProperty('state');
    expect(serialized.upstream_status).toBe('502');
    expect(JSON.parse(result.logs[0].message)).toMatchObject({ status: 502, upstreamStatus: '502', source: 'error' });
  });

  describe('a target that does not answer', () => {
    let silent: net.Server;
    let silentPort = 0;
    const silentSockets = new Set<net.Socket>();
    beforeAll(async () => {
      // Accepts connections and never answers.
      silent = net.createServer((socket) => {
        silentSockets.add(socket);
        socket.resume(); // reading is what notices the harness closing its side
        socket.on('close', () => silentSockets.delete(socket));
      });
      silentPort = await listen(silent);
    });
    afterAll(async () => {
      for (const socket of silentSockets) socket.destroy();
      if (silent) await close(silent);
    });

    it("times out with Kong's 504 at the harness deadline: nginx's 504 in upstream_status, source \"error\"", async () => {
      const kong = side('target-from-config');
      const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: silentPort });
      const result = await kongRequest(kong, id, {}, { timeoutMs: 200 });
      expect(result.status).toBe(504);
      expect(JSON.parse(result.body)).toEqual({ message: 'The upstream server is timing out' });
      expect(result.interrupted).toBe('timeout');
      expect((result.serialized as KongLogEntry).upstream_status).toBe('504');
      expect(JSON.parse(result.logs[0].message)).toMatchObject({ status: 504, source: 'error' });
      // Like Kong, the harness closes the upstream connection it gave up on.
      await expect.poll(() => silentSockets.size, { timeout: 2000 }).toBe(0);
    });

    it("set_timeouts' read timeout ends each try, and Kong retries the timeout on the same target", async () => {
      const kong = side('target-from-config');
      const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: silentPort, retries: 1, read_timeout: 150 });
      const result = await kongRequest(kong, id, {}, { timeoutMs: 5000 });
      expect(result.status).toBe(504);
      expect(result.state.timeouts).toEqual({ connect: 1000, write: 150, read: 150 });
      const serialized = result.serialized as KongLogEntry;
      expect(serialized.tries).toHaveLength(2);
      expect(serialized.tries?.[0]).toMatchObject({ state: 'failed', code: 504 });
      expect(serialized.upstream_status).toBe('504, 504');
      // Two reads of 150 ms, far below the 5 s deadline.
      expect(serialized.latencies.request).toBeLessThan(2500);
    });

    it('a client that gives up first is logged as 499 without upstream_status', async () => {
      const kong = side('target-from-config');
      const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: silentPort });
      const result = await kongRequest(kong, id, {}, { timeoutMs: 5000, clientAbortAfterMs: 100 });
      expect(result.status).toBe(499);
      expect(result.interrupted).toBe('client-abort');
      const serialized = result.serialized as KongLogEntry;
      expect(serialized.response.status).toBe(499);
      expect(serialized).not.toHaveProperty('upstream_status');
      expect(JSON.parse(result.logs[0].message)).toMatchObject({ status: 499 });
      await expect.poll(() => silentSockets.size, { timeout: 2000 }).toBe(0);
    });
  });
});

describe('KongSide.runPhase', () => {
  it('answers an unexpected PDK call with a StepError and records it', async () => {
    const kong = side('unexpected-pdk-call');
    const id = await kong.startInstance('unexpected-pdk-call', {});
    const result = await kongRequest(kong, id, {});
    expect(result.access.unexpected).toEqual(['kong.foo.bar']);
    expect(result.access.calls[0]).toEqual({ method: 'kong.foo.bar', args: ['baz'], error: 'unexpected PDK call kong.foo.bar' });
    // The JS PDK turns the StepError into a thrown PDKError with this message.
    expect(result.logs.map((l) => l.message)).toEqual(['PDK method kong.foo.bar failed:  unexpected PDK call kong.foo.bar']);
  });

  it('sends a handler\'s thrown Error as StepError and its return value as Step', async () => {
    const kong = side('target-from-config');
    const id = await kong.startInstance('target-from-config', { host: '127.0.0.1', port: backendPort });
    const run = await kong.runPhase(id, 'access', {
      'kong.request.get_header': () => {
        throw new Error('header store unavailable');
      },
    });
    // The fixture does not catch: the error ends its access phase, nothing else is called.
    expect(run.calls).toEqual([{ method: 'kong.request.get_header', args: ['X-Request-Tag'], error: 'header store unavailable' }]);
    expect(await serverOf('target-from-config').waitForStdout(`on instance #${id}: PDKError`)).toContain(
      `unhandled exception in target-from-config.access on instance #${id}: PDKError: PDK method kong.request.get_header failed:  header store unavailable`,
    );
  });

  it('gives up on a runaway plugin after maxStepsPerPhase calls instead of hanging', async () => {
    const kong = side('runaway');
    const id = await kong.startInstance('runaway', {});
    await expect(kong.runPhase(id, 'access', { 'kong.log.debug': () => null })).rejects.toThrow('runaway plugin: more than 50 PDK calls in one access phase');
  });
});
