/**
 * The review's attack, measured: six concurrent unauthenticated POSTs of 21 MB of JSON to
 * /graphql, sent as fast as loopback takes them, while a tenant keeps reading. Prints the time each
 * attacker waited for its refusal, the gateway's RSS before and at its peak, and the tenant's read
 * latency before and during the attack. `npm run bench:attack`; a script, not a test: figures vary
 * by machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentiles, sleep } from './support/stats.ts';
import { freePort, rssKiB, startNode, waitForHttp } from './support/processes.ts';

const ATTACKERS = 6;
const BODY_BYTES = 21 * 1024 * 1024;
const ADMIN = 'attack-admin-key-0123456789';

function attackBody(): Buffer {
  const head = '{"query":"{__typename}","variables":{"a":[';
  const tail = '{}]}}';
  const items = Math.floor((BODY_BYTES - head.length - tail.length) / 3);
  return Buffer.from(`${head}${'{},'.repeat(items)}${tail}`);
}

/** Sends the whole body without a key; resolves with the ms until the answer and its status. */
function attack(url: string, body: Buffer): Promise<{ ms: number; status: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
    });
    req.once('response', (response) => {
      response.resume();
      resolve({ ms: performance.now() - started, status: response.statusCode ?? 0 });
    });
    req.once('error', () => resolve({ ms: performance.now() - started, status: 0 }));
    req.end(body);
  });
}

async function graphql(url: string, key: string, query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query }),
  });
  return (await response.json()) as Record<string, unknown>;
}

/** Reads `viewer` back to back until `until` resolves; returns each read's latency in ms. */
async function readWhile(url: string, key: string, until: Promise<unknown>): Promise<number[]> {
  let done = false;
  void until.then(() => {
    done = true;
  });
  const samples: number[] = [];
  while (!done && samples.length < 100_000) {
    const started = performance.now();
    await graphql(url, key, '{ viewer { tenant { name } } }');
    samples.push(performance.now() - started);
  }
  return samples;
}

const dataDir = mkdtempSync(join(tmpdir(), 'omni-attack-'));
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const gateway = startNode('gateway', 'src/main.ts', {
  env: {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_REQUESTS_PER_SECOND: '0',
  },
});
try {
  await waitForHttp(`${url}/readyz`, gateway, 30_000);
  const created = (await graphql(url, ADMIN, 'mutation { createTenant(input: { name: "Reader" }) { apiKey } }')) as {
    data: { createTenant: { apiKey: string } };
  };
  const key = created.data.createTenant.apiKey;
  const quiet = await readWhile(url, key, sleep(2_000));
  const rssBefore = rssKiB(gateway.pid);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, rssKiB(gateway.pid));
  }, 20);
  const body = attackBody();
  const attacks = Promise.all(Array.from({ length: ATTACKERS }, () => attack(url, body)));
  const during = await readWhile(url, key, attacks);
  clearInterval(sampler);
  const answers = await attacks;
  const refusal = percentiles(answers.map((answer) => answer.ms));
  const before = percentiles(quiet);
  const meanwhile = percentiles(during);
  console.log(
    `attack: ${ATTACKERS} × ${(body.length / 1024 / 1024).toFixed(1)} MB without a key; statuses ${[...new Set(answers.map((a) => a.status))].join(', ')}`,
  );
  console.log(`| figure | value |\n|---|---|`);
  console.log(`| time to refusal, median / max | ${refusal.p50.toFixed(1)} ms / ${refusal.max.toFixed(1)} ms |`);
  console.log(
    `| gateway RSS before → peak | ${(rssBefore / 1024).toFixed(0)} MiB → ${(rssPeak / 1024).toFixed(0)} MiB (+${((rssPeak - rssBefore) / 1024).toFixed(0)} MiB) |`,
  );
  console.log(`| tenant read p50 / p99, quiet (${before.count} reads) | ${before.p50.toFixed(2)} ms / ${before.p99.toFixed(2)} ms |`);
  console.log(
    `| tenant read p50 / p99, during the attack (${meanwhile.count} reads) | ${meanwhile.p50.toFixed(2)} ms / ${meanwhile.p99.toFixed(2)} ms |`,
  );
} finally {
  await gateway.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
