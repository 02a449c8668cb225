import { and, eq, isNotNull, lte, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/database.ts';
import { videoArchives } from '../db/schema.ts';
import { createJobLoop } from '../jobs/loop.ts';
import type { Logger } from '../logger.ts';
import { DownloadError, downloadVideo } from '../storage/download.ts';
import type { VideoStore } from '../storage/video-store.ts';
import type { TaskRow, TaskStateMachine } from '../tasks/state.ts';

type ArchiveJob = typeof videoArchives.$inferSelect;
export type ArchiveOutcome = 'archived' | 'retry' | 'failed';

export type ArchiverOptions = {
  db: Db;
  store: VideoStore;
  /** Records each finished copy on its task (a new version, announced). */
  taskState: Pick<TaskStateMachine, 'commit' | 'recordArchive'>;
  logger: Logger;
  intervalMs: number;
  maxBytes: number;
  /** Bound on one whole download; the lease outlives it, so a live job is never taken twice. */
  timeoutMs: number;
  allowPrivateUrls: boolean;
  maxAttempts: number;
  batchSize?: number;
  onOutcome?: (outcome: ArchiveOutcome) => void;
};

export type Archiver = {
  start(): void;
  /** Stops the loop and waits for the jobs in hand. */
  stop(): Promise<void>;
  /** Leases the due jobs and runs them; resolves with how many it ran. */
  tick(): Promise<number>;
};

/** Where a task's video lives in the store: deterministic, so a retried job replaces, never duplicates. */
function archiveKey(job: { tenantId: string; taskId: string; videoIndex: number }): string {
  return `${job.tenantId}/${job.taskId}/${job.videoIndex}.mp4`;
}

/** A final-state hook: queues a copy of each result video of a task that just succeeded, in that transaction. */
export async function queueArchive(tx: Tx, task: TaskRow): Promise<void> {
  const jobs = task.videos.map((video, i) => ({
    taskId: task.id,
    videoIndex: i + 1,
    tenantId: task.tenantId,
    sourceUrl: video.upstreamUrl,
    nextAttemptAt: sql`now()`,
  }));
  if (jobs.length > 0) await tx.insert(videoArchives).values(jobs).onConflictDoNothing();
}

function retryDelaySeconds(attempts: number): number {
  return Math.min(600, 5 * 2 ** Math.max(0, attempts - 1));
}

async function lease(db: Db, batchSize: number, leaseSeconds: number): Promise<ArchiveJob[]> {
  return db.transaction(async (tx) => {
    const due = await tx
      .select({ taskId: videoArchives.taskId, videoIndex: videoArchives.videoIndex })
      .from(videoArchives)
      .where(and(eq(videoArchives.status, 'pending'), isNotNull(videoArchives.nextAttemptAt), lte(videoArchives.nextAttemptAt, sql`now()`)))
      .orderBy(videoArchives.nextAttemptAt)
      .limit(batchSize)
      .for('update', { skipLocked: true });
    const leased: ArchiveJob[] = [];
    for (const job of due) {
      const [row] = await tx
        .update(videoArchives)
        .set({
          nextAttemptAt: sql`now() + make_interval(secs => ${leaseSeconds})`,
          attempts: sql`${videoArchives.attempts} + 1`,
        })
        .where(and(eq(videoArchives.taskId, job.taskId), eq(videoArchives.videoIndex, job.videoIndex)))
        .returning();
      if (row !== undefined) leased.push(row);
    }
    return leased;
  });
}

export function createArchiver(options: ArchiverOptions): Archiver {
  const { db, store, logger } = options;
  const batchSize = options.batchSize ?? 4;
  const leaseSeconds = Math.ceil(options.timeoutMs / 1000) + 5;

  /** Records the copy on the job and, through the state machine, on the task (one version, announced). */
  async function complete(job: ArchiveJob, stored: { key: string; size: number; sha256: string }): Promise<void> {
    await options.taskState.commit(db, async (tx) => {
      const [done] = await tx
        .update(videoArchives)
        .set({
          status: 'done',
          storedKey: stored.key,
          sizeBytes: stored.size,
          sha256: stored.sha256,
          archivedAt: sql`now()`,
          nextAttemptAt: null,
          lastError: null,
        })
        .where(and(eq(videoArchives.taskId, job.taskId), eq(videoArchives.videoIndex, job.videoIndex), eq(videoArchives.status, 'pending')))
        .returning();
      if (done === undefined) return; // another run finished it first
      await options.taskState.recordArchive(tx, job.taskId, {
        videoIndex: job.videoIndex,
        key: stored.key,
        sizeBytes: stored.size,
        sha256: stored.sha256,
      });
    });
  }

  async function fail(job: ArchiveJob, error: unknown): Promise<ArchiveOutcome> {
    const retryable = error instanceof DownloadError ? error.retryable : true; // store errors: try again
    const message = error instanceof Error ? error.message : String(error);
    const final = !retryable || job.attempts >= options.maxAttempts;
    await db
      .update(videoArchives)
      .set(
        final
          ? { status: 'failed', lastError: message, nextAttemptAt: null }
          : { lastError: message, nextAttemptAt: sql`now() + make_interval(secs => ${retryDelaySeconds(job.attempts)})` },
      )
      .where(and(eq(videoArchives.taskId, job.taskId), eq(videoArchives.videoIndex, job.videoIndex)));
    logger.warn(
      { taskId: job.taskId, videoIndex: job.videoIndex, attempts: job.attempts, final, err: message },
      'video archive attempt failed',
    );
    return final ? 'failed' : 'retry';
  }

  async function run(job: ArchiveJob): Promise<ArchiveOutcome> {
    try {
      const stored = await downloadVideo({
        url: job.sourceUrl,
        store,
        key: archiveKey(job),
        maxBytes: options.maxBytes,
        timeoutMs: options.timeoutMs,
        allowPrivate: options.allowPrivateUrls,
      });
      await complete(job, stored);
      return 'archived';
    } catch (error) {
      return fail(job, error);
    }
  }

  async function tick(): Promise<number> {
    const jobs = await lease(db, batchSize, leaseSeconds);
    const outcomes = await Promise.all(jobs.map(run));
    for (const outcome of outcomes) options.onOutcome?.(outcome);
    return jobs.length;
  }

  return {
    ...createJobLoop({ name: 'archiver', tick, batchSize, intervalMs: options.intervalMs, logger }),
    tick,
  };
}
