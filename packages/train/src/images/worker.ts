// Entry of the loader's worker threads: each request is a whole batch, prepared here and sent
// back by transferring its pixel buffer (no copy). The loader starts this file as compiled
// JavaScript (dist/images/worker.js beside dist/images/loader.js).
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { type BatchImages, type BatchTask, type ImageConfig, UnreadableImageError, prepareBatch } from './preprocess.js';

export interface WorkerInit {
  config: ImageConfig;
  strict: boolean;
}

export interface WorkerRequest {
  id: number;
  task: BatchTask;
}

export type WorkerReply = { id: number; result: BatchImages } | { id: number; unreadable: { path: string; reason: string } } | { id: number; error: { name: string; message: string; stack?: string } };

if (!parentPort) throw new Error('images/worker.js is a worker_threads entry; the loader starts it');
const port = parentPort;
const { config, strict } = workerData as WorkerInit;
// Every file is decoded once per epoch: libvips' operation cache (one per process) would only
// hold memory.
sharp.cache(false);

port.on('message', async ({ id, task }: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { id, result: await prepareBatch(config, task, strict) };
  } catch (e) {
    const err = e as Error;
    reply = e instanceof UnreadableImageError ? { id, unreadable: { path: e.path, reason: e.reason } } : { id, error: { name: err.name ?? 'Error', message: err.message ?? String(e), ...(err.stack ? { stack: err.stack } : {}) } };
  }
  port.postMessage(reply, 'result' in reply ? [reply.result.images.buffer as ArrayBuffer] : []);
});
