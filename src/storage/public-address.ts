import { BlockList, isIP } from 'node:net';

/*
 * Which addresses the gateway may fetch result videos from, and send webhooks to, when
 * ALLOW_PRIVATE_URLS is off: only globally routable unicast. Everything private, local or
 * special-purpose is refused, including IPv6 forms that carry an IPv4 address inside (mapped,
 * NAT64, 6to4), judged by that IPv4 address. IPv6 outside global unicast (2000::/3) is refused
 * whole: unassigned space, IPv4-translated (::ffff:0:0:0/96), SRv6 (5f00::/16) and whatever the
 * registry assigns there next.
 */

const REFUSED_IPV4: [string, number][] = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];

/** Special-purpose blocks inside global unicast (2000::/3); the rest of IPv6 is refused whole. */
const REFUSED_IPV6: [string, number][] = [
  ['2001::', 23], // IETF protocol assignments (Teredo, benchmarking, ORCHID)
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
];
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet('2000::', 3, 'ipv6');

const refused = new BlockList();
for (const [network, prefix] of REFUSED_IPV4) refused.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of REFUSED_IPV6) refused.addSubnet(network, prefix, 'ipv6');

/** The eight 16-bit groups of a valid IPv6 address (dotted IPv4 tail allowed). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].map((group) => Number.parseInt(group, 16));
}

function ipv4Of(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** The IPv4 address an IPv6 address stands for (mapped, NAT64 well-known prefix, 6to4), or null. */
function embeddedIpv4(address: string): string | null {
  const g = ipv6Groups(address) as [number, number, number, number, number, number, number, number];
  const zeroUpTo = (n: number) => g.slice(0, n).every((group) => group === 0);
  if (zeroUpTo(5) && g[5] === 0xffff) return ipv4Of(g[6], g[7]); // ::ffff:0:0/96
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((group) => group === 0)) return ipv4Of(g[6], g[7]); // 64:ff9b::/96
  if (g[0] === 0x2002) return ipv4Of(g[1], g[2]); // 2002::/16
  return null;
}

/** True only for globally routable unicast addresses; anything that is not an IP address is refused. */
export function isPublicAddress(address: string): boolean {
  // A zone index only ever accompanies link-local and similar scoped addresses.
  const bare = address.includes('%') ? address.slice(0, address.indexOf('%')) : address;
  const family = isIP(bare);
  if (family === 4) return !refused.check(bare, 'ipv4');
  if (family !== 6) return false;
  const inner = embeddedIpv4(bare);
  if (inner !== null) return !refused.check(inner, 'ipv4');
  return GLOBAL_UNICAST.check(bare, 'ipv6') && !refused.check(bare, 'ipv6');
}
