// Bundles the CLI into one file; the native modules (Dawn's npm `webgpu`, sharp's libvips) stay external.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/mpfgvc.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'sharp'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
chmodSync('dist/mpfgvc.js', 0o755);
