import { Command } from 'commander';
import { requestDevice, selfCheck } from '@mpfgvc/kernels';
import { CliError } from '../errors.js';
import { deviceOptions, withDeviceOptions } from './device-options.js';
import { describeDevice, printDevice } from './info.js';

export function demoCommand(): Command {
  return withDeviceOptions(new Command('demo'))
    .description('the embedded demo: for now the device and a kernel check against float64 references (training arrives with the model)')
    .action(async (opts) => {
      process.stdout.write('MP-FGVC on WebGPU: the training demo is not built yet; this demo opens the device and checks the kernels.\n\n');
      const dev = await requestDevice(deviceOptions(opts));
      printDevice(describeDevice(dev));
      process.stdout.write('\n');
      const checks = await selfCheck(dev);
      for (const c of checks) process.stdout.write(`check ${c.name.padEnd(28)}${c.ok ? 'ok' : 'FAILED'}  max |err| ${c.maxAbsError.toExponential(2)}\n`);
      dev.destroy();
      if (checks.some((c) => !c.ok)) throw new CliError('kernel check failed');
      process.stdout.write('\nall kernel checks passed\n');
    });
}
