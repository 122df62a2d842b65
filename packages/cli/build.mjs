// Bundles the CLI (and the fuzz runner) into one file each; the native modules (Dawn's npm `webgpu`, sharp's libvips, the FFI `koffi`) stay external.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu', 'sharp', 'koffi'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['src/main.ts'], outfile: 'dist/mpfgvc.js' });
// The fuzz campaigns (npm run fuzz): one file that is both the runner and its workers.
await build({ ...common, entryPoints: ['src/fuzz/main.ts'], outfile: 'dist/fuzz.js' });
chmodSync('dist/mpfgvc.js', 0o755);
