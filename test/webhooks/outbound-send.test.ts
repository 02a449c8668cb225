import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postWebhook } from '../../src/webhooks/outbound-send.ts';

/**
 * One attempt against receivers that answer oddly, on a raw TCP server: every attempt settles
 * within its timeout with a record of what happened, and a 2xx status line is a success however
 * the body goes on.
 */

let server: Server | null = null;
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
});

async function receiver(answer: string, closeAfter: boolean): Promise<string> {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => {
      socket.write(answer);
      if (closeAfter) socket.end();
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}/hook`;
}

const TIMEOUT_MS = 1_000;
const post = (url: string) =>
  postWebhook({ url, headers: {}, body: '{}', timeoutMs: TIMEOUT_MS, allowPrivate: true, resolve: async () => [] });
const SWITCH = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n';

describe('one webhook attempt against odd receivers', () => {
  it.each([
    ['101, then close', SWITCH, true],
    ['101, kept open', SWITCH, false],
    ['100, then close', 'HTTP/1.1 100 Continue\r\n\r\n', true],
    ['100, kept open', 'HTTP/1.1 100 Continue\r\n\r\n', false],
    ['not HTTP', 'NOT HTTP\r\n\r\n', true],
  ])('%s: a failed attempt, within the timeout', async (_name, answer, closeAfter) => {
    const result = await post(await receiver(answer, closeAfter));
    expect(result.error).not.toBeNull();
    expect(result.httpStatus === null || result.httpStatus < 200 || result.httpStatus >= 300).toBe(true);
    expect(result.durationMs).toBeLessThan(TIMEOUT_MS + 500);
  });

  it.each([
    ['200 whose body never ends', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc', false],
    ['200 closed halfway through its body', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc', true],
  ])('%s: a success, on the status line', async (_name, answer, closeAfter) => {
    expect(await post(await receiver(answer, closeAfter))).toMatchObject({ httpStatus: 200, error: null });
  });

  it('a redirect is not followed: the attempt records the 302', async () => {
    const answer = 'HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n';
    expect(await post(await receiver(answer, true))).toMatchObject({ httpStatus: 302 });
  });
});
