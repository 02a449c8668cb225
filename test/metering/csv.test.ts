import { describe, expect, it } from 'vitest';
import { csvField } from '../../src/metering/export-route.ts';

describe('CSV cells of the usage export', () => {
  it.each([
    ['=HYPERLINK("http://evil","x")', `"'=HYPERLINK(""http://evil"",""x"")"`],
    ['+1+cmd|calc', "'+1+cmd|calc"],
    ['-2+3', "'-2+3"],
    ['@SUM(A1)', "'@SUM(A1)"],
    ['\t=1', "'\t=1"],
    ['\r=1', `"'\r=1"`],
  ])('neutralises a cell a spreadsheet would evaluate: %j', (value, expected) => {
    expect(csvField(value)).toBe(expected);
  });

  it.each([
    ['-0.5', '-0.5'],
    ['12.25', '12.25'],
    ['PRO', 'PRO'],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
  ])('keeps numbers and plain text as they are, quoting separators: %j', (value, expected) => {
    expect(csvField(value)).toBe(expected);
  });
});
