import { Command } from 'commander';
import { type Device, defaultKernel, requestDevice, selfCheck } from '@mpfgvc/kernels';
import { CliError } from '../errors.js';
import { deviceOptions, withDeviceOptions } from './device-options.js';
import { resolveOptions, withConfig } from './options.js';

const KEY_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'minUniformBufferOffsetAlignment',
] as const;

export function describeDevice(dev: Device) {
  const limits: Record<string, number> = {};
  for (const k of KEY_LIMITS) limits[k] = dev.limits[k] as number;
  return {
    adapter: dev.info.name,
    backend: dev.info.backend,
    vendor: dev.info.vendor,
    architecture: dev.info.architecture,
    fallback: dev.info.isFallback,
    subgroupSize: dev.info.subgroupMinSize === dev.info.subgroupMaxSize ? dev.info.subgroupMinSize : [dev.info.subgroupMinSize, dev.info.subgroupMaxSize],
    hostVectorRegisters: dev.info.hostVectorRegisters,
    matmulKernel: defaultKernel(dev),
    features: [...dev.features].sort(),
    limits,
  };
}

export function printDevice(d: ReturnType<typeof describeDevice>): void {
  const lines = [
    `adapter       ${d.adapter}${d.fallback ? ' (software)' : ''}`,
    `backend       ${d.backend}`,
    `vendor        ${d.vendor || '-'}${d.architecture ? ` / ${d.architecture}` : ''}`,
    `subgroups     ${Array.isArray(d.subgroupSize) ? d.subgroupSize.join('-') : d.subgroupSize || '-'}`,
    `matmul        ${d.matmulKernel}${d.hostVectorRegisters ? ` (host CPU: ${d.hostVectorRegisters} vector registers)` : ''}`,
    `features      ${d.features.join(', ')}`,
    ...Object.entries(d.limits).map(([k, v]) => `${k.padEnd(34)}${v}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function infoCommand(): Command {
  return withDeviceOptions(withConfig(new Command('info')))
    .description('print the WebGPU adapter, backend, features and key limits')
    .option('--json', 'print one JSON object')
    .option('--check', 'also run a few kernels against their float64 references')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = resolveOptions<{ json?: boolean; check?: boolean } & Parameters<typeof deviceOptions>[0]>(cmd);
      const dev = await requestDevice(deviceOptions(opts));
      const desc = describeDevice(dev);
      const checks = opts.check ? await selfCheck(dev) : undefined;
      if (opts.json) process.stdout.write(`${JSON.stringify(checks ? { ...desc, checks } : desc)}\n`);
      else {
        printDevice(desc);
        for (const c of checks ?? []) process.stdout.write(`check ${c.name.padEnd(28)}${c.ok ? 'ok' : 'FAILED'}  max |err| ${c.maxAbsError.toExponential(2)}\n`);
      }
      dev.destroy();
      if (checks?.some((c) => !c.ok)) throw new CliError('kernel check failed');
    });
}
