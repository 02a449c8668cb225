import { randomUUID } from 'node:crypto';
import type { SimTask } from './task.ts';

// The JSON bodies of the simulated upstream, shaped like the reference's examples (§1–§3).

export function klingError(code: number, message: string) {
  return { code, message, request_id: randomUUID() };
}

export function klingSuccess(data: unknown) {
  return { code: 0, message: 'SUCCEED', request_id: randomUUID(), data };
}

function taskInfo(task: SimTask) {
  return task.externalTaskId === null ? {} : { external_task_id: task.externalTaskId };
}

function resultUrl(task: SimTask, watermark: boolean): string {
  return `${task.resultBase}/results/${encodeURIComponent(task.id)}.mp4${watermark ? '?watermark=1' : ''}`;
}

// The callback example of the reference (§3) carries no watermark_url; the query (§2a) does.
function taskResult(task: SimTask, withWatermark: boolean) {
  if (task.status !== 'succeed') return {};
  if (task.resultVideos !== null) return { videos: task.resultVideos };
  const video = {
    id: task.videoId,
    url: resultUrl(task, false),
    ...(withWatermark && task.watermark ? { watermark_url: resultUrl(task, true) } : {}),
    duration: task.durationSeconds.toFixed(1),
  };
  return { videos: [video] };
}

function finalUnits(task: SimTask) {
  const isFinal = task.status === 'succeed' || task.status === 'failed';
  return isFinal ? { final_unit_deduction: task.status === 'succeed' ? String(task.units) : '0' } : {};
}

/** `data` of the answer to a create. */
export function createdData(task: SimTask) {
  return {
    task_id: task.id,
    task_info: taskInfo(task),
    task_status: task.status,
    created_at: task.createdAt,
    updated_at: task.updatedAt,
  };
}

/** `data` of the answer to a query. */
export function queryData(task: SimTask) {
  return {
    task_id: task.id,
    task_status: task.status,
    task_status_msg: task.statusMessage,
    task_info: taskInfo(task),
    task_result: taskResult(task, true),
    watermark_info: { enabled: task.watermark },
    ...finalUnits(task),
    created_at: task.createdAt,
    updated_at: task.updatedAt,
  };
}

export function callbackBody(task: SimTask) {
  return {
    task_id: task.id,
    task_status: task.status,
    task_status_msg: task.statusMessage,
    created_at: task.createdAt,
    updated_at: task.updatedAt,
    ...finalUnits(task),
    task_info: taskInfo(task),
    task_result: taskResult(task, false),
  };
}
