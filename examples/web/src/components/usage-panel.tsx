import type { ViewerQuery } from '../gql/graphql';
import { formatNumber, MODE_LABELS } from '../labels.ts';

/** This month's usage (UTC calendar month, the gateway's default for `usage`). */
export function UsagePanel({ viewer }: { viewer: ViewerQuery['viewer'] }) {
  const { usage, tenant } = viewer;
  return (
    <section className="panel usage" aria-label="Usage this month">
      <h2>This month</h2>
      <dl className="figures">
        <div>
          <dt>Succeeded</dt>
          <dd data-testid="usage-succeeded">{usage.succeededTasks}</dd>
        </div>
        <div>
          <dt>Failed</dt>
          <dd data-testid="usage-failed">{usage.failedTasks}</dd>
        </div>
        <div>
          <dt>Video seconds</dt>
          <dd data-testid="usage-seconds">
            {formatNumber(usage.videoSeconds)}
            {tenant.monthlyVideoSecondsLimit !== null && <small> / {tenant.monthlyVideoSecondsLimit}</small>}
          </dd>
        </div>
        <div>
          <dt>Units</dt>
          <dd data-testid="usage-units">{formatNumber(usage.units, 2)}</dd>
        </div>
      </dl>
      {usage.byMode.length > 0 && (
        <table className="by-mode">
          <thead>
            <tr>
              <th>Mode</th>
              <th>Tasks</th>
              <th>Seconds</th>
              <th>Units</th>
            </tr>
          </thead>
          <tbody>
            {usage.byMode.map((row) => (
              <tr key={row.mode}>
                <td>{MODE_LABELS[row.mode]}</td>
                <td>{row.tasks}</td>
                <td>{formatNumber(row.videoSeconds)}</td>
                <td>{formatNumber(row.units, 2)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
