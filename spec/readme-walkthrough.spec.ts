// The README's NGINX walkthrough works as written: this spec reads the code blocks between the
// walkthrough markers of README.md's "NGINX: install and configure" section and runs them in order
// — provision, the balancer file, generate, `nginx -t`, start, a chat completion through nginx to
// an emulated replica, the status page, stop — changing only what it must: the ports (free ones,
// the emulated replicas'), and the folder (a temporary one instead of the checkout). Every such
// change must match the README once at least, so an edit there that this spec no longer follows
// fails here instead of drifting.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplicas } from '../testbed/emulator/index';
import { REPO_ROOT } from './helpers/nginx-env';
import { freePort } from './helpers/nginx-process';

const run = promisify(execFile);

interface Block {
  language: string;
  /** The block's lines, the README's list indentation removed. */
  lines: string[];
}

/** The fenced code blocks between the walkthrough markers of the NGINX section. */
function walkthroughBlocks(readme: string): Block[] {
  const section = readme.slice(readme.indexOf('## NGINX: install and configure'));
  const start = section.indexOf('<!-- walkthrough:start -->');
  const end = section.indexOf('<!-- walkthrough:end -->');
  if (start < 0 || end < start) throw new Error('README.md: the NGINX section has no walkthrough markers');
  const blocks: Block[] = [];
  const lines = section.slice(start, end).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w+)\s*$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i].slice(indent));
    blocks.push({ language: open[2], lines: body });
  }
  return blocks;
}

/** Applies `[from, to]` replacements; each must match at least once across the walkthrough. */
function substituter(pairs: [string, string][]) {
  const used = pairs.map(() => 0);
  return {
    apply(text: string): string {
      let out = text;
      pairs.forEach(([from, to], i) => {
        if (!out.includes(from)) return;
        used[i]++;
        out = out.split(from).join(to);
      });
      return out;
    },
    unused: () => pairs.filter((_pair, i) => used[i] === 0).map(([from]) => from),
  };
}

async function sh(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('/bin/sh', ['-c', command], { cwd: REPO_ROOT, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('timed out waiting for ' + what);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let folder = '';
let emulator: EmulatedReplicas | null = null;
/** The nginx master this spec started (from its pid file), stopped in afterAll if still running. */
let nginxPid = 0;

beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-walkthrough-'));
  // mkdtemp makes it 0700; run as root, nginx's workers (nobody) must reach the prefix's temp/.
  fs.chmodSync(folder, 0o755);
  emulator = await startEmulatedReplicas(
    [
      { name: 'gpu-a', profile: 'h100' },
      { name: 'gpu-b', profile: 'h100' },
    ],
    { timeScale: 0.01 },
  );
});

afterAll(async () => {
  if (nginxPid > 0 && alive(nginxPid)) {
    process.kill(nginxPid, 'SIGTERM');
    await until('nginx to stop', () => !alive(nginxPid), 5_000).catch(() => process.kill(nginxPid, 'SIGKILL'));
  }
  await emulator?.close();
  if (folder) fs.rmSync(folder, { recursive: true, force: true });
});

describe('the README NGINX walkthrough, step by step', () => {
  it('provision, describe, generate, nginx -t, start, a completion, the status page, stop', async () => {
    const blocks = walkthroughBlocks(fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8'));
    expect(blocks.map((b) => b.language)).toEqual(['sh', 'yaml', 'sh', 'sh', 'sh', 'sh']);
    const [build, balancerFile, generate, startNginx, request, stop] = blocks;
    const replicas = emulator!.replicas;
    const port = await freePort();
    const prefix = path.join(folder, 'llm');
    const change = substituter([
      ['127.0.0.1:8001', replicas[0].address],
      ['127.0.0.1:8002', replicas[1].address],
      ['127.0.0.1:8080', `127.0.0.1:${port}`],
      ['my-balancer.yaml', path.join(folder, 'my-balancer.yaml')],
      [' llm/nginx.conf', ' ' + path.join(prefix, 'nginx.conf')],
      ['"$PWD/llm"', JSON.stringify(prefix)],
    ]);

    // 1. Build and provision. The suite has built already (npm test's pretest): the build line is
    // checked, not run; provisioning is run (cached, it answers in milliseconds).
    expect(build.lines).toEqual(['npm ci && npm run build', 'node build/fetch-nginx.js']);
    expect(fs.existsSync(path.join(REPO_ROOT, 'dist', 'nginx', 'llm_balancer.js'))).toBe(true);
    expect(fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'llm-balancer.js'))).toBe(true);
    const provision = await sh(build.lines[1]);
    expect(provision.code).toBe(0);
    expect(fs.existsSync(path.join(REPO_ROOT, '.cache', 'nginx', 'bin', 'nginx'))).toBe(true);

    // 2. The balancer file: its first line names it.
    const name = /^# (\S+)$/.exec(balancerFile.lines[0]);
    expect(name?.[1]).toBe('my-balancer.yaml');
    fs.writeFileSync(change.apply(name![1]), change.apply(balancerFile.lines.join('\n')) + '\n');

    // 3. Generate: nothing but the config (and its JSON, logs/, temp/) in a fresh folder.
    expect(generate.lines).toHaveLength(1);
    const generated = await sh(change.apply(generate.lines[0]));
    expect(generated.stderr).toContain('wrote ' + path.join(prefix, 'nginx.conf'));
    expect(generated.code).toBe(0);
    expect(fs.readdirSync(prefix).sort()).toEqual(['logs', 'nginx.conf', 'nginx.conf.json', 'temp']);

    // 4. nginx -t, then start (daemonised, as the README runs it).
    expect(startNginx.lines).toHaveLength(2);
    const tested = await sh(change.apply(startNginx.lines[0]));
    expect(tested.stderr).toContain('test is successful');
    expect(tested.code).toBe(0);
    const started = await sh(change.apply(startNginx.lines[1]));
    expect(started.code).toBe(0);
    await until('nginx.pid', () => fs.existsSync(path.join(prefix, 'nginx.pid')));
    nginxPid = Number(fs.readFileSync(path.join(prefix, 'nginx.pid'), 'utf8').trim());
    await until(`nginx on port ${port}`, () => accepts(port));

    // 5. A chat completion through nginx to an emulated replica, then the status page.
    expect(request.lines).toHaveLength(2);
    const completion = await sh(change.apply(request.lines[0]));
    expect(completion.code).toBe(0);
    const answer = JSON.parse(completion.stdout) as { object: string; choices: { message: { content: string } }[] };
    expect(answer.object).toBe('chat.completion');
    expect(answer.choices[0].message.content.length).toBeGreaterThan(0);
    expect(replicas[0].stats().requests + replicas[1].stats().requests).toBe(1);
    const status = await sh(change.apply(request.lines[1]));
    expect(status.code).toBe(0);
    const rows = (JSON.parse(status.stdout) as { replicas: { id: string; address: string; picks: number; in_flight: number }[] }).replicas;
    expect(rows.map((r) => [r.id, r.address])).toEqual([
      ['gpu-a', replicas[0].address],
      ['gpu-b', replicas[1].address],
    ]);
    expect(rows.reduce((sum, r) => sum + r.picks, 0)).toBe(1);
    expect(rows.map((r) => r.in_flight)).toEqual([0, 0]);
    // The error log the generated config names is where the README's prefix says.
    expect(fs.existsSync(path.join(prefix, 'logs', 'error.log'))).toBe(true);

    // 6. Stop.
    expect(stop.lines).toHaveLength(1);
    const stopped = await sh(change.apply(stop.lines[0]));
    expect(stopped.code).toBe(0);
    await until('nginx to exit', () => !alive(nginxPid));
    expect(await accepts(port)).toBe(false);

    // Every change this spec makes matched the README: none is stale.
    expect(change.unused()).toEqual([]);
  });
});
