// build/fetch-nginx.js's pure parts: the generations (folders, package sets), the command line, the
// one-line failure of --optional; and that the folders agree with testbed/lib/nginx-env.ts, which
// cannot import build/ (npm start bundles it).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CACHE_DIR,
  DEFAULT_GENERATION,
  ENV_PATH,
  FORKY_PACKAGES,
  GENERATIONS,
  generationConfig,
  MODULE_LINK,
  NGINX_WRAPPER,
  oneLine,
  PACKAGES,
  parseArgs,
} from '../build/fetch-nginx.js';
import { ProvisionError } from '../build/private-apt.js';
import { DEFAULT_NGINX_GENERATION, loadNginxEnv, NGINX_ENV_PATH, NGINX_GENERATIONS, nginxEnvPath, REPO_ROOT } from './helpers/nginx-env';

describe('generations', () => {
  it('the default is trixie in .cache/nginx, exactly the paths of before', () => {
    expect(DEFAULT_GENERATION).toBe('trixie');
    expect(CACHE_DIR).toBe(path.join(REPO_ROOT, '.cache', 'nginx'));
    expect(ENV_PATH).toBe(path.join(CACHE_DIR, 'env.json'));
    expect(NGINX_WRAPPER).toBe(path.join(CACHE_DIR, 'bin', 'nginx'));
    expect(MODULE_LINK).toBe(path.join(CACHE_DIR, 'modules', 'ngx_http_js_module.so'));
    expect(generationConfig().envPath).toBe(ENV_PATH);
  });

  it('forky has its own folder, env.json, lock, root, wrapper and module link', () => {
    const forky = generationConfig('forky');
    const dir = path.join(REPO_ROOT, '.cache', 'nginx-forky');
    expect(forky).toMatchObject({
      suite: 'forky',
      cacheDir: dir,
      envPath: path.join(dir, 'env.json'),
      lockDir: path.join(dir, '.lock'),
      rootDir: path.join(dir, 'root'),
      wrapper: path.join(dir, 'bin', 'nginx'),
      moduleLink: path.join(dir, 'modules', 'ngx_http_js_module.so'),
      needsQjs: true,
      system: false,
    });
  });

  it('testbed/lib/nginx-env.ts knows the same generations, default and env.json paths', () => {
    expect([...NGINX_GENERATIONS].sort()).toEqual(Object.keys(GENERATIONS).sort());
    expect(DEFAULT_NGINX_GENERATION).toBe(DEFAULT_GENERATION);
    expect(NGINX_ENV_PATH).toBe(ENV_PATH);
    for (const name of NGINX_GENERATIONS) expect(nginxEnvPath(name)).toBe(generationConfig(name).envPath);
  });

  it('forky = trixie with libxml2 -> libxml2-16, + libqjs0, - liblzma5', () => {
    const expected = PACKAGES.filter((p) => p !== 'libxml2' && p !== 'liblzma5').concat(['libxml2-16', 'libqjs0']);
    expect([...FORKY_PACKAGES].sort()).toEqual(expected.sort());
    expect(new Set(FORKY_PACKAGES).size).toBe(FORKY_PACKAGES.length);
  });

  it('an unknown generation is a ProvisionError naming the known ones', () => {
    expect(() => generationConfig('sid')).toThrow(ProvisionError);
    expect(() => generationConfig('sid')).toThrow(/known: trixie, forky/);
    expect(() => generationConfig('toString')).toThrow(ProvisionError);
    expect(() => nginxEnvPath('sid' as never)).toThrow(/unknown nginx generation/);
  });

  it("the default generation's env.json records its engines (npm test's pretest provisions it)", () => {
    const env = loadNginxEnv();
    expect(env.generation).toBe('trixie');
    expect(env.engines).toContain('njs');
    if (env.source === 'debian-trixie') {
      // Debian's njs 0.8.9 is built without QuickJS, module and CLI alike.
      expect(env.engines).toEqual(['njs']);
      expect(env.njsQjsArgv).toBeNull();
    }
  });
});

describe('parseArgs', () => {
  const base = { generation: 'trixie', force: false, allowSystem: undefined, quiet: false, optional: false };
  it.each([
    [[], base],
    [['--force', '--quiet'], { ...base, force: true, quiet: true }],
    [['--no-system'], { ...base, allowSystem: false }],
    [['--generation', 'forky'], { ...base, generation: 'forky' }],
    [['--generation=forky', '--optional'], { ...base, generation: 'forky', optional: true }],
    [['--generation', 'trixie', '--force'], { ...base, force: true }],
  ])('%j', (argv, expected) => {
    expect(parseArgs(argv)).toEqual(expected);
  });

  it.each([
    [['--generation'], /needs a value/],
    [['--generation', 'bookworm'], /unknown nginx generation "bookworm"/],
    [['--forky'], /unknown argument "--forky"/],
  ])('%j is refused', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(ProvisionError);
    expect(() => parseArgs(argv)).toThrow(message);
  });
});

describe('oneLine (what --optional prints when provisioning fails)', () => {
  it.each([
    ['a single line', 'a single line'],
    ['  \n', 'unknown error'],
    ['nginx 1.20.1 < 1.29.0 (forky)\n', 'nginx 1.20.1 < 1.29.0 (forky)'],
    [
      'apt-get update could not fetch the forky package index from http://deb.debian.org/debian:\nErr:1 http://deb.debian.org/debian forky InRelease\n  Could not connect\nW: Failed to fetch http://x/InRelease  Could not connect to 127.0.0.1:9\nW: Some index files failed to download.',
      'apt-get update could not fetch the forky package index from http://deb.debian.org/debian: W: Failed to fetch http://x/InRelease  Could not connect to 127.0.0.1:9',
    ],
    ['apt-get download failed (exit 100):\nReading package lists...\nE: Unable to locate package libqjs0', 'apt-get download failed (exit 100): E: Unable to locate package libqjs0'],
    ['the downloaded package set is incomplete (add ...):\n  njs: libqjs.so.0 => not found', 'the downloaded package set is incomplete (add ...): njs: libqjs.so.0 => not found'],
  ])('%j', (message, expected) => {
    expect(oneLine(message)).toBe(expected);
  });
});
