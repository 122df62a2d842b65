import { defineConfig } from 'vitest/config';

// GPU tests share one software adapter: run files one after another.
export default defineConfig({
  test: { include: ['src/**/*.test.ts'], fileParallelism: false, testTimeout: 120_000, hookTimeout: 120_000 },
});
