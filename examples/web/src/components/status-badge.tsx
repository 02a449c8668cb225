import type { OmniTaskStatus } from '../gql/graphql';
import { STATUS_LABELS } from '../labels.ts';

export function StatusBadge({ status }: { status: OmniTaskStatus }) {
  return (
    <span className={`status status-${status.toLowerCase()}`} data-status={status}>
      {STATUS_LABELS[status]}
    </span>
  );
}
