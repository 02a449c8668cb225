// Archives one video URL into a local store and prints what it cost, as one JSON line:
//   node test/storage/archive-once.ts <video url> <store dir>
// Run as its own process by download-memory.test.ts, so that the peak resident memory it reports
// (the kernel's high-water mark) belongs to the download alone. Loopback URLs are allowed.
import { readFileSync } from 'node:fs';
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
// The high-water mark of this process's own memory (VmHWM, in kB). Not resourceUsage().maxRSS: Linux
// carries that over from the parent at fork, so it would start at the test worker's size.
const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
if (hwm === null) throw new Error('no VmHWM in /proc/self/status');
console.log(JSON.stringify({ ...stored, seconds, rssBefore, peakRss: Number(hwm[1]) * 1024 }));
