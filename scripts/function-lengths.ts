/**
 * Lists the functions in src/ longer than the limit (80 lines of code: blank and comment-only lines
 * do not count, closing-brace lines do) and exits 1 if there are any. Biome's own rule counts more
 * leniently (it skips lines that start with `}`), so this is the measure CI holds us to.
 * A function that is a data table may say so with `// function-length: data table` on the line
 * above it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseSync } from '@swc/core';

const LIMIT = Number(process.argv[2] ?? 80);
const ROOT = new URL('..', import.meta.url).pathname;
const DATA_TABLE = /\/\/ function-length: data table/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

type Span = { start: number; end: number };
type Node = { type?: string; span?: Span; identifier?: { value?: string }; key?: { value?: string } } & Record<string, unknown>;
const FUNCTION_TYPES = new Set([
  'FunctionDeclaration',
  'FunctionExpression',
  'ArrowFunctionExpression',
  'ClassMethod',
  'MethodProperty',
  'GetterProperty',
  'SetterProperty',
]);

function codeLines(lines: string[], from: number, to: number): number {
  let count = 0;
  let inBlock = false;
  for (let i = from; i <= to; i += 1) {
    const line = (lines[i] ?? '').trim();
    if (inBlock) {
      if (line.includes('*/')) inBlock = false;
      continue;
    }
    if (line === '' || line.startsWith('//')) continue;
    if (line.startsWith('/*')) {
      inBlock = !line.includes('*/');
      continue;
    }
    count += 1;
  }
  return count;
}

const offenders: string[] = [];
for (const file of files(join(ROOT, 'src'))) {
  const source = readFileSync(file, 'utf8');
  const module = parseSync(source, { syntax: 'typescript', target: 'es2022' });
  // swc spans are byte offsets shared by every parse of the process: rebase on this module's start.
  const base = module.span.start;
  const bytes = Buffer.from(source, 'utf8');
  const lineOf = (offset: number) =>
    bytes
      .subarray(0, offset - base)
      .toString('utf8')
      .split('\n').length - 1;
  const lines = source.split('\n');
  const visit = (node: unknown, name: string) => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const child of node) visit(child, name);
      return;
    }
    const n = node as Node;
    let here = name;
    if (n.type === 'VariableDeclarator' && (n.id as Node | undefined)?.value) here = String((n.id as Node).value);
    if (n.type === 'FunctionDeclaration' && n.identifier?.value) here = n.identifier.value;
    if ((n.type === 'MethodProperty' || n.type === 'KeyValueProperty' || n.type === 'ClassMethod') && n.key?.value)
      here = String(n.key.value);
    if (n.type !== undefined && FUNCTION_TYPES.has(n.type) && n.span !== undefined) {
      const first = lineOf(n.span.start);
      const last = lineOf(n.span.end);
      const length = codeLines(lines, first, last);
      const marked = DATA_TABLE.test(lines[first - 1] ?? '') || DATA_TABLE.test(lines[first] ?? '');
      if (length > LIMIT && !marked) offenders.push(`${relative(ROOT, file)}:${first + 1} ${here}: ${length} lines`);
    }
    for (const [key, child] of Object.entries(n)) if (key !== 'span') visit(child, here);
  };
  visit(module.body, '(module)');
}

if (offenders.length > 0) {
  console.log(`functions over ${LIMIT} lines of code in src/:\n${offenders.map((line) => `  ${line}`).join('\n')}`);
  process.exit(1);
}
console.log(`no function in src/ is over ${LIMIT} lines of code`);
