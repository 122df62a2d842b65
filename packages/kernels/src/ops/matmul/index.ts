export { MATMUL_KERNELS, type MatmulActivation, type MatmulKernel, defaultKernel } from './kernels.js';
export { type MatmulOptions, launchMatmul, launchMatmulWithPre, launchMatmulWithRowSum } from './launch.js';
