import type { AspectRatio, OmniMode, OmniTaskStatus } from './gql/graphql';

export const STATUSES: readonly OmniTaskStatus[] = ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];

export const STATUS_LABELS: Record<OmniTaskStatus, string> = {
  PENDING: 'Pending',
  SUBMITTED: 'Submitted',
  PROCESSING: 'Processing',
  SUCCEEDED: 'Succeeded',
  FAILED: 'Failed',
  CANCELLED: 'Cancelled',
};

export const MODE_LABELS: Record<OmniMode, string> = { STD: 'STD · 720p', PRO: 'PRO · 1080p' };

export const ASPECT_LABELS: Record<AspectRatio, string> = { RATIO_16_9: '16:9', RATIO_9_16: '9:16', RATIO_1_1: '1:1' };

export function isFinal(status: OmniTaskStatus): boolean {
  return status === 'SUCCEEDED' || status === 'FAILED' || status === 'CANCELLED';
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function formatDateTime(iso: string | null): string {
  return iso === null ? '—' : dateTime.format(new Date(iso));
}

export function formatNumber(value: number, fractionDigits = 1): string {
  return value.toLocaleString(undefined, { maximumFractionDigits: fractionDigits });
}
