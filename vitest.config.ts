import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['spec/**/*.spec.ts'],
    environment: 'node',
    // Child processes (nginx, njs, kong-js-pluginserver) are spawned by specs: forks keep each
    // spec file in its own process, so a crashed or killed worker takes nothing else down.
    pool: 'forks',
    // 2 cores: two spec files at a time; integration specs spend most of their time waiting.
    maxWorkers: 2,
    // Integration specs start real gateway processes; unit specs finish far below this.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 10_000,
    watch: false,
  },
});
