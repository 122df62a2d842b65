// The code in the READMEs is code: every ```ts block of the project's and the packages' READMEs is
// type-checked against the packages' published types, and run (all but ```ts no-run blocks, which
// need a browser) in a folder holding the model.safetensors and bird.png they name.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeExampleFiles } from './example-files.test-helper.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const READMES = ['README.md', 'packages/kernels/README.md', 'packages/model/README.md', 'packages/train/README.md', 'packages/cli/README.md'];

interface Example {
  name: string;
  code: string;
  run: boolean;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const file of READMES) {
    const text = readFileSync(join(repo, file), 'utf8');
    let n = 0;
    for (const m of text.matchAll(/^```ts( no-run)?\n([\s\S]*?)^```$/gm)) {
      n++;
      out.push({ name: `${file.replace(/\//g, '_').replace(/\.md$/, '')}_${n}`, code: m[2]!, run: !m[1] });
    }
  }
  return out;
}

// Inside the repository, so that '@mpfgvc/…' resolves to the workspace packages as an installed copy would.
const dir = join(repo, 'packages/cli/.readme-examples');
let work: string;
const all = examples();

beforeAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  // Type-checked as a user's strict project would be, against the packages' .d.ts.
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', lib: ['ES2023', 'DOM'], module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node', '@webgpu/types'], strict: true, noUncheckedIndexedAccess: true, noEmit: true, skipLibCheck: true, isolatedModules: true }, include: ['*.ts'] }),
  );
  for (const e of all) writeFileSync(join(dir, `${e.name}.ts`), `${e.code}\nexport {};\n`);
  // What the examples read: a trained-looking model file with class names, and a bird.
  work = mkdtempSync(join(tmpdir(), 'mpfgvc-examples-'));
  await writeExampleFiles(work, 4, 96, 3);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe('README examples', () => {
  it('there are examples in every package README and the project README', () => {
    for (const f of READMES) expect(all.some((e) => e.name.startsWith(f.replace(/\//g, '_').replace(/\.md$/, ''))), f).toBe(true);
  });

  it('type-check in a strict project', () => {
    const r = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' });
    expect(r.stdout + r.stderr, 'tsc').toBe('');
    expect(r.status).toBe(0);
  });

  it.each(all.filter((e) => e.run).map((e) => [e.name, e] as const))('%s runs and prints what it says', async (_name, e) => {
    const js = join(dir, `${e.name}.mjs`);
    writeFileSync(js, (await transform(e.code, { loader: 'ts', format: 'esm', target: 'node20' })).code);
    const r = spawnSync(process.execPath, [js], { encoding: 'utf8', cwd: work, timeout: 120_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).not.toBe('');
    expect(r.stdout).not.toMatch(/NaN|undefined/);
  });
});
