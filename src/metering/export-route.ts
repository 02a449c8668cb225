import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { AppError } from '../errors.ts';
import { toGlobalId, fromGlobalId } from '../ids.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../logger.ts';
import type { Viewer } from '../tenants/tenants.ts';
import type { MeteringService, UsageEvent } from './metering.ts';

export const USAGE_EXPORT_PATH = '/usage/events.csv';
const PAGE = 1_000;

const COLUMNS = [
  'event_id',
  'tenant_id',
  'task_id',
  'kind',
  'mode',
  'has_video_input',
  'video_seconds',
  'seconds_source',
  'rate',
  'units',
  'upstream_units',
  'occurred_at',
] as const;

const queryModel = z.object({
  from: z.iso
    .datetime({ offset: true })
    .transform((v) => new Date(v))
    .optional(),
  to: z.iso
    .datetime({ offset: true })
    .transform((v) => new Date(v))
    .optional(),
  tenantId: z.string().min(1).optional(),
});

const NUMBER = /^-?\d+(\.\d+)?$/;

/**
 * A cell a spreadsheet would evaluate (leading =, +, -, @, tab or CR; OWASP's CSV injection list)
 * gets a leading apostrophe, which spreadsheets show as text; quoting alone does not stop them.
 * Plain numbers are left as they are. Separators and quotes are quoted.
 */
export function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) && !NUMBER.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** Resolves when the response can take more, or when the client has gone (then nothing more is written). */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function csvRow(event: UsageEvent): string {
  const cells: Record<(typeof COLUMNS)[number], string> = {
    event_id: event.id,
    tenant_id: toGlobalId('Tenant', event.tenantId),
    task_id: toGlobalId('OmniTask', event.taskId),
    kind: event.kind,
    mode: event.mode,
    has_video_input: String(event.hasVideoInput),
    video_seconds: String(event.videoSeconds),
    seconds_source: event.secondsSource,
    rate: String(event.rate),
    units: String(Math.round(event.units * 1e6) / 1e6),
    upstream_units: event.upstreamUnits ?? '',
    occurred_at: event.occurredAt.toISOString(),
  };
  return `${COLUMNS.map((column) => csvField(cells[column])).join(',')}\n`;
}

/**
 * GET /usage/events.csv?from=&to=[&tenantId=]: the usage ledger for billing, streamed in
 * (occurred_at, event_id) order. `event_id` is stable: billing systems de-duplicate on it. A
 * tenant key exports its own events; the admin key exports every tenant's, or one with tenantId.
 */
export function createUsageExportHandler(deps: {
  metering: MeteringService;
  authenticate: (authorization: string | undefined, address?: string) => Promise<Viewer>;
  /** The tenant's request rate: an export counts as a request. */
  admitRequest: (viewer: Viewer) => void;
  logger: Logger;
}) {
  return async function exportUsage(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'use GET' }, { allow: 'GET' });
    let viewer: Viewer;
    try {
      viewer = await deps.authenticate(req.headers.authorization, req.socket.remoteAddress);
      deps.admitRequest(viewer);
    } catch (error) {
      const http =
        error instanceof AppError
          ? (error.extensions.http as { status?: number; headers?: Record<string, string> } | undefined)
          : undefined;
      return sendJson(res, http?.status ?? 401, { error: error instanceof Error ? error.message : 'unauthenticated' }, http?.headers ?? {});
    }
    const url = new URL(req.url ?? '/', 'http://local');
    const parsed = queryModel.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) {
      return sendJson(res, 400, { error: 'from and to must be ISO 8601 date-times', issues: parsed.error.issues });
    }
    const month = deps.metering.currentMonth();
    const range = { from: parsed.data.from ?? month.from, to: parsed.data.to ?? month.to };
    if (range.from >= range.to) return sendJson(res, 400, { error: '"from" must be before "to"' });
    let tenantId: string | null;
    if (viewer.kind === 'tenant') {
      if (parsed.data.tenantId !== undefined) return sendJson(res, 403, { error: 'tenantId is for the admin key' });
      tenantId = viewer.tenantId;
    } else {
      tenantId = parsed.data.tenantId === undefined ? null : fromGlobalId(parsed.data.tenantId, 'Tenant');
      if (parsed.data.tenantId !== undefined && tenantId === null) return sendJson(res, 400, { error: 'unknown tenantId' });
    }

    res.writeHead(200, {
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="usage-${range.from.toISOString().slice(0, 10)}.csv"`,
      'cache-control': 'no-store',
    });
    res.write(`${COLUMNS.join(',')}\n`);
    let after: { occurredAt: Date; id: string } | null = null;
    try {
      for (;;) {
        const events = await deps.metering.events(tenantId, range, after, PAGE);
        if (events.length === 0) break;
        const chunk = events.map(csvRow).join('');
        if (!res.write(chunk)) await drainedOrClosed(res);
        const last = events.at(-1);
        if (last === undefined) break;
        after = { occurredAt: last.occurredAt, id: last.id };
        if (events.length < PAGE || res.destroyed) break;
      }
      res.end();
    } catch (error) {
      // The status line is gone already; cutting the stream short tells the client it is incomplete.
      deps.logger.error({ err: error }, 'usage export failed midway');
      res.destroy(error instanceof Error ? error : new Error('export failed'));
    }
  };
}
