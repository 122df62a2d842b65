import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command } from 'commander';
import { CliError, ExitCode } from '../errors.js';
import { curvesSvg, parseMetrics } from '../render/curves.js';
import { svgToPng } from '../render/png.js';
import { resolveOptions, withConfig } from './options.js';
import { readRegularText, writeFileAtomic } from '@mpfgvc/train';

export interface PlotResult {
  svg: string;
  png: string;
  lossPoints: number;
  evalPoints: number;
}

/** Writes curves.svg and curves.png for a metrics.jsonl into `outDir`. */
export async function plotMetrics(metricsFile: string, outDir: string, title = ''): Promise<PlotResult> {
  let curves;
  try {
    curves = parseMetrics(readRegularText(metricsFile, { what: 'metrics', maxBytes: 1024 ** 3 }), metricsFile);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const count = (m: Map<unknown, unknown[]>) => [...m.values()].reduce((a, p) => a + p.length, 0);
  const [lossPoints, evalPoints] = [count(curves.loss), count(curves.top1)];
  if (lossPoints + evalPoints === 0) throw new CliError(`plot: ${metricsFile} holds no loss or evaluation rows`);
  const svg = curvesSvg(curves, title);
  const svgPath = join(outDir, 'curves.svg');
  const pngPath = join(outDir, 'curves.png');
  writeFileAtomic(svgPath, svg);
  writeFileAtomic(pngPath, await svgToPng(svg));
  return { svg: svgPath, png: pngPath, lossPoints, evalPoints };
}

export function plotCommand(): Command {
  return withConfig(new Command('plot'))
    .description("training curves of a run (its metrics.jsonl) as curves.svg and curves.png: loss per stage over steps, test top-1 per head over epochs")
    .argument('<run>', 'run folder (with metrics.jsonl) or a metrics.jsonl file')
    .option('--out <dir>', 'folder for curves.svg/png (default: the run folder)')
    .option('--title <text>', 'prefix of the chart titles')
    .option('--json', 'print one JSON object')
    .action(async (run: string, _opts: unknown, cmd: Command) => {
      const o = resolveOptions<{ out?: string; title?: string; json?: boolean }>(cmd);
      if (!existsSync(run)) throw new CliError(`plot: ${run}: no such file or folder`, ExitCode.usage);
      const metrics = statSync(run).isDirectory() ? join(run, 'metrics.jsonl') : run;
      if (!existsSync(metrics)) throw new CliError(`plot: ${run} has no metrics.jsonl`, ExitCode.usage);
      const out = resolve(o.out ?? dirname(metrics));
      if (!existsSync(out) || !statSync(out).isDirectory()) throw new CliError(`--out ${out}: no such folder`, ExitCode.usage);
      const r = await plotMetrics(metrics, out, o.title ? `${o.title}: ` : '');
      if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else process.stdout.write(`${r.lossPoints} loss points, ${r.evalPoints} evaluation points\nwrote ${r.svg}\nwrote ${r.png}\n`);
    });
}
