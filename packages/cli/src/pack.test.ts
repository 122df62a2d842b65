// The packages as a user gets them: `npm pack` of each, installed from the tarballs into an empty
// project (their other dependencies from the registry), then imported there to classify an image,
// and the installed `mpfgvc` binary run. Nothing of the workspace is on that project's path.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeExampleFiles } from './example-files.test-helper.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const PACKAGES = ['kernels', 'model', 'train', 'cli'];
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
let project: string;

beforeAll(async () => {
  project = mkdtempSync(join(tmpdir(), 'mpfgvc-pack-'));
  execFileSync(npm, ['pack', ...PACKAGES.flatMap((p) => ['-w', `packages/${p}`]), '--pack-destination', project, '--silent'], { cwd: repo, stdio: 'pipe' });
  const tarballs = readdirSync(project).filter((f) => f.endsWith('.tgz'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-mpfgvc', private: true, type: 'module', dependencies: Object.fromEntries(tarballs.map((t) => [`@mpfgvc/${t.replace(/^mpfgvc-(\w+)-.*$/, '$1')}`, `file:./${t}`])) }));
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: project, stdio: 'pipe', timeout: 600_000 });
  await writeExampleFiles(project, 3, 64, 5);
}, 900_000);

afterAll(() => rmSync(project, { recursive: true, force: true }));

describe('npm pack', () => {
  it('each package packs with its built files, types and no tests', () => {
    const files = JSON.parse(execFileSync(npm, ['pack', '--dry-run', '--json', ...PACKAGES.flatMap((p) => ['-w', `packages/${p}`])], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as { name: string; files: { path: string }[] }[];
    expect(files.map((f) => f.name).sort()).toEqual(PACKAGES.map((p) => `@mpfgvc/${p}`).sort());
    for (const f of files) {
      const paths = f.files.map((x) => x.path);
      expect(paths, f.name).toContain('package.json');
      expect(paths, f.name).toContain('README.md');
      expect(paths, f.name).toContain('dist/index.js');
      expect(paths, f.name).toContain('dist/index.d.ts');
      expect(paths.filter((p) => /\.test\.|^src\//.test(p)), f.name).toEqual([]);
    }
  });

  it('installs into an empty project, which imports it and classifies an image', () => {
    writeFileSync(
      join(project, 'classify.mjs'),
      `import { loadClassifier } from '@mpfgvc/train';
const c = await loadClassifier('model.safetensors');
const [r] = await c.classify(['bird.png'], { topK: 3 });
console.log(JSON.stringify({ classes: c.classes, top: r.top, resolved: import.meta.resolve('@mpfgvc/train') }));
c.dispose();
`,
    );
    const r = spawnSync(process.execPath, ['classify.mjs'], { cwd: project, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { classes: string[]; top: { name: string; p: number }[]; resolved: string };
    expect(out.resolved.startsWith(`file://${project}/node_modules/@mpfgvc/train/`)).toBe(true);
    expect(out.top).toHaveLength(3);
    expect(out.classes).toContain(out.top[0]!.name);
    expect(out.top.reduce((s, t) => s + t.p, 0)).toBeLessThanOrEqual(1 + 1e-6);
  });

  it('installs the mpfgvc binary', () => {
    const r = spawnSync(join(project, 'node_modules/.bin/mpfgvc'), ['predict', '--checkpoint', 'model.safetensors', 'bird.png', '--json'], { cwd: project, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { results: unknown[] }).results).toHaveLength(1);
  });
});
