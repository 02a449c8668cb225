import WebSocket from 'ws';

/*
 * A swarm of graphql-ws subscribers, one WebSocket each, speaking the graphql-transport-ws protocol
 * directly on `ws`: thousands of them cost little in the runner, and every `next` is stamped the
 * moment its frame is handled.
 */

export type Operation = { query: string; variables?: Record<string, unknown> };

export type SwarmOptions = {
  /** The http(s) URL of the GraphQL endpoint; the WebSocket URL is derived from it. */
  url: string;
  authorization: string | null;
  count: number;
  operation: (index: number) => Operation;
  /**
   * Count a subscriber as open only once its first `next` arrived (a per-task subscription sends
   * the task's current state at once): proof that the server registered it.
   */
  untilFirstNext: boolean;
  /** Connections being opened at the same time. */
  concurrency: number;
  timeoutMs: number;
};

export type Swarm = {
  readonly size: number;
  /** Called with every `next` payload after the subscriber is open, stamped with performance.now(). */
  onNext: ((index: number, payload: NextPayload, at: number) => void) | null;
  /** Protocol errors and unexpected closes seen since opening. */
  readonly problems: string[];
  /** Milliseconds it took to open every subscriber. */
  readonly openMs: number;
  close(): Promise<void>;
};

export type NextPayload = { data?: Record<string, unknown> | null; errors?: { message: string }[] };

type Message = { type: string; id?: string; payload?: unknown };

export async function openSwarm(options: SwarmOptions): Promise<Swarm> {
  const wsUrl = `${options.url.replace(/^http/, 'ws')}`;
  const sockets: WebSocket[] = [];
  const problems: string[] = [];
  let closing = false;
  const swarm: Swarm = {
    size: options.count,
    onNext: null,
    problems,
    openMs: 0,
    close: () => closeAll(),
  };

  function openOne(index: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
      sockets.push(socket);
      let open = false;
      const timer = setTimeout(() => fail(`subscriber ${index}: not open within ${options.timeoutMs} ms`), options.timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        if (!open) reject(new Error(why));
        else if (!closing) problems.push(why);
      };
      const opened = () => {
        open = true;
        clearTimeout(timer);
        resolve();
      };
      socket.on('open', () => {
        const payload = options.authorization === null ? {} : { authorization: options.authorization };
        socket.send(JSON.stringify({ type: 'connection_init', payload }));
      });
      socket.on('message', (raw) => {
        const at = performance.now();
        let message: Message;
        try {
          message = JSON.parse(String(raw)) as Message;
        } catch {
          return fail(`subscriber ${index}: a frame that is not JSON`);
        }
        switch (message.type) {
          case 'connection_ack':
            socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: options.operation(index) }));
            if (!options.untilFirstNext) opened();
            return;
          case 'next': {
            const payload = message.payload as NextPayload;
            if (payload.errors?.length) problems.push(`subscriber ${index}: ${payload.errors[0]?.message}`);
            if (!open) return opened();
            swarm.onNext?.(index, payload, at);
            return;
          }
          case 'ping':
            socket.send(JSON.stringify({ type: 'pong' }));
            return;
          case 'error':
            return fail(`subscriber ${index}: ${JSON.stringify(message.payload)}`);
          default:
            return;
        }
      });
      socket.on('error', (error) => fail(`subscriber ${index}: ${error.message}`));
      socket.on('close', (code, reason) => {
        if (!closing) fail(`subscriber ${index}: closed by the server (${code} ${String(reason)})`);
      });
    });
  }

  async function closeAll(): Promise<void> {
    closing = true;
    await Promise.all(
      sockets.map(
        (socket) =>
          new Promise<void>((resolve) => {
            if (socket.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              socket.terminate();
              resolve();
            }, 3_000);
            socket.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
            else socket.close(1000);
          }),
      ),
    );
  }

  const started = performance.now();
  let next = 0;
  const workers = Array.from({ length: Math.min(options.concurrency, options.count) }, async () => {
    while (next < options.count) {
      const index = next;
      next += 1;
      await openOne(index);
    }
  });
  try {
    await Promise.all(workers);
  } catch (error) {
    next = options.count;
    await closeAll();
    throw error;
  }
  return Object.assign(swarm, { openMs: performance.now() - started });
}
