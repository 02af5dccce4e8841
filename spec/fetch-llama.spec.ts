// build/fetch-llama.js: what npm test's pretest left in .cache/llama is a llama-server that runs
// from this checkout without root — env.json agrees with testbed/lib/llama-process.ts, the wrapper
// script runs it, and (for Debian's download) every CPU backend ggml can pick is linked beside the
// loader, where ggml looks when the loader is the process's executable.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_PATH, LLAMA_SERVER_WRAPPER, PACKAGES, ensureLlama } from '../build/fetch-llama.js';
import { LLAMA_ENV_PATH, loadLlamaEnv } from '../testbed/lib/llama-process';

describe('fetch-llama', () => {
  it('writes the env.json the specs read, and is idempotent (a second run reads it back unchanged)', async () => {
    expect(ENV_PATH).toBe(LLAMA_ENV_PATH);
    const before = fs.readFileSync(ENV_PATH, 'utf8');
    const env = await ensureLlama({ quiet: true });
    expect(fs.readFileSync(ENV_PATH, 'utf8')).toBe(before);
    expect(env).toEqual(loadLlamaEnv());
    expect(env.version).toMatch(/^\d+\.\d+/);
  });

  it('its wrapper script runs llama-server', () => {
    const r = spawnSync(LLAMA_SERVER_WRAPPER, ['--version'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/version: \S+/);
  });

  it("Debian's download: the package set is recorded, and every CPU backend is linked beside the loader", () => {
    const env = loadLlamaEnv() as ReturnType<typeof loadLlamaEnv> & { root: string | null; packages: Array<{ name: string }> };
    if (env.source === 'system') return; // a llama-server on PATH finds its backends itself
    expect(env.packages.map((p) => p.name).sort()).toEqual(PACKAGES.slice().sort());
    const loaderDir = path.dirname(env.serverArgv[0]);
    const backends = fs.readdirSync(path.join(loaderDir, 'ggml', 'backends0')).filter((n) => n.startsWith('libggml-cpu-'));
    expect(backends.length).toBeGreaterThan(0);
    for (const name of backends) expect(fs.realpathSync(path.join(loaderDir, name))).toBe(fs.realpathSync(path.join(loaderDir, 'ggml', 'backends0', name)));
  });
});
