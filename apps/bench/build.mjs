// Bundles the benchmark app into one file; Dawn's native module (npm `webgpu`) stays external.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/bench.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'sharp'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
chmodSync('dist/bench.js', 0o755);
