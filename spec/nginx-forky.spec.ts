// The second nginx generation (`node build/fetch-nginx.js --generation forky`: Debian testing's nginx
// 1.30 + njs 1.0 with QuickJS, in .cache/nginx-forky) does what the specs that run the module under
// QuickJS will need: `nginx -t` takes `js_engine qjs` with a shared dict zone, a module under QuickJS
// answers through the real nginx, and the njs CLI runs a module under QuickJS.
// Skips, saying why, ONLY when forky is not provisioned: npm test's pretest provisions it with
// --optional, so a machine that cannot reach Debian's mirror still runs every other spec.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNginxEnv, REPO_ROOT, runNjs, tryLoadNginxEnv } from './helpers/nginx-env';
import type { NginxEnv } from './helpers/nginx-env';
import { createPrefix, freePort, startNginx, testConfig } from './helpers/nginx-process';
import type { NginxInstance, NginxPrefix } from './helpers/nginx-process';

const forky = tryLoadNginxEnv('forky');
if (!forky.env) process.stderr.write(`spec/nginx-forky: SKIPPED, nginx forky is not provisioned: ${forky.reason}\n`);
const title = forky.env ? 'nginx forky (njs 1.0, QuickJS)' : `nginx forky: SKIPPED, not provisioned (${forky.reason})`;

function majorMinor(version: string): number[] {
  return version.split('.').slice(0, 2).map(Number);
}

/** A module whose answer tells which engine ran it, a shared-dict count per engine and a module-level count. */
const MODULE = [
  'let served = 0;',
  'function hello(r) {',
  '  served += 1;',
  '  const hits = ngx.shared.llmb_hits.incr(njs.engine, 1);',
  '  r.return(200, JSON.stringify({ engine: njs.engine, version: njs.version, hits: hits, served: served }));',
  '}',
  'export default { hello };',
  '',
].join('\n');

/** One worker, so sequential requests meet the same engine state; `server` is the server block (or ''). */
function confFor(env: NginxEnv, prefix: NginxPrefix, engine: string | null, server: string): string {
  return [
    `load_module ${env.modulePath};`,
    'pid nginx.pid;',
    'worker_processes 1;',
    'events {}',
    'http {',
    '  access_log off;',
    '  client_body_temp_path temp/cb; proxy_temp_path temp/p; fastcgi_temp_path temp/f; uwsgi_temp_path temp/u; scgi_temp_path temp/s;',
    engine ? `  js_engine ${engine};` : '',
    `  js_path ${prefix.dir};`,
    '  js_import hello.js;',
    '  js_shared_dict_zone zone=llmb_hits:64k type=number;',
    server,
    '}',
    '',
  ].join('\n');
}

describe.skipIf(!forky.env)(title, () => {
  const env = forky.env as NginxEnv;

  it('env.json: Debian forky, nginx >= 1.29 and njs >= 1.0, engines njs and qjs, the CLI run as `njs -n QuickJS -m`', () => {
    expect(env.generation).toBe('forky');
    expect(env.source).toBe('debian-forky');
    expect(env.root).toBe(`${REPO_ROOT}/.cache/nginx-forky/root`);
    const nginx = majorMinor(env.nginxVersion);
    expect(nginx[0] > 1 || nginx[1] >= 29, env.nginxVersion).toBe(true);
    expect(majorMinor(env.njsVersion)[0], env.njsVersion).toBeGreaterThanOrEqual(1);
    expect(env.engines).toEqual(['njs', 'qjs']);
    expect(env.njsQjsArgv).toEqual(env.njsArgv.concat(['-n', 'QuickJS', '-m']));
    const names = env.packages.map((p) => p.name);
    expect(names).toEqual(expect.arrayContaining(['libqjs0', 'libxml2-16', 'libnginx-mod-http-js', 'njs', 'wrk']));
  });

  describe('nginx -t', () => {
    const prefixes: NginxPrefix[] = [];
    afterAll(() => {
      for (const prefix of prefixes) prefix.remove();
    });

    async function check(generation: 'trixie' | 'forky', engine: string) {
      const prefix = createPrefix(`forky-t-${generation}`);
      prefixes.push(prefix);
      prefix.write('hello.js', MODULE);
      const confPath = prefix.write('nginx.conf', confFor(loadNginxEnv(generation), prefix, engine, ''));
      return testConfig(prefix.dir, confPath, generation);
    }

    it.each(['qjs', 'njs'])('accepts js_engine %s with a js_shared_dict_zone', async (engine) => {
      const r = await check('forky', engine);
      expect(r.output).toContain('test is successful');
      expect(r.ok).toBe(true);
    });

    it("the default generation's verdict on js_engine qjs is what its env.json records", async () => {
      const trixie = loadNginxEnv();
      const r = await check('trixie', 'qjs');
      expect(r.ok, r.output).toBe(trixie.engines.includes('qjs'));
      // Debian trixie's njs 0.8.9 is built without QuickJS: "invalid value "qjs"".
      if (trixie.source === 'debian-trixie') expect(r.output).toMatch(/invalid value "qjs"/);
    });
  });

  describe('a module in the real nginx', () => {
    let prefix: NginxPrefix;
    let nginx: NginxInstance;

    beforeAll(async () => {
      prefix = createPrefix('forky-qjs');
      prefix.write('hello.js', MODULE);
      const port = await freePort();
      const server = [
        '  server {',
        `    listen 127.0.0.1:${port};`,
        '    location /qjs { js_engine qjs; js_content hello.hello; }',
        '    location /njs { js_engine njs; js_content hello.hello; }',
        '  }',
      ].join('\n');
      nginx = await startNginx({ conf: confFor(env, prefix, null, server), port, prefix, generation: 'forky' });
    });

    afterAll(async () => {
      await nginx?.stop();
      prefix?.remove();
    });

    async function get(path: string): Promise<{ engine: string; version: string; hits: number; served: number }> {
      const response = await fetch(nginx.url(path));
      expect(response.status).toBe(200);
      return (await response.json()) as { engine: string; version: string; hits: number; served: number };
    }

    it('answers under QuickJS next to the njs engine; shared-dict counts add up in both, module state persists only under QuickJS', async () => {
      const qjs = [];
      const njs = [];
      for (let i = 0; i < 3; i++) {
        qjs.push(await get('/qjs'));
        njs.push(await get('/njs'));
      }
      expect(qjs.map((a) => a.engine)).toEqual(['QuickJS', 'QuickJS', 'QuickJS']);
      expect(njs.map((a) => a.engine)).toEqual(['njs', 'njs', 'njs']);
      expect(qjs[0].version).toBe(env.njsVersion);
      expect(qjs.map((a) => a.hits)).toEqual([1, 2, 3]);
      expect(njs.map((a) => a.hits)).toEqual([1, 2, 3]);
      // QuickJS reuses a finished context without re-evaluating the module (js_context_reuse, default
      // 128): a module-level variable outlives the request. The njs engine clones a fresh VM each time.
      expect(qjs.map((a) => a.served)).toEqual([1, 2, 3]);
      expect(njs.map((a) => a.served)).toEqual([1, 1, 1]);
      expect(nginx.stderr()).not.toMatch(/\[(emerg|alert|crit|error)\]/);
    });
  });

  describe('the njs CLI under QuickJS', () => {
    let prefix: NginxPrefix;
    beforeAll(() => {
      prefix = createPrefix('forky-cli');
      // What the njs engine cannot load (class, for...of, spread): proof that QuickJS ran it.
      prefix.write(
        'lib.js',
        'class Greeter { greet(names) { const out = []; for (const n of [...names]) out.push("hello " + n); return out.join(", "); } }\nexport default new Greeter();\n',
      );
    });
    afterAll(() => prefix?.remove());

    it('runs a module that imports another one from -p', async () => {
      const r = await runNjs("import lib from 'lib.js';\nconsole.log(lib.greet(['a', 'b']) + ' from ' + njs.engine);\n", {
        generation: 'forky',
        engine: 'qjs',
        path: [prefix.dir],
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('hello a, hello b from QuickJS');
    });

    it('the same module does not load in the njs engine (so the argv matters)', async () => {
      const r = await runNjs("import lib from 'lib.js';\nconsole.log(lib.greet(['a']));\n", { generation: 'forky', path: [prefix.dir] });
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/SyntaxError/);
    });
  });
});
