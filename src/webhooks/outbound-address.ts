import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { isPublicAddress } from '../storage/public-address.ts';

/*
 * Where outbound webhooks may go when ALLOW_PRIVATE_URLS is off: the archive's rule
 * (storage/public-address.ts). The URL is checked when an endpoint is created or changed, and the
 * address actually connected to is checked again at every delivery, inside the socket's own DNS
 * lookup, so a name that answers differently later (DNS rebinding) reaches nothing private.
 */

export type ResolvedAddress = { address: string; family: number };
/** Resolves a host name to every address it has (injected by tests to change a DNS answer). */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: HostResolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export class RefusedAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedAddressError';
  }
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** Why `raw` cannot be an endpoint URL, or null when it can (the name is resolved now when private addresses are refused). */
export async function endpointUrlProblem(raw: string, allowPrivate: boolean, resolve: HostResolver): Promise<string | null> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL';
  if (url.username !== '' || url.password !== '') return 'must not carry credentials';
  if (allowPrivate) return null;
  const host = bareHost(url);
  if (isIP(host) !== 0) return isPublicAddress(host) ? null : `${host} is not a public address`;
  // One answer for a name that does not resolve and one that resolves to a private address, and no
  // address in it: the gateway's own DNS view is not for tenants to probe.
  const refused = `${host} must resolve, and only to public addresses`;
  let addresses: ResolvedAddress[];
  try {
    addresses = await resolve(host);
  } catch {
    return refused;
  }
  if (addresses.length === 0) return refused;
  return addresses.every((entry) => isPublicAddress(entry.address)) ? null : refused;
}

/** A socket lookup that fails unless every address of the name is public. */
export function publicOnlyLookup(resolve: HostResolver): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (addresses) => {
        const bad = addresses.find((entry) => !isPublicAddress(entry.address));
        if (bad !== undefined) {
          callback(new RefusedAddressError(`${hostname} resolved to an address that is not public`), '');
          return;
        }
        const first = addresses[0];
        if (first === undefined) {
          callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
          return;
        }
        if (options.all) callback(null, addresses);
        else callback(null, first.address, first.family);
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, ''),
    );
  };
}

/** An IP literal in `url` that is not public (literals skip the lookup), or null. */
export function refusedLiteral(url: URL): string | null {
  const host = bareHost(url);
  return isIP(host) !== 0 && !isPublicAddress(host) ? host : null;
}
