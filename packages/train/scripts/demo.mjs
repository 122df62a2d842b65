// Runs the demo once and prints each head's top-1 and the wall time: `node scripts/demo.mjs [outDir]`
// from packages/train after `npx tsc -b` (the numbers quoted in the README come from this).
import { rmSync } from 'node:fs';
import { runDemo } from '@mpfgvc/train';

const outDir = process.argv[2] ?? '/tmp/mpfgvc-demo';
rmSync(outDir, { recursive: true, force: true });
const t0 = performance.now();
const r = await runDemo({ outDir, log: (l) => console.log(l) });
const wall = (performance.now() - t0) / 1000;
const pct = (x) => `${(100 * x).toFixed(1)}%`;
console.log(`top-1: vision ${pct(r.top1.vision)}, text ${pct(r.top1.text)}, vlfm ${pct(r.top1.vlfm)}, ensemble ${pct(r.top1.ensemble)} (chance ${pct(r.chance)})`);
console.log(`wall time ${wall.toFixed(1)} s; model ${r.model}, metrics ${r.metrics}, checkpoint ${r.checkpoint}`);
