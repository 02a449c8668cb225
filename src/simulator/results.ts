import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseRange } from '../http/range.ts';
import { applyFault, takeFault } from './faults.ts';
import type { SimulatorState } from './state.ts';
import { videoChunks } from './video-bytes.ts';

/** `GET|HEAD /results/<task id>.mp4`: a succeeded task's video, with single byte ranges. */
export function createResultHandler(state: SimulatorState, videoBytes: number) {
  return async function serveResult(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    state.stats.resultRequests++;
    const fault = takeFault(state.faults, 'result');
    if (await applyFault(fault, res, state.wait)) return;
    if (fault?.kind === 'drop_after_accept') {
      res.socket?.destroy();
      return;
    }
    const task = state.task(id);
    if (!task || task.status !== 'succeed') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const size = videoBytes;
    const range = parseRange(req.headers.range, size);
    const common = { 'content-type': 'video/mp4', 'accept-ranges': 'bytes', etag: `"${task.videoId}"` };
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...common, 'content-range': `bytes */${size}`, 'content-length': 0 }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    res.writeHead(range ? 206 : 200, {
      ...common,
      'content-length': end - start + 1,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // Generated chunk by chunk with backpressure: a 200 MB result never sits in memory.
    await pipeline(Readable.from(videoChunks(task.id, size, start, end + 1)), res).catch(() => {});
  };
}
