export { MATMUL_KERNELS, type MatmulActivation, type MatmulKernel, defaultKernel } from './kernels.js';
export { type MatmulOptions, launchMatmul, launchMatmulWithPre } from './launch.js';
