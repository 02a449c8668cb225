import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens (port 0 picks a free one) and resolves with the base URL a client on this host would use. */
export async function listen(server: Server, port: number, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const bound = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${bound === '0.0.0.0' || bound === '[::]' ? 'localhost' : bound}:${address.port}`;
}
