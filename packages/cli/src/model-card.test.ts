// The model card a run writes (README.md in its folder) and `eval --by-class`, end to end through the
// built bundle (build first: npx tsc -b && node build.mjs) on a tiny synthetic run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/mpfgvc.js', import.meta.url));
let tmp: string;

function mpfgvc(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
/** A Markdown table row's cells. */
const cells = (line: string) => line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
const json = (path: string) => JSON.parse(readFileSync(join(tmp, path), 'utf8'));

const TINY = ['--data', 'synth', '--classes', '3', '--per-class', '8', '--test-per-class', '2', '--stage1-epochs', '1', '--stage2-epochs', '1', '--stage1-batch', '8', '--stage2-batch', '8', '--eval-batch', '8'];

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'mpfgvc-card-'));
  const r = mpfgvc('train', ...TINY, '--out', 'run', '--quiet');
  expect(r.code, r.stderr).toBe(0);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the model card of a run', () => {
  it("gives each head's test top-1/top-5 at each stage's end as eval-stageN.json has them, and the worst classes", () => {
    const card = readFileSync(join(tmp, 'run', 'README.md'), 'utf8');
    const lines = card.split('\n');
    const header = lines.findIndex((l) => l.startsWith('| head | stage 1 top-1 |'));
    expect(cells(lines[header]!)).toEqual(['head', 'stage 1 top-1', 'stage 1 top-5', 'stage 2 top-1', 'stage 2 top-5']);
    const [one, two] = [json('run/eval-stage1.json'), json('run/eval-stage2.json')];
    expect(two.heads).toEqual(['vision', 'text', 'vlfm', 'ensemble']);
    for (const h of two.heads) {
      const row = cells(lines.find((l) => l.startsWith(`| ${h} |`))!);
      const s1 = h in one.top1 ? [pct(one.top1[h]), pct(one.top5[h])] : ['-', '-'];
      expect(row, h).toEqual([h, ...s1, pct(two.top1[h]), pct(two.top5[h])]);
    }
    expect(card).toContain(`Trained both stages; ensemble top-1 ${pct(two.top1.ensemble)} on 6 test images.`);
    // Three classes: all of them are among the five worst, each with its two test images.
    const from = lines.findIndex((l) => l.startsWith('## Worst classes'));
    const to = lines.findIndex((l, i) => i > from && l.startsWith('## '));
    const worst = lines.slice(from, to).filter((l) => /^\| \S/.test(l) && !l.startsWith('| class'));
    expect(worst).toHaveLength(3);
    const accuracy = worst.map((l) => Number(cells(l)[2]!.replace('%', '')));
    expect(accuracy).toEqual([...accuracy].sort((a, b) => a - b));
    for (const l of worst) expect(cells(l)[1]).toBe('2');
    expect(card).toContain('![confusion matrix at the end of stage 2](confusion-stage2.svg)');
    expect(existsSync(join(tmp, 'run', 'confusion-stage2.svg'))).toBe(true);
    expect(existsSync(join(tmp, 'run', 'confusion-stage1.svg'))).toBe(true);
    expect(existsSync(join(tmp, 'run', 'confusion-stage2.csv'))).toBe(true);
  });

  it('names a command that trains the same run again', () => {
    const card = readFileSync(join(tmp, 'run', 'README.md'), 'utf8');
    const command = /```sh\n(.*)\n```/.exec(card)![1]!;
    expect(command).toBe(`cd ${tmp} && mpfgvc train --config run/cli.json --out run-again`);
    const again = spawnSync('sh', ['-c', command.replace(' mpfgvc ', ` ${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} `) + ' --quiet'], { encoding: 'utf8', timeout: 120_000 });
    expect(again.status, again.stderr).toBe(0);
    expect(json('run-again/eval-stage2.json').top1).toEqual(json('run/eval-stage2.json').top1);
    // A run lengthened into a branch names the branch's own flags.
    const longer = mpfgvc('train', '--resume', 'run', '--stage2-epochs', '2', '--out', 'run-longer', '--quiet');
    expect(longer.code, longer.stderr).toBe(0);
    expect(readFileSync(join(tmp, 'run-longer', 'README.md'), 'utf8')).toContain(`cd ${tmp} && mpfgvc train --config run-longer/cli.json --out run-longer-again\n`);
  });
});

describe('the model card of the demo', () => {
  it('shows the curves the demo draws after training, and the demo command that trains it again', () => {
    const r = mpfgvc('demo', '--out', 'demo', '--classes', '3', '--epochs', '1,1', '--explain', '0');
    expect(r.code, r.stderr).toBe(0);
    const card = readFileSync(join(tmp, 'demo', 'README.md'), 'utf8');
    expect(card).toContain('![loss per stage and top-1 per head](curves.png)');
    expect(card).toContain(`cd ${tmp} && mpfgvc demo --config demo/cli.json --out demo-again\n`);
    expect(card).toContain(`ensemble top-1 ${pct(json('demo/eval-stage2.json').top1.ensemble)}`);
  });
});

describe('mpfgvc eval --by-class', () => {
  it('prints a row per class, worst first, and writes the confusion matrix as SVG and PNG beside --out', async () => {
    const r = mpfgvc('eval', 'run', '--by-class', '--out', 'eval.json');
    expect(r.code, r.stderr).toBe(0);
    const classes: string[] = json('eval.json').classes;
    const out = r.stdout.split('\n');
    const at = out.findIndex((l) => l === 'per class, worst ensemble top-1 first:');
    expect(out[at + 1]).toMatch(/^class +images +vision +text +vlfm +ensemble  most often taken for$/);
    const rows = out.slice(at + 2, at + 2 + classes.length);
    for (const c of classes) expect(rows.filter((l) => l.startsWith(c.slice(0, 30))), c).toHaveLength(1);
    // The fourth percentage of a row is the ensemble's (vision, text, vlfm, ensemble).
    const ensemble = rows.map((l) => Number([...l.matchAll(/(\d+\.\d+)%/g)][3]![1]));
    expect(ensemble).toEqual([...ensemble].sort((a, b) => a - b));
    expect(r.stdout).toContain('wrote eval-confusion.svg\nwrote eval-confusion.png\n');
    expect((await sharp(join(tmp, 'eval-confusion.png')).metadata()).format).toBe('png');

    const j = mpfgvc('eval', 'run', '--by-class', '--json');
    expect(j.code, j.stderr).toBe(0);
    const byClass = JSON.parse(j.stdout).byClass as { class: string; count: number; top1: Record<string, number> }[];
    expect(byClass.map((c) => c.class).sort()).toEqual([...classes].sort());
    const perClass = json('eval.json').perClass.ensemble as number[];
    for (const c of byClass) expect(c.top1.ensemble).toBe(perClass[classes.indexOf(c.class)]);
  });
});
