import { decodeGlobalID } from '@pothos/plugin-relay';
import { expectData } from './gateway.ts';
import type { TestGateway } from './gateway.ts';

export type TestTenant = { id: string; apiKey: string };

/** A tenant and its first API key, created through the admin mutation. */
export async function createTenant(
  gateway: TestGateway,
  name: string,
  limits: { monthlyVideoSecondsLimit?: number; maxConcurrentTasks?: number; weight?: number; requestsPerSecond?: number } = {},
): Promise<TestTenant> {
  const query = 'mutation ($input: CreateTenantInput!) { createTenant(input: $input) { apiKey tenant { id } } }';
  const data = expectData(
    await gateway.graphql<{ createTenant: { apiKey: string; tenant: { id: string } } }>(query, {
      input: { name, ...limits },
    }),
    query,
  );
  return { id: data.createTenant.tenant.id, apiKey: data.createTenant.apiKey };
}

export const TASK_FIELDS = `id status statusMessage version prompt modelName mode aspectRatio durationSeconds
  externalTaskId upstreamTaskId createdAt updatedAt completedAt
  referenceImages { index url type sha256 byteSize }
  elements { index elementId }
  referenceVideos { index url referType keepOriginalSound }
  videos { id url durationSeconds upstreamUrl archived }`;

export const CREATE_OMNI_VIDEO = `mutation ($input: CreateOmniVideoInput!) {
  createOmniVideo(input: $input) {
    __typename
    ... on CreateOmniVideoSuccess { task { ${TASK_FIELDS} } }
    ... on InvalidInputError { message issues { path message } }
    ... on UpstreamError { message code retryable }
    ... on QuotaExceededError { message }
    ... on RateLimitedError { message retryAfterSeconds }
  }
}`;

export type TaskView = {
  id: string;
  status: string;
  statusMessage: string | null;
  version: number;
  prompt: string;
  mode: string;
  aspectRatio: string | null;
  durationSeconds: number | null;
  externalTaskId: string | null;
  upstreamTaskId: string | null;
  createdAt: string;
  completedAt: string | null;
  referenceImages: { index: number; url: string | null; type: string | null; sha256: string | null; byteSize: number | null }[];
  elements: { index: number; elementId: string }[];
  referenceVideos: { index: number; url: string; referType: string; keepOriginalSound: boolean }[];
  videos: { id: string; url: string; durationSeconds: number | null; upstreamUrl: string; archived: boolean }[];
};

export type CreateResult =
  | { __typename: 'CreateOmniVideoSuccess'; task: TaskView }
  | { __typename: 'InvalidInputError'; message: string; issues: { path: string[]; message: string }[] }
  | { __typename: 'UpstreamError'; message: string; code: string | null; retryable: boolean }
  | { __typename: 'QuotaExceededError'; message: string }
  | { __typename: 'RateLimitedError'; message: string; retryAfterSeconds: number };

export async function createVideo(gateway: TestGateway, tenant: TestTenant, input: Record<string, unknown>): Promise<CreateResult> {
  const response = await gateway.graphql<{ createOmniVideo: CreateResult }>(CREATE_OMNI_VIDEO, { input }, tenant.apiKey);
  return expectData(response, `${CREATE_OMNI_VIDEO}\nvariables: ${JSON.stringify(input).slice(0, 500)}`).createOmniVideo;
}

/** Creates a task and fails with the whole answer unless it succeeded. */
export async function createTask(gateway: TestGateway, tenant: TestTenant, input: Record<string, unknown>): Promise<TaskView> {
  const result = await createVideo(gateway, tenant, input);
  if (result.__typename !== 'CreateOmniVideoSuccess') {
    throw new Error(`expected CreateOmniVideoSuccess, got ${JSON.stringify(result, null, 2)}`);
  }
  return result.task;
}

/** Our database id (= the external_task_id sent upstream) inside a task's global id. */
export function taskUuid(globalId: string): string {
  return decodeGlobalID(globalId).id;
}

export const TEXT_TO_VIDEO = { prompt: 'A fox runs through snow', mode: 'STD', aspectRatio: 'RATIO_16_9', durationSeconds: 5 };

/** The callback URL the gateway gave the upstream for a task (taken from the recorded create). */
export function callbackUrlOf(gateway: TestGateway, taskGlobalId: string): string {
  const id = taskUuid(taskGlobalId);
  const create = gateway.upstreamRequests.find((request) => request.body?.external_task_id === id);
  const url = create?.body?.callback_url;
  if (typeof url !== 'string') throw new Error(`no recorded create for task ${id}`);
  return url;
}

/** A callback body as reference §3 shows it. */
export function callbackBody(
  task: { upstreamTaskId: string | null; id: string },
  status: 'submitted' | 'processing' | 'succeed' | 'failed',
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const now = Date.now();
  return {
    task_id: task.upstreamTaskId,
    task_status: status,
    task_status_msg: status === 'failed' ? 'Image pixel is invalid' : '',
    created_at: now - 1000,
    updated_at: now,
    task_info: { external_task_id: taskUuid(task.id) },
    task_result: status === 'succeed' ? { videos: [{ id: 'vid-1', url: 'https://cdn.example/v.mp4', duration: '5' }] } : {},
    ...(status === 'succeed' || status === 'failed' ? { final_unit_deduction: '4' } : {}),
    ...extra,
  };
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
