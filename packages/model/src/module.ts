// A module owns named parameters and child modules. Names are dotted paths (`blocks.3.attn.qkv.weight`)
// that match the upstream checkpoints' naming where there is one, so that loading is a name mapping.
import { type Device, Rng, type Tensor, keep, shapeStr, tensor } from '@mpfgvc/kernels';
import { WeightsError } from './weights/safetensors.js';

/** How a fresh parameter is filled. */
export type Init = { normal: number } | { uniform: number } | 'zeros' | 'ones' | Float32Array;

export function initValues(rng: Rng, n: number, init: Init): Float32Array {
  if (init instanceof Float32Array) return init;
  if (init === 'zeros') return new Float32Array(n);
  if (init === 'ones') return new Float32Array(n).fill(1);
  if ('normal' in init) return rng.normal(n, init.normal);
  return rng.uniform(n, -init.uniform, init.uniform);
}

/**
 * While a model is built from a file, the parameters the file holds: building stops, before the
 * allocation, as soon as the configuration asks for more tensors or values than that (a crafted
 * configuration cannot make us allocate more than the file is large).
 */
interface ParameterBudget {
  tensors: number;
  elements: number;
  source: string;
  created: Tensor[];
}

let budget: ParameterBudget | undefined;

/**
 * Runs `build` (a model constructor) allowing at most `tensors` parameter tensors of `elements`
 * values in total; beyond that it throws WeightsError naming `source`, freeing what was built.
 */
export function withParameterBudget<T>(limit: { tensors: number; elements: number; source: string }, build: () => T): T {
  const outer = budget;
  const mine: ParameterBudget = { ...limit, created: [] };
  budget = mine;
  try {
    return build();
  } catch (e) {
    for (const t of mine.created) t.dispose();
    throw e;
  } finally {
    budget = outer;
  }
}

/** Looks a parameter up by its name and shape; undefined when the source lacks it. */
export type WeightSource = (name: string, shape: readonly number[]) => Float32Array | undefined;

export abstract class Module {
  private readonly ownParams = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  constructor(
    readonly device: Device,
    protected readonly rng: Rng,
  ) {}

  protected param(name: string, shape: readonly number[], init: Init): Tensor {
    if (this.ownParams.has(name)) throw new Error(`parameter '${name}' registered twice`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (budget) {
      budget.tensors -= 1;
      budget.elements -= n;
      if (budget.tensors < 0 || budget.elements < 0) {
        throw new WeightsError(`${budget.source}: its configuration asks for more parameters than the file holds (at '${name}' ${shapeStr(shape)})`);
      }
    }
    const values = initValues(this.rng, n, init);
    if (values.length !== n) throw new Error(`parameter '${name}': ${values.length} initial values for shape ${shapeStr(shape)}`);
    const t = keep(tensor(this.device, values, shape, { requiresGrad: true, name }));
    this.ownParams.set(name, t);
    budget?.created.push(t);
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    if (this.children.has(name)) throw new Error(`module '${name}' registered twice`);
    this.children.set(name, m);
    return m;
  }

  /** Every parameter with its full dotted name, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.ownParams) out.push([prefix + n, t]);
    for (const [n, m] of this.children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Turns gradients on or off for every parameter (freezing a stage's modules). */
  setTrainable(on: boolean): this {
    for (const t of this.parameters()) t.requiresGrad = on;
    return this;
  }

  /**
   * Loads every parameter from `source` (which returns values by name and checks shapes). Throws,
   * listing the missing names, unless all are found; writes into the existing tensors, so
   * optimisers holding them see the new values.
   */
  load(source: WeightSource, sourceName: string, prefix = ''): void {
    const missing: string[] = [];
    const found: [Tensor, Float32Array][] = [];
    for (const [name, t] of this.namedParameters(prefix)) {
      const v = source(name, t.shape);
      if (!v) {
        missing.push(name);
        continue;
      }
      if (v.length !== t.size) throw new WeightsError(`${sourceName}: '${name}' has ${v.length} values, expected ${shapeStr(t.shape)}`);
      found.push([t, v]);
    }
    if (missing.length) {
      const shown = missing.slice(0, 8).map((m) => `'${m}'`).join(', ');
      throw new WeightsError(`${sourceName}: missing ${missing.length} parameter(s): ${shown}${missing.length > 8 ? ', …' : ''}`);
    }
    for (const [t, v] of found) this.device.upload(t.buffer, t.offset * 4, v);
  }

  /** Every parameter's values on the host, by full name. */
  async stateDict(prefix = ''): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, t] of this.namedParameters(prefix)) out.set(name, { shape: [...t.shape], data: (await t.read()) as Float32Array });
    return out;
  }

  dispose(): void {
    for (const t of this.ownParams.values()) t.dispose();
    for (const m of this.children.values()) m.dispose();
  }
}
