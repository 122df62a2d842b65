import { Command } from 'commander';
import { requestDevice } from '@mpfgvc/kernels';
import { markdownTable } from './report.js';
import { SUITES, runSuites } from './run.js';

const program = new Command('bench')
  .description(`WebGPU benchmarks of MP-FGVC; suites: ${Object.keys(SUITES).join(', ')}, all`)
  .argument('[suites...]', 'suites to run', ['kernels'])
  .option('--json', 'print one JSON array of rows')
  .option('--quick', 'toy sizes (checks that every benchmark runs; timings are not meaningful)')
  .option('--adapter <substring>', 'adapter name substring')
  .option('--backend <name>', 'Dawn backend')
  .action(async (suites: string[], opts) => {
    const dev = await requestDevice({ adapter: opts.adapter, backend: opts.backend });
    const rows = await runSuites(dev, suites, { quick: opts.quick });
    if (opts.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
    else process.stdout.write(`${markdownTable(rows, `${dev.info.name} (${dev.info.backend})`)}\n`);
    dev.destroy();
  });

try {
  await program.parseAsync();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
