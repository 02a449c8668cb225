// Archives one video URL into a local store and prints what it cost, as one JSON line:
//   node test/storage/archive-once.ts <video url> <store dir>
// Run as its own process by download-memory.test.ts, so that the peak resident memory it reports
// (the kernel's high-water mark) belongs to the download alone. Loopback URLs are allowed.
import { downloadVideo } from '../../src/storage/download.ts';
import { createLocalVideoStore } from '../../src/storage/local-video-store.ts';

const [url, dir] = process.argv.slice(2);
if (url === undefined || dir === undefined) {
  console.error('usage: node test/storage/archive-once.ts <video url> <store dir>');
  process.exit(2);
}
const store = createLocalVideoStore({ dir, publicBaseUrl: () => 'http://gw.test', secret: 'archive-once-secret-0123456789abc' });
const rssBefore = process.memoryUsage().rss;
const started = performance.now();
const stored = await downloadVideo({ url, store, key: 'tenant/task/1.mp4', maxBytes: 2 ** 32, timeoutMs: 300_000, allowPrivate: true });
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ ...stored, seconds, rssBefore, peakRss: process.resourceUsage().maxRSS * 1024 }));
