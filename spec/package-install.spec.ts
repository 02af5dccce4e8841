// Install as a user would (issue 16): `npm pack` makes the package a user installs from its
// tarball; this spec installs it into an empty directory and, from there only, generates an nginx
// configuration that the real nginx accepts (`nginx -t`) and runs the Kong plugin from the
// installed files in the real kong-js-pluginserver, one request through it to a backend.
// The pack skips the prepack build (--ignore-scripts): npm test's pretest built dist/ already, and
// rebuilding it here would rewrite the bundles other specs' nginx are loading at the same time.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { loadNginxEnv, REPO_ROOT } from './helpers/nginx-env';
import { testConfig } from './helpers/nginx-process';
import { request } from './helpers/nginx-balancer';

function run(command: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

describe('the npm package, installed from its tarball into an empty directory', () => {
  let tmp = '';
  let app = '';
  let installed = '';
  let packed: PackResult;
  let backends: Backends | null = null;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-pack-'));
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], REPO_ROOT);
    if (pack.code !== 0) throw new Error(`npm pack failed (${pack.code}):\n${pack.stderr}`);
    packed = (JSON.parse(pack.stdout) as PackResult[])[0];
    app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'my-gateway', version: '1.0.0', private: true }, null, 2));
    // --offline: the package has no dependencies to fetch (its bundles carry what they use).
    const install = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(tmp, packed.filename)], app);
    if (install.code !== 0) throw new Error(`npm install of the tarball failed (${install.code}):\n${install.stderr}`);
    installed = path.join(app, 'node_modules', 'llm-balancer');
  }, 240_000);

  afterAll(async () => {
    await backends?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('holds the bundles, the CLI, the README, the license and an example, and none of the sources', () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const needed of ['bin/llm-balancer.js', 'dist/cli/llm-balancer.js', 'dist/kong/llm-balancer.js', 'dist/kong/package.json', 'dist/nginx/llm_balancer.js', 'README.md', 'LICENSE', 'package.json', 'plugins/nginx/example/balancer.yaml']) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => /^(shared|spec|testbed|build|bench|node_modules)\//.test(f) || /\.ts$/.test(f))).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.private).toBeUndefined();
    expect(manifest.license).toBe('Apache-2.0');
    // A pack from the repository builds first (skipped here, see the top).
    expect((JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.prepack).toBe('node build/build.js');
    expect(fs.readFileSync(path.join(installed, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
  });

  it('generates, from the install only, an nginx config that nginx -t accepts, loading the installed module', async () => {
    const env = loadNginxEnv();
    fs.writeFileSync(path.join(app, 'balancer.yaml'), ['strategy: least-connections', 'replicas:', '  - address: 127.0.0.1:9001', '  - address: 127.0.0.1:9002', ''].join('\n'));
    const out = path.join(app, 'nginx', 'nginx.conf');
    const cli = path.join(app, 'node_modules', '.bin', 'llm-balancer');
    const generated = await run(cli, ['nginx-config', 'balancer.yaml', '-o', out, '--module-path', env.modulePath], app, 30_000);
    expect(generated.code, generated.stderr).toBe(0);
    const conf = fs.readFileSync(out, 'utf8');
    expect(conf).toContain(`js_path "${path.join(installed, 'dist', 'nginx')}";`);
    const verdict = await testConfig(path.dirname(out), out);
    expect(verdict.ok, verdict.output).toBe(true);
  });

  it('runs the installed Kong plugin in the real plugin server: a request goes through it to a replica', async () => {
    backends = await startBackends(1);
    const gateway = await startKongGateway({
      config: { strategy: 'least-connections', replicas: [{ address: backends.list[0].address }] },
      pluginFile: path.join(installed, 'dist', 'kong', 'llm-balancer.js'),
    });
    try {
      const reply = await request(gateway.url + '/v1/chat/completions', { body: JSON.stringify({ model: 'm', messages: [] }), headers: { 'content-type': 'application/json' } });
      expect(reply.status).toBe(200);
      expect(backends.list[0].requests).toBe(1);
      expect(gateway.errors()).toEqual([]);
    } finally {
      await gateway.stop();
    }
  });
});
