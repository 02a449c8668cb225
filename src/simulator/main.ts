// Entry point: runs the upstream simulator as its own process, e.g. for benchmarks or a gateway
// pointed at it with COMETAPI_BASE_URL. Usage:
//   node src/simulator/main.ts --port 4010 [--host 127.0.0.1] [--api-key KEY]
//     [--processing-ms 1500] [--finish-ms 4000] [--video-bytes 65536] [--public-base-url URL]
//     [--concurrency-limit N]
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createSimulator } from './server.ts';

const count = z.coerce.number().int().nonnegative();

const argsSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535),
  host: z.string().min(1).default('127.0.0.1'),
  'api-key': z.string().min(1).optional(),
  'processing-ms': count.default(1500),
  'finish-ms': count.default(4000),
  'video-bytes': count.optional(),
  'public-base-url': z.url({ protocol: /^https?$/ }).optional(),
  'concurrency-limit': z.coerce.number().int().min(1).optional(),
});

function readArgs() {
  try {
    const { values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'api-key': { type: 'string' },
        'processing-ms': { type: 'string' },
        'finish-ms': { type: 'string' },
        'video-bytes': { type: 'string' },
        'public-base-url': { type: 'string' },
        'concurrency-limit': { type: 'string' },
      },
      strict: true,
    });
    const parsed = argsSchema.safeParse(values);
    if (parsed.success) return parsed.data;
    console.error(`simulator: bad arguments\n${z.prettifyError(parsed.error)}`);
  } catch (error) {
    console.error(`simulator: ${error instanceof Error ? error.message : String(error)}`);
  }
  process.exit(2);
}

const args = readArgs();
const simulator = createSimulator({
  ...(args['api-key'] ? { apiKey: args['api-key'] } : {}),
  delays: { processingMs: args['processing-ms'], finishMs: args['finish-ms'] },
  ...(args['video-bytes'] !== undefined ? { videoBytes: args['video-bytes'] } : {}),
  ...(args['public-base-url'] ? { publicBaseUrl: args['public-base-url'] } : {}),
  ...(args['concurrency-limit'] !== undefined ? { concurrencyLimit: args['concurrency-limit'] } : {}),
});
const { url } = await simulator.listen(args.port, args.host);
console.log(`kling simulator listening on ${url}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await simulator.close();
  process.exitCode = 0;
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
