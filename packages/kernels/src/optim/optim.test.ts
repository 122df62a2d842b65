import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, type Tensor, add, backward, mul, sum, tensor } from '../index.js';
import { Rng, adamwRefStep, assertClose, clipRef, freshSgdBuffer, globalNormRef, sgdRefStep, testDevice, toF64 } from '../testing/index.js';
import { AdamW } from './adamw.js';
import { clipGradNorm, gradNorm } from './clip.js';
import { type OptimizerState, decayWeightsOnly } from './optimizer.js';
import { SGD } from './sgd.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(17);
const tol = { atol: 1e-6, rtol: 1e-5 };

/** A small model's parameters: a weight (decayed), a bias and a norm weight (not decayed), a scalar. */
const SHAPES: [string, number[]][] = [
  ['blocks.0.mlp.fc1.weight', [7, 5]],
  ['blocks.0.mlp.fc1.bias', [7]],
  ['blocks.0.norm1.weight', [5]],
  ['head.scale', [1]],
];

function makeParams(values?: Float32Array[]): Tensor[] {
  return SHAPES.map(([name, shape], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return tensor(dev, values?.[k] ?? rng.uniform(n), shape, { requiresGrad: true, name });
  });
}

async function hostValues(ps: Tensor[]): Promise<Float32Array[]> {
  return Promise.all(ps.map(async (p) => (await p.read()) as Float32Array));
}

function setGrads(ps: Tensor[], gs: Float32Array[]): void {
  ps.forEach((p, k) => {
    p.grad?.dispose();
    p.grad = tensor(dev, gs[k]!, p.shape);
  });
}

describe('AdamW', () => {
  for (const mask of ['all', 'predicate', 'entries'] as const) {
    it(`4 steps with a changing lr, decay mask: ${mask}`, async () => {
      const ps = makeParams();
      const ref = (await hostValues(ps)).map(toF64);
      const decays = mask === 'all' ? SHAPES.map(() => true) : SHAPES.map(([name]) => decayWeightsOnly(name));
      expect(decays).toEqual(mask === 'all' ? [true, true, true, true] : [true, false, false, true]);
      const h = { beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0.05 };
      const opt =
        mask === 'entries'
          ? new AdamW(
              ps.map((param, k) => ({ param, decay: decays[k]! })),
              { lr: 0, betas: [h.beta1, h.beta2], weightDecay: h.weightDecay },
            )
          : new AdamW(ps, { lr: 0, betas: [h.beta1, h.beta2], weightDecay: h.weightDecay, decay: mask === 'predicate' ? decayWeightsOnly : undefined });
      const states = ref.map((r) => ({ m: new Float64Array(r.length), v: new Float64Array(r.length), step: 0 }));
      for (let t = 0; t < 4; t++) {
        const lr = 1e-2 * (1 - t / 4);
        const gs = ref.map((r) => rng.uniform(r.length));
        setGrads(ps, gs);
        opt.lr = lr;
        opt.step();
        ref.forEach((r, k) => adamwRefStep(r, gs[k]!, states[k]!, { ...h, lr, weightDecay: decays[k] ? h.weightDecay : 0 }));
      }
      const got = await hostValues(ps);
      ref.forEach((r, k) => assertClose(got[k]!, r, tol, SHAPES[k]![0]));
    });
  }

  it('skips parameters without a gradient and counts their steps separately', async () => {
    const ps = makeParams();
    const ref = (await hostValues(ps)).map(toF64);
    const h = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
    const opt = new AdamW(ps, { lr: h.lr });
    const states = ref.map((r) => ({ m: new Float64Array(r.length), v: new Float64Array(r.length), step: 0 }));
    for (let t = 0; t < 3; t++) {
      const gs = ref.map((r) => rng.uniform(r.length));
      setGrads(ps, gs);
      if (t === 0) {
        ps[1]!.grad!.dispose();
        ps[1]!.grad = null;
      }
      opt.step();
      ref.forEach((r, k) => (t === 0 && k === 1 ? undefined : adamwRefStep(r, gs[k]!, states[k]!, h)));
    }
    expect(opt.slots.map((s) => s.step)).toEqual([3, 2, 3, 3]);
    const got = await hostValues(ps);
    ref.forEach((r, k) => assertClose(got[k]!, r, tol, SHAPES[k]![0]));
  });

  it('state() and loadState() carry a run over to a fresh optimiser', async () => {
    const init = await hostValues(makeParams());
    const a = makeParams(init);
    const optA = new AdamW(a, { lr: 1e-2 });
    const gs = [0, 1, 2].map(() => init.map((x) => rng.uniform(x.length)));
    for (const g of gs.slice(0, 2)) {
      setGrads(a, g);
      optA.step();
    }
    const saved: OptimizerState = await optA.state();
    expect(saved.kind).toBe('adamw');
    expect(saved.params.map((p) => [p.name, p.step])).toEqual(SHAPES.map(([name]) => [name, 2]));
    const b = makeParams(await hostValues(a));
    const optB = new AdamW(b, { lr: 1e-2 });
    optB.loadState(saved);
    setGrads(a, gs[2]!);
    setGrads(b, gs[2]!);
    optA.step();
    optB.step();
    const [va, vb] = [await hostValues(a), await hostValues(b)];
    va.forEach((x, k) => expect(vb[k]).toEqual(x));
    expect(() => new SGD(b, { lr: 1 }).loadState(saved)).toThrow(/sgd.loadState: state was written by adamw/);
    const wrong = { ...saved, params: saved.params.map((p, k) => (k === 2 ? { ...p, buffers: { ...p.buffers, m: new Float32Array(3) } } : p)) };
    expect(() => optB.loadState(wrong)).toThrow(/parameter 2 .*norm1.weight.*buffer m has 3 values for shape \[5\]/);
  });

  it('zeroGrad drops the gradients', () => {
    const ps = makeParams();
    setGrads(
      ps,
      ps.map((p) => rng.uniform(p.size)),
    );
    new AdamW(ps, { lr: 1 }).zeroGrad();
    expect(ps.every((p) => p.grad === null)).toBe(true);
  });
});

describe('SGD', () => {
  const variants = [
    { momentum: 0, dampening: 0, nesterov: false },
    { momentum: 0.9, dampening: 0, nesterov: false },
    { momentum: 0.9, dampening: 0, nesterov: true },
  ];
  for (const hv of variants) {
    it(`4 steps with decay mask, ${JSON.stringify(hv)}`, async () => {
      const ps = makeParams();
      const ref = (await hostValues(ps)).map(toF64);
      const decays = SHAPES.map(([name]) => decayWeightsOnly(name));
      const opt = new SGD(ps, { lr: 0.1, weightDecay: 1e-2, decay: decayWeightsOnly, ...hv });
      const bufs = ref.map((r) => ({ buf: hv.momentum ? freshSgdBuffer(r.length) : null }));
      for (let t = 0; t < 4; t++) {
        const lr = 0.1 / (t + 1);
        const gs = ref.map((r) => rng.uniform(r.length));
        setGrads(ps, gs);
        opt.lr = lr;
        opt.step();
        ref.forEach((r, k) => sgdRefStep(r, gs[k]!, bufs[k]!, { ...hv, lr, weightDecay: decays[k] ? 1e-2 : 0 }));
      }
      const got = await hostValues(ps);
      ref.forEach((r, k) => assertClose(got[k]!, r, tol, SHAPES[k]![0]));
      expect(Object.keys((await opt.state()).params[0]!.buffers)).toEqual(hv.momentum ? ['momentum'] : []);
    });
  }

  it('rejects nesterov without momentum', () => {
    expect(() => new SGD(makeParams(), { lr: 1, nesterov: true })).toThrow(/sgd: nesterov needs momentum > 0/);
  });
});

describe('decayWeightsOnly', () => {
  it('excludes biases, norms and embeddings of CLIP and timm names', () => {
    const off = ['visual.transformer.resblocks.0.attn.in_proj_bias', 'ln_final.weight', 'visual.ln_post.bias', 'blocks.3.norm2.weight', 'norm.weight', 'fc_norm.weight', 'pos_embed', 'cls_token', 'token_embedding.weight', 'positional_embedding', 'visual.class_embedding'];
    const on = ['visual.conv1.weight', 'patch_embed.proj.weight', 'blocks.0.attn.qkv.weight', 'text_projection', 'head.weight', 'transformer.resblocks.0.mlp.c_fc.weight'];
    expect(off.filter(decayWeightsOnly)).toEqual([]);
    expect(on.filter((n) => !decayWeightsOnly(n))).toEqual([]);
  });
});

describe('gradNorm / clipGradNorm', () => {
  it('the norm of all gradients, parameters without one counting as zero', async () => {
    const ps = makeParams();
    const gs = ps.map((p) => rng.uniform(p.size));
    setGrads(ps, gs);
    ps[2]!.grad!.dispose();
    ps[2]!.grad = null;
    assertClose([await gradNorm(ps).item()], [globalNormRef(gs.filter((_, k) => k !== 2))], { atol: 0, rtol: 2e-6 }, 'norm');
  });

  for (const [what, maxNorm] of [
    ['above', 0.3],
    ['below', 100],
  ] as const) {
    it(`scales all gradients when the norm is ${what} the threshold, returning the norm before clipping`, async () => {
      const ps = makeParams();
      const gs = ps.map((p) => rng.uniform(p.size));
      setGrads(ps, gs);
      const norm = clipGradNorm(ps, maxNorm);
      const want = clipRef(gs, maxNorm);
      assertClose([await norm.item()], [globalNormRef(gs)], { atol: 0, rtol: 2e-6 }, 'norm');
      for (let k = 0; k < ps.length; k++) assertClose(await ps[k]!.grad!.read(), want[k]!, { atol: 1e-9, rtol: 2e-6 }, SHAPES[k]![0]);
    });
  }
});

describe('fused (arena) and per-parameter updates', () => {
  // Gradients through backward land in the arena's slots; the fused update must equal the
  // per-parameter kernels (the same arithmetic on the same f32 scalars, clipping too) to an ulp or
  // two: the per-parameter kernel reads a 35-element tensor one float at a time, the arena by vec4,
  // and the driver may contract a multiply-add in one and not the other.
  for (const [name, make] of [
    ['AdamW', (ps: Tensor[], fused: boolean) => new AdamW(ps, { lr: 0.01, weightDecay: 0.1, decay: decayWeightsOnly, fused })],
    ['SGD', (ps: Tensor[], fused: boolean) => new SGD(ps, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01, fused })],
  ] as const) {
    it(`${name}: equal over steps with clipping, one parameter skipping a step`, async () => {
      const init = SHAPES.map(([, shape]) => rng.uniform(shape.reduce((a, b) => a * b, 1)));
      const inputs = SHAPES.map(([, shape]) => rng.uniform(shape.reduce((a, b) => a * b, 1)));
      const run = async (fused: boolean) => {
        const ps = makeParams(init);
        const opt = make(ps, fused);
        if (fused) expect(opt.arena).toBeDefined();
        for (let t = 0; t < 3; t++) {
          // loss = Σ_k Σ p_k · x_k (· 2 for the second use); parameter 3 gets no gradient at step 1.
          const used = ps.filter((_, k) => !(k === 3 && t === 1));
          const terms = used.map((p, k) => sum(mul(mul(p, tensor(dev, inputs[ps.indexOf(p)]!, p.shape)), tensor(dev, [1 + k + t], [1]))));
          const loss = terms.reduce((a, b) => add(a, b));
          backward(loss);
          if (t !== 1) clipGradNorm(ps, 0.5);
          opt.step();
          opt.zeroGrad();
        }
        const values = await hostValues(ps);
        opt.dispose();
        return values;
      };
      const fused = await run(true);
      const single = await run(false);
      fused.forEach((v, k) => assertClose(v, single[k]!, { atol: 1e-7, rtol: 1e-6 }, SHAPES[k]![0]));
    });
  }

  it('one dispatch updates every parameter (clipping: three)', async () => {
    const ps = makeParams();
    const opt = new AdamW(ps, { lr: 0.01 });
    backward(ps.map((p) => sum(p)).reduce((a, b) => add(a, b)));
    const before = dev.counts.dispatches;
    clipGradNorm(ps, 1);
    opt.step();
    expect(dev.counts.dispatches - before).toBe(4);
    opt.zeroGrad();
    opt.dispose();
  });
});

