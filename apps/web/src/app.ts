// The page: wires the engine (engine.ts) to the three panels — load a model, classify and explain
// an image, train the synthetic-birds demo in the tab — and exposes the same operations on
// `window.mpfgvc` for the browser tests.
import { type CheckResult, type Device } from '@mpfgvc/kernels';
import { drawChart } from './chart.js';
import {
  type Classification,
  type LoadedModel,
  PageError,
  type PreparedImage,
  TAB_DEMO,
  type TabTrainOptions,
  type TrainProgress,
  adapterName,
  classify,
  disposeModel,
  drawExplanation,
  loadModel,
  openDevice,
  prepareImage,
  prepareRgb,
  selfCheck,
  trainInTab,
} from './engine.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};

const HEAD_TITLES: Record<string, string> = { vision: 'Vision (CLS)', text: 'Text (DaTP)', vlfm: 'VLFM', ensemble: 'Ensemble' };

interface State {
  dev?: Device;
  model?: LoadedModel;
  image?: PreparedImage;
  training?: AbortController;
  downloadUrl?: string;
}
const state: State = {};

function showError(e: unknown): void {
  const box = $('error');
  if (e === undefined) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  const message = e instanceof Error ? (e instanceof PageError ? e.message : `${e.name}: ${e.message}`) : String(e);
  box.textContent = message;
  box.hidden = false;
  console.error(e);
}

/** Runs an action of the page; its failure is shown, not thrown into the void. */
async function guarded<T>(action: () => Promise<T>): Promise<T | undefined> {
  try {
    showError(undefined);
    return await action();
  } catch (e) {
    // A cancelled training run says so in its own status line.
    if ((e as Error).name !== 'AbortError') showError(e);
    return undefined;
  }
}

function device(): Device {
  if (!state.dev) throw new PageError('the WebGPU device is not open (see the message above)');
  return state.dev;
}

// ---- Model ----

function describeModel(m: LoadedModel): void {
  const c = m.model.config;
  const rows: [string, string][] = [
    ['model', m.source],
    ['heads', m.model.heads.map((h) => HEAD_TITLES[h] ?? h).join(', ')],
    ['input', `${c.vision.imageSize}×${c.vision.imageSize} RGB, ${c.vision.patchSize}px patches, crop ratio ${m.cropRatio}`],
    ['network', `ViT ${c.vision.depth} blocks × ${c.vision.width}${m.model.visionOnly ? '' : `, text ${c.text.depth} blocks × ${c.text.width}`}`],
    ['classes', `${m.classes.length}: ${m.classes.slice(0, 12).join(', ')}${m.classes.length > 12 ? ', …' : ''}`],
  ];
  if (m.model.info.dataset) rows.push(['trained on', m.model.info.dataset]);
  const dl = $('model-info');
  dl.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  $<HTMLInputElement>('image-file').disabled = false;
}

async function useModel(bytes: Uint8Array, source: string): Promise<LoadedModel> {
  const loaded = loadModel(device(), bytes, source);
  disposeModel(state.model);
  state.model = loaded;
  state.image = undefined;
  describeModel(loaded);
  $('results').replaceChildren();
  $('timing').textContent = '';
  return loaded;
}

async function modelFromFile(file: File): Promise<void> {
  await useModel(new Uint8Array(await file.arrayBuffer()), file.name);
}

/** `?model=<URL>`: same-origin only, so a link cannot make the page fetch from elsewhere. */
async function modelFromQuery(): Promise<void> {
  const url = new URLSearchParams(location.search).get('model');
  if (!url) return;
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) throw new PageError(`?model= must name a file of this site (${location.origin}), not ${target.origin}`);
  const res = await fetch(target);
  if (!res.ok) throw new PageError(`?model=${url}: the server answered ${res.status} ${res.statusText}`);
  await useModel(new Uint8Array(await res.arrayBuffer()), target.pathname.split('/').pop() || url);
}

// ---- Classify and explain ----

function renderResults(c: Classification, m: LoadedModel): void {
  const cards = c.heads.map(({ head, top }) => {
    const card = document.createElement('div');
    card.className = 'head';
    const h = document.createElement('h3');
    h.textContent = HEAD_TITLES[head] ?? head;
    const ol = document.createElement('ol');
    top.forEach((r, i) => {
      const li = document.createElement('li');
      if (i === 0) li.className = 'first';
      const name = document.createElement('span');
      name.textContent = r.name;
      const bar = document.createElement('span');
      bar.className = 'bar';
      const fill = document.createElement('i');
      fill.style.width = `${(100 * r.p).toFixed(1)}%`;
      bar.append(fill);
      const pct = document.createElement('span');
      pct.textContent = `${(100 * r.p).toFixed(1)}%`;
      li.append(name, bar, pct);
      ol.append(li);
    });
    card.append(h, ol);
    return card;
  });
  $('results').replaceChildren(...cards);
  const kept = c.selected ? `; SsVP kept ${c.selected.length} of ${(m.model.config.vision.imageSize / m.model.config.vision.patchSize) ** 2} patches` : '';
  $('timing').textContent = `forward ${c.ms.toFixed(1)} ms on ${adapterName(device())}${kept}`;
}

async function classifyPrepared(image: PreparedImage): Promise<Classification> {
  const m = state.model;
  if (!m) throw new PageError('load a model first (panel 1)');
  state.image = image;
  const c = await classify(m, image);
  renderResults(c, m);
  const canvas = $<HTMLCanvasElement>('explain');
  if (c.selected) drawExplanation(canvas, m, image, c.selected);
  else drawExplanation(canvas, m, image, Array.from({ length: (m.model.config.vision.imageSize / m.model.config.vision.patchSize) ** 2 }, (_, i) => i));
  return c;
}

async function classifyBlob(blob: Blob): Promise<Classification> {
  const m = state.model;
  if (!m) throw new PageError('load a model first (panel 1)');
  let image: PreparedImage;
  try {
    image = await prepareImage(blob, m);
  } catch (e) {
    throw new PageError(`${(blob as File).name ?? 'the image'} is not an image this browser decodes (${(e as Error).message})`);
  }
  return classifyPrepared(image);
}

// ---- Training ----

function describeTraining(o: TabTrainOptions): string {
  return `${o.numClasses} species, ${o.perClass} new images per species each epoch, ${o.epochs[0]} + ${o.epochs[1]} epochs, batch ${o.batch}`;
}

async function train(opts: TabTrainOptions = TAB_DEMO): Promise<{ history: TrainProgress[]; stages: { stage: 1 | 2; seconds: number; top1: Record<string, number> }[]; imagesPerSec: number }> {
  if (state.training) throw new PageError('a training run is already going');
  const dev = device();
  const controller = new AbortController();
  state.training = controller;
  const start = $<HTMLButtonElement>('train-start');
  const cancel = $<HTMLButtonElement>('train-cancel');
  const bar = $<HTMLProgressElement>('train-progress');
  const status = $('train-status');
  const chart = $<HTMLCanvasElement>('train-chart');
  const download = $<HTMLAnchorElement>('train-download');
  $('train-config').textContent = describeTraining(opts);
  start.disabled = true;
  cancel.disabled = false;
  download.hidden = true;
  const history: TrainProgress[] = [];
  let last = 0;
  try {
    const result = await trainInTab(
      dev,
      opts,
      (p) => {
        history.push(p);
        const before = p.stage === 2 ? opts.epochs[0] : 0;
        const total = opts.epochs[0] + opts.epochs[1];
        bar.value = (before + (p.step / p.steps) * opts.epochs[p.stage - 1]!) / total;
        const top1 = p.eval ? ` · held-out top-1 ${Object.entries(p.eval.top1).map(([h, v]) => `${h} ${(100 * v!).toFixed(1)}%`).join(', ')}` : '';
        status.textContent = `stage ${p.stage} · step ${p.step}/${p.steps} · loss ${p.loss.toFixed(3)} · ${p.imagesPerSec.toFixed(1)} images/s${top1}`;
        // Redraw at most a few times a second: drawing is cheap, but not free beside a step.
        const now = performance.now();
        if (p.eval || now - last > 250) {
          drawChart(chart, history);
          last = now;
        }
      },
      controller.signal,
    );
    drawChart(chart, result.history);
    bar.value = 1;
    const bytes = await result.loaded.model.save();
    if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
    state.downloadUrl = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    download.href = state.downloadUrl;
    download.hidden = false;
    disposeModel(state.model);
    state.model = result.loaded;
    describeModel(result.loaded);
    const final = result.stages[result.stages.length - 1]!;
    status.textContent =
      `done: ${result.imagesPerSec.toFixed(1)} images/s over both stages · held-out top-1 ` +
      Object.entries(final.eval.top1)
        .map(([h, v]) => `${h} ${(100 * v!).toFixed(1)}%`)
        .join(', ') +
      ' · the model is loaded above; classify a bird with it or download it';
    return { history: result.history, stages: result.stages.map((s) => ({ stage: s.stage, seconds: s.seconds, top1: s.eval.top1 as Record<string, number> })), imagesPerSec: result.imagesPerSec };
  } catch (e) {
    if ((e as Error).name === 'AbortError') {
      status.textContent = `cancelled after ${history.length} steps; nothing was kept`;
      drawChart(chart, history);
    }
    throw e;
  } finally {
    state.training = undefined;
    start.disabled = false;
    cancel.disabled = true;
  }
}

// ---- Inputs: pickers, drag & drop, paste ----

function dropZone(zone: HTMLElement, onFile: (f: File) => Promise<unknown>): void {
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) void guarded(() => onFile(f));
  });
}

function wire(): void {
  const modelInput = $<HTMLInputElement>('model-file');
  modelInput.addEventListener('change', () => {
    const f = modelInput.files?.[0];
    if (f) void guarded(() => modelFromFile(f));
  });
  dropZone($('model-drop'), modelFromFile);
  const imageInput = $<HTMLInputElement>('image-file');
  imageInput.addEventListener('change', () => {
    const f = imageInput.files?.[0];
    if (f) void guarded(() => classifyBlob(f));
  });
  dropZone($('image-drop'), (f) => (f.name.endsWith('.safetensors') ? modelFromFile(f) : classifyBlob(f)));
  document.addEventListener('paste', (e) => {
    const item = Array.from(e.clipboardData?.items ?? []).find((i) => i.type.startsWith('image/'));
    const blob = item?.getAsFile();
    if (blob) void guarded(() => classifyBlob(blob));
  });
  $('train-config').textContent = describeTraining(TAB_DEMO);
  $('train-start').addEventListener('click', () => void guarded(() => train()));
  $('train-cancel').addEventListener('click', () => state.training?.abort());
  drawChart($<HTMLCanvasElement>('train-chart'), []);
  const explain = $<HTMLCanvasElement>('explain').getContext('2d')!;
  explain.fillStyle = '#f4f5f7';
  explain.fillRect(0, 0, explain.canvas.width, explain.canvas.height);
  explain.fillStyle = '#888';
  explain.font = '13px sans-serif';
  explain.fillText('load a model, then choose, drop or paste an image', 16, explain.canvas.height / 2);
}

// ---- The page's programmatic face (tests, scripts, the console) ----

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export interface PageApi {
  /** Resolves once the adapter is open (to its name), rejects with the page's message where there is none. */
  ready: Promise<string>;
  selfCheck(): Promise<CheckResult[]>;
  /** Loads model bytes (base64) as the file picker does; resolves to what the page shows of it. */
  loadModel(base64: string, name: string): Promise<{ classes: string[]; heads: string[]; imageSize: number }>;
  /** Every head's raw outputs for one normalised CHW input. */
  probs(chw: number[]): Promise<Record<string, number[]>>;
  /** Classifies an RGB crop (S·S·3 bytes, already S×S) through the page's panel: results and explanation drawn. */
  classifyRgb(rgb: number[]): Promise<{ heads: { head: string; top: { name: string; p: number }[] }[]; selected?: number[] }>;
  /** Trains in the tab through the training panel (TAB_DEMO where no options are given). */
  train(opts?: Partial<TabTrainOptions>): ReturnType<typeof train>;
  cancelTraining(): void;
}

function subgroupLanes(dev: Device): string {
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = dev.info;
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
}

async function start(): Promise<string> {
  try {
    state.dev = await openDevice();
  } catch (e) {
    $('adapter').textContent = 'no WebGPU adapter';
    for (const id of ['model-file', 'image-file', 'train-start']) $<HTMLInputElement>(id).disabled = true;
    throw e;
  }
  const name = adapterName(state.dev);
  const l = state.dev.limits;
  $('adapter').textContent = `adapter: ${name} · ${l.maxComputeInvocationsPerWorkgroup} invocations per workgroup${state.dev.has('subgroups') ? `, ${subgroupLanes(state.dev)}-lane subgroups` : ''}${state.dev.has('shader-f16') ? ', f16' : ''}`;
  $<HTMLButtonElement>('train-start').disabled = false;
  state.dev.gpu.lost.then((info) => showError(new PageError(`the WebGPU device was lost (${info.reason}: ${info.message}); reload the page`)));
  await modelFromQuery();
  return name;
}

function main(): void {
  wire();
  const ready = start();
  ready.catch(showError);
  const api: PageApi = {
    ready,
    selfCheck: async () => selfCheck(device()),
    loadModel: async (b64, name) => {
      const m = await useModel(fromBase64(b64), name);
      return { classes: m.classes, heads: [...m.model.heads], imageSize: m.model.config.vision.imageSize };
    },
    probs: async (chw) => {
      const m = state.model;
      if (!m) throw new PageError('no model loaded');
      const c = await classify(m, { rgb: new Uint8Array(0), chw: Float32Array.from(chw) });
      return c.probs as Record<string, number[]>;
    },
    classifyRgb: async (rgb) => {
      const m = state.model;
      if (!m) throw new PageError('no model loaded');
      const c = await classifyPrepared(prepareRgb(Uint8Array.from(rgb), m));
      return { heads: c.heads.map((h) => ({ head: h.head, top: h.top.map((r) => ({ name: r.name, p: r.p })) })), ...(c.selected ? { selected: c.selected } : {}) };
    },
    train: (opts) => train({ ...TAB_DEMO, ...opts }),
    cancelTraining: () => state.training?.abort(),
  };
  (window as unknown as { mpfgvc: PageApi }).mpfgvc = api;
}

main();
