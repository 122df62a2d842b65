import { defineConfig } from 'vitest/config';

// The browser tests share one Chromium and one software adapter: one file at a time.
export default defineConfig({
  test: { include: ['src/**/*.test.ts'], fileParallelism: false, testTimeout: 300_000, hookTimeout: 300_000 },
});
