#!/usr/bin/env node
// Regenerates every golden fixture from its independent PyTorch generator, from the repository root,
// and records in packages/model/fixtures/fixtures.json which scripts wrote each file (their sha256)
// and with which torch. packages/model/src/fixtures.test.ts recomputes those hashes, so a generator
// changed after its fixtures were written fails the tests without Python.
//
//   npm run fixtures                      every generator
//   PYTHON=/path/to/python3 npm run fixtures
//
// The interpreter is $PYTHON, else /usr/bin/python3, else python3 on PATH; it needs torch. As the
// generators' own docstrings say to run them: one OpenMP thread, and Debian's OpenMP OpenBLAS where
// it is installed (the reference BLAS is far slower). The Stanford Dogs .mat fixtures of
// packages/train/src/datasets/fixtures were written once by scipy.io.savemat and have no generator.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPTS = 'packages/model/scripts';
const FIXTURES = 'packages/model/fixtures';
const MANIFEST = join(FIXTURES, 'fixtures.json');
const OPENBLAS_OPENMP = '/usr/lib/x86_64-linux-gnu/openblas-openmp';

/** Each generator and the files it writes into FIXTURES. */
const GENERATORS = [
  {
    script: `${SCRIPTS}/vit_fixtures.py`,
    writes: ['vit_timm.safetensors', 'vit_timm.golden.safetensors', 'vit_hf.safetensors', 'vit_hf.golden.safetensors', 'vit_clip.safetensors', 'vit_clip.golden.safetensors', 'vit_pos_embed.safetensors'],
  },
  { script: `${SCRIPTS}/text_fixtures.py`, writes: ['tokenizer-clip-tiny.json', 'tokenizer-cases.json', 'text_clip_tiny.safetensors'] },
  { script: `${SCRIPTS}/vlfm_fixtures.py`, writes: ['vlfm.safetensors'] },
  { script: `${SCRIPTS}/mpfgvc_fixtures.py`, writes: ['mpfgvc.safetensors'] },
];

function fail(message) {
  process.stderr.write(`fixtures: ${message}\n`);
  process.exit(1);
}

/** The script and every module of its folder it imports, directly or not (repository-relative paths, script first). */
function sources(script) {
  const seen = [script];
  for (let i = 0; i < seen.length; i++) {
    const text = readFileSync(join(root, seen[i]), 'utf8');
    for (const m of text.matchAll(/^\s*(?:import\s+(\w+)|from\s+(\w+)\s+import)\b/gm)) {
      const local = `${dirname(seen[i])}/${m[1] ?? m[2]}.py`;
      if (existsSync(join(root, local)) && !seen.includes(local)) seen.push(local);
    }
  }
  return seen;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** sha256 of `sha256sum <sources>`'s output: one line `<hash>  <path>` per source, in order. */
function generatorHash(files) {
  return sha256(files.map((f) => `${sha256(readFileSync(join(root, f)))}  ${f}\n`).join(''));
}

function findPython() {
  if (process.env.PYTHON) return process.env.PYTHON;
  if (existsSync('/usr/bin/python3')) return '/usr/bin/python3';
  return 'python3';
}

const python = findPython();
const env = { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' };
if (existsSync(OPENBLAS_OPENMP)) env.LD_LIBRARY_PATH = [OPENBLAS_OPENMP, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');

const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { cwd: root, env, encoding: 'utf8' });
if (probe.error) fail(`cannot run ${python} (${probe.error.message}); set PYTHON to a Python 3 with torch`);
if (probe.status !== 0) fail(`${python} has no torch (${(probe.stderr.trim().split('\n').pop() ?? '').trim()}); install it (Debian: apt install python3-torch) or set PYTHON to a Python 3 with torch`);
const torch = probe.stdout.trim();

const manifest = {};
for (const g of GENERATORS) {
  const started = Date.now();
  process.stderr.write(`fixtures: ${g.script} (torch ${torch})\n`);
  const r = spawnSync(python, [g.script], { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error || r.status !== 0) fail(`${g.script} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
  const from = sources(g.script);
  const hash = generatorHash(from);
  for (const file of g.writes) {
    const path = join(root, FIXTURES, file);
    if (!existsSync(path) || statSync(path).mtimeMs < started - 1000) fail(`${g.script} did not write ${relative(root, path)}; update GENERATORS in scripts/fixtures.mjs`);
    manifest[file] = { generator: g.script, sources: from, generatorSha256: hash, torch };
  }
}

const unlisted = readdirSync(join(root, FIXTURES)).filter((f) => f !== 'fixtures.json' && !(f in manifest));
if (unlisted.length) fail(`no generator writes ${unlisted.map((f) => `${FIXTURES}/${f}`).join(', ')}; add it to GENERATORS in scripts/fixtures.mjs`);

const sorted = Object.fromEntries(Object.keys(manifest).sort().map((k) => [k, manifest[k]]));
writeFileSync(join(root, MANIFEST), `${JSON.stringify(sorted, null, 2)}\n`);
process.stderr.write(`fixtures: wrote ${MANIFEST} (${Object.keys(sorted).length} files)\n`);
