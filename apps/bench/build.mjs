// Bundles the benchmark app into one file, the WebGPU peers (tfjs, jax-js) included so that a
// machine with only Node and Dawn runs them too; Dawn's native module (npm `webgpu`) stays external,
// and so does node-fetch, which tfjs-core loads only where Node has no fetch (before Node 18).
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/bench.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'sharp', 'node-fetch', 'koffi'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
chmodSync('dist/bench.js', 0o755);
