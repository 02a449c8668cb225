/** One line of the result table: a figure, its anchor from the same run, and their ratio. */
export type Figure = {
  id: string;
  figure: string;
  /** e.g. "req/s", "p50 ms", "KiB/sub". */
  metric: string;
  value: number | null;
  anchor: string;
  anchorValue: number | null;
  /** value / anchorValue. */
  ratio: number | null;
  note?: string;
  /** Set when the figure could not be measured or cannot be trusted. */
  error?: string;
};

export function figure(fields: Omit<Figure, 'ratio'>): Figure {
  const { value, anchorValue } = fields;
  const ratio = value !== null && anchorValue !== null && anchorValue > 0 && Number.isFinite(value) ? value / anchorValue : null;
  return { ...fields, ratio };
}

export function formatNumber(value: number | null, metric: string): string {
  if (value === null || !Number.isFinite(value)) return '—';
  if (metric.includes('req/s')) return Math.round(value).toLocaleString('en-US');
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatRatio(ratio: number | null): string {
  if (ratio === null) return '—';
  return `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`;
}

/** A plain-text table, columns padded to their widest cell. */
export function renderTable(figures: Figure[]): string {
  const header = ['figure', 'value', 'anchor (same run)', 'anchor value', 'ratio', 'note'];
  const rows = figures.map((f) => [
    f.figure,
    f.error && f.value === null ? 'FAILED' : `${formatNumber(f.value, f.metric)} ${f.metric}`,
    f.anchor,
    `${formatNumber(f.anchorValue, f.metric)} ${f.metric}`,
    formatRatio(f.ratio),
    [f.note, f.error ? `! ${f.error}` : undefined].filter(Boolean).join('; '),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) =>
        column === 1 || column === 3 || column === 4 ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0),
      )
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
