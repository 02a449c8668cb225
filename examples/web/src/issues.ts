/** The form's fields, as the create form lays them out. */
export type FieldName = 'prompt' | 'mode' | 'aspectRatio' | 'durationSeconds' | 'referenceImage' | 'elementId' | 'referenceVideo' | 'form';

export type InputIssue = { path: readonly string[]; message: string };

/**
 * Where an `InvalidInputError` issue belongs. Paths start at the argument, then follow the input:
 * `["input","referenceImages","0","base64"]` is the first reference image's file, `["input",
 * "prompt"]` the prompt. This form has one slot for each list, so the index is always 0; an issue
 * the form has no field for (or a path it does not know) is shown above the button.
 */
export function fieldOf(path: readonly string[]): FieldName {
  const [argument, field] = path;
  if (argument !== 'input') return 'form';
  switch (field) {
    case 'prompt':
    case 'mode':
    case 'aspectRatio':
    case 'durationSeconds':
      return field;
    case 'referenceImages':
      return 'referenceImage';
    case 'elements':
      return 'elementId';
    case 'referenceVideos':
      return 'referenceVideo';
    default:
      return 'form';
  }
}

export function groupIssues(issues: readonly InputIssue[]): Map<FieldName, string[]> {
  const byField = new Map<FieldName, string[]>();
  for (const issue of issues) {
    const field = fieldOf(issue.path);
    byField.set(field, [...(byField.get(field) ?? []), issue.message]);
  }
  return byField;
}
