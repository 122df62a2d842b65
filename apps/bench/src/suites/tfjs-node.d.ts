// The parts of TensorFlow.js that the peers suite calls, declared for the files of its Node builds:
// tfjs' own typings reference @webgpu/types 0.1.38, whose global GPU types would replace ours.
declare module '@tensorflow/tfjs-core/dist/tf-core.node.js' {
  interface Tensor {
    data(): Promise<Float32Array | Int32Array | Uint8Array>;
    dispose(): void;
  }
  export function setBackend(name: string): Promise<boolean>;
  export function ready(): Promise<void>;
  /** The active backend; for 'webgpu', tfjs-backend-webgpu's WebGPUBackend. */
  export function backend(): unknown;
  export function tensor2d(values: Float32Array, shape: [number, number]): Tensor;
  export function matMul(a: Tensor, b: Tensor, transposeA?: boolean, transposeB?: boolean): Tensor;
}

/** Imported for its side effect: it registers the 'webgpu' backend with tfjs-core. */
declare module '@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.node.js';
