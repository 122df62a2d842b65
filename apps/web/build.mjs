// Bundles the page for browsers: src/app.ts and the engine it imports (kernels, model, the
// browser-safe part of train) into dist/app.js, beside the page's HTML and CSS. Node's Dawn
// loader stays a dynamic import that a page never reaches, so `webgpu` and `node:*` are left out;
// the kernels package's `browser` field leaves out its stderr filter for Dawn (FFI through `koffi`).
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [join(here, 'src/app.ts')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome113', 'safari17', 'firefox128'],
  external: ['node:*', 'webgpu'],
  sourcemap: true,
  minify: true,
  metafile: true,
  logLevel: 'warning',
});
const bundled = Object.keys(result.metafile.inputs).filter((f) => /node_modules\/(sharp|@img|koffi)\//.test(f) || (/native-stderr/.test(f) && !f.startsWith('(disabled):')));
if (bundled.length) throw new Error(`the page's bundle pulled in Node-only modules: ${bundled.join(', ')}`);
for (const f of ['index.html', 'style.css']) await copyFile(join(here, 'src', f), join(out, f));
