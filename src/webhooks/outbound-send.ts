import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Webhook } from 'standardwebhooks';
import type { HostResolver } from './outbound-address.ts';
import { publicOnlyLookup, RefusedAddressError, refusedLiteral } from './outbound-address.ts';

/** A new endpoint secret: `whsec_` and 24 random bytes in base64, the form the Standard Webhooks libraries take. */
export function generateEndpointSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/**
 * The `webhook-signature` header: one `v1,<signature>` per secret, space-separated (during a
 * rotation both the new and the old secret sign, so a receiver holding either verifies).
 */
export function signatureHeader(secrets: readonly string[], id: string, timestamp: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(' ');
}

export type AttemptResult = { httpStatus: number | null; durationMs: number; error: string | null };

/** Only so much of a receiver's answer is read; it is not kept. */
const MAX_RESPONSE_BYTES = 64 * 1024;

function describe(error: unknown, signal: AbortSignal, timeoutMs: number): string {
  if (error instanceof RefusedAddressError) return `refused: ${error.message}`;
  if (signal.aborted) return `no answer within ${timeoutMs} ms`;
  const code = (error as NodeJS.ErrnoException).code;
  return `network error: ${code ?? (error as Error).message}`;
}

/**
 * POSTs one signed delivery. Redirects are not followed (a 3xx is a failed attempt), each
 * attempt opens a connection of its own, and unless private addresses are allowed the address
 * connected to is checked in the socket's lookup. Never throws: the outcome is the attempt record.
 */
export function postWebhook(options: {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  allowPrivate: boolean;
  resolve: HostResolver;
}): Promise<AttemptResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const url = new URL(options.url);
  const literal = options.allowPrivate ? null : refusedLiteral(url);
  if (literal !== null) return Promise.resolve({ httpStatus: null, durationMs: 0, error: `refused: ${literal} is not a public address` });
  const controller = new AbortController();
  const signal = controller.signal;
  return new Promise((resolve) => {
    // Settled once, whichever comes first: the status line, an error, the socket closing, or our own timer
    // (a receiver switching protocols or never answering must not hold the attempt).
    let settled = false;
    const settle = (result: Omit<AttemptResult, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...result, durationMs: elapsed() });
    };
    const timer = setTimeout(() => {
      controller.abort();
      request.destroy();
      settle({ httpStatus: null, error: `no answer within ${options.timeoutMs} ms` });
    }, options.timeoutMs);
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      agent: false,
      signal,
      ...(options.allowPrivate ? {} : { lookup: publicOnlyLookup(options.resolve) }),
      headers: {
        ...options.headers,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(options.body)),
        'user-agent': 'omni-gateway-webhooks',
      },
    });
    request.on('response', (response) => {
      // The status line decides the attempt; the body is read (up to a bound) only to close politely.
      settle({ httpStatus: response.statusCode ?? null, error: null });
      let read = 0;
      response.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_RESPONSE_BYTES) response.destroy();
      });
      response.on('error', () => {});
      response.once('end', () => request.destroy());
      // A body that never ends holds no socket for longer than an attempt may take.
      setTimeout(() => request.destroy(), options.timeoutMs).unref();
    });
    request.on('upgrade', (response, socket) => {
      socket.destroy();
      settle({ httpStatus: response.statusCode ?? 101, error: 'the receiver switched protocols' });
    });
    request.on('error', (error) => settle({ httpStatus: null, error: describe(error, signal, options.timeoutMs) }));
    request.on('close', () => settle({ httpStatus: null, error: 'the connection closed without an answer' }));
    request.end(options.body);
  });
}
