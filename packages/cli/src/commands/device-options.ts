import { type Command, Option } from 'commander';
import type { DeviceOptions } from '@mpfgvc/kernels';

/** --backend / --adapter / --power, shared by every command that opens a device. */
export function withDeviceOptions(cmd: Command): Command {
  return cmd
    .option('--backend <name>', 'WebGPU backend in Node (vulkan, metal, d3d12, ...); env MPFGVC_BACKEND')
    .option('--adapter <substring>', 'pick the adapter whose name contains this; env MPFGVC_ADAPTER')
    .addOption(new Option('--power <preference>', 'adapter power preference; env MPFGVC_POWER').choices(['low-power', 'high-performance']));
}

export function deviceOptions(opts: { backend?: string; adapter?: string; power?: GPUPowerPreference }): DeviceOptions {
  return { backend: opts.backend, adapter: opts.adapter, powerPreference: opts.power };
}
