import { readFileSync } from 'node:fs';

type CallFrame = { functionName: string; url: string; lineNumber: number };

/** The parts of a V8 `.cpuprofile` (written by `node --cpu-prof`) that self time needs. */
type CpuProfile = {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  /** Microseconds on the monotonic clock. */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
};

/** `where` is file:line; for a native function (writev, fstat…), the nearest JavaScript caller's area. */
export type SelfTime = { function: string; where: string; selfMs: number; share: number };
export type ProfileSummary = {
  /** Sampled time in the window, idle excluded. */
  busyMs: number;
  idleMs: number;
  top: SelfTime[];
  /** Self time by package or source folder: where the time goes at a glance. */
  byArea: { area: string; selfMs: number; share: number }[];
};

export type Window = { from: number; to: number };

export function readProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

/** The profile's time span, to check that the runner's phase marks fall inside it. */
export function profileSpan(profile: CpuProfile): Window {
  return { from: profile.startTime, to: profile.endTime };
}

function shortUrl(url: string, root: string): string {
  const path = url.replace(/^file:\/\//, '');
  const inModules = path.lastIndexOf('/node_modules/');
  if (inModules !== -1) return path.slice(inModules + '/node_modules/'.length);
  return path.startsWith(root) ? path.slice(root.length) : path;
}

function areaOf(functionName: string, url: string, root: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node core';
  if (url.startsWith('wasm://')) return 'wasm';
  const parts = shortUrl(url, root).split('/');
  if (url.includes('/node_modules/')) return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
  // Our own code, by folder: src/tasks, src/graphql, bench/...
  return parts.slice(0, Math.min(2, parts.length - 1) || 1).join('/');
}

/**
 * Self time per function (name, file and line) over the samples inside `window` (or all of them),
 * heaviest first. `root` is stripped from file paths.
 */
export function summariseProfile(profile: CpuProfile, root: string, window: Window | null, topCount = 15): ProfileSummary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  // Native frames (writev, fstat…) say little by themselves: charge them to the nearest caller
  // outside Node's own library (an HTTP response, PGlite's file system…).
  const callerArea = (id: number): string | null => {
    let inNode = false;
    for (let at = parents.get(id); at !== undefined; at = parents.get(at)) {
      const frame = nodes.get(at);
      if (frame === undefined || frame.url === '') continue;
      if (frame.url.startsWith('node:')) inNode = true;
      else return areaOf(frame.functionName, frame.url, root);
    }
    return inNode ? 'node core' : null;
  };
  const byFunction = new Map<string, { function: string; where: string; micros: number }>();
  const byArea = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    at += profile.timeDeltas[i] ?? 0;
    if (window !== null && (at < window.from || at > window.to)) continue;
    // A sample stands for the time until the next one.
    const micros = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i] ?? -1;
    const frame = nodes.get(id);
    if (frame === undefined) continue;
    if (frame.functionName === '(idle)') {
      idle += micros;
      continue;
    }
    busy += micros;
    const caller = frame.url === '' ? callerArea(id) : null;
    const where =
      frame.url !== '' ? `${shortUrl(frame.url, root)}:${frame.lineNumber + 1}` : caller === null ? '' : `(native, from ${caller})`;
    const name = frame.functionName || '(anonymous)';
    const key = `${name} ${where}`;
    const entry = byFunction.get(key) ?? { function: name, where, micros: 0 };
    entry.micros += micros;
    byFunction.set(key, entry);
    const area = caller ?? areaOf(frame.functionName, frame.url, root);
    byArea.set(area, (byArea.get(area) ?? 0) + micros);
  }
  const share = (micros: number) => (busy === 0 ? 0 : micros / busy);
  return {
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    top: [...byFunction.values()]
      .sort((a, b) => b.micros - a.micros)
      .slice(0, topCount)
      .map((entry) => ({ function: entry.function, where: entry.where, selfMs: entry.micros / 1000, share: share(entry.micros) })),
    byArea: [...byArea.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([area, micros]) => ({ area, selfMs: micros / 1000, share: share(micros) })),
  };
}
