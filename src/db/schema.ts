import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

// Every timestamp keeps milliseconds, the precision of a JS Date, so that a value read into
// JavaScript and written back (e.g. in a keyset cursor) compares equal to the stored one.

const timestamps = {
  createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
};

export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
  name: text('name').notNull(),
  monthlyVideoSecondsLimit: integer('monthly_video_seconds_limit'),
  maxConcurrentTasks: integer('max_concurrent_tasks'),
  /** Per-tenant overrides of the request and create rate limits; null means the configured default. */
  requestsPerSecond: integer('requests_per_second'),
  createsPerMinute: integer('creates_per_minute'),
  /** This tenant's share of the upstream account when tasks wait for a slot (fair dispatch). */
  weight: integer('weight').notNull().default(1),
  /**
   * No longer written or read (upstream_turns replaced it in migration 0012); kept one release so
   * that instances of the previous release keep working during a rolling deploy.
   */
  lastDispatchedAt: timestamp('last_dispatched_at', { withTimezone: true, precision: 3 }),
  ...timestamps,
});

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** SHA-256 of the key, hex. The key itself is shown once and never stored. */
    keyHash: text('key_hash').notNull(),
    /** The first characters of the key, so that people can tell their keys apart. */
    prefix: text('prefix').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, precision: 3 }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true, precision: 3 }),
  },
  (table) => [uniqueIndex('api_keys_key_hash_unique').on(table.keyHash), index('api_keys_tenant_id_idx').on(table.tenantId)],
);

/** Instance-wide values that must be the same on every gateway instance (e.g. a generated secret). */
export const settings = pgTable('settings', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
});

const TASK_STATUSES = ['PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TASK_PRIORITIES = ['HIGH', 'NORMAL', 'LOW'] as const;
export type TaskPriority = (typeof TASK_PRIORITIES)[number];

/** A result video as the task row keeps it; the archive fields are set once it is copied. */
export type StoredVideo = {
  id: string;
  upstreamUrl: string;
  durationSeconds: number | null;
  /** Set once the video is copied into our own store. */
  archive?: { key: string; sizeBytes: number; sha256: string } | null;
};

/** What the client asked for, normalised; an inline image is kept as its hash and size, never its bytes. */
export type StoredRequest = {
  referenceImages: {
    index: number;
    url: string | null;
    sha256: string | null;
    byteSize: number | null;
    type: 'FIRST_FRAME' | 'END_FRAME' | null;
  }[];
  elements: { index: number; elementId: string }[];
  referenceVideos: { index: number; url: string; referType: 'FEATURE' | 'BASE'; keepOriginalSound: boolean }[];
};

export const omniTasks = pgTable(
  'omni_tasks',
  {
    /** Our id; sent upstream as external_task_id, which Kling wants unique per account. */
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    status: text('status', { enum: TASK_STATUSES }).notNull(),
    statusMessage: text('status_message'),
    version: integer('version').notNull().default(1),
    prompt: text('prompt').notNull(),
    modelName: text('model_name').notNull(),
    mode: text('mode', { enum: ['STD', 'PRO'] }).notNull(),
    aspectRatio: text('aspect_ratio', { enum: ['RATIO_16_9', 'RATIO_9_16', 'RATIO_1_1'] }),
    durationSeconds: integer('duration_seconds'),
    hasVideoInput: boolean('has_video_input').notNull(),
    request: jsonb('request').$type<StoredRequest>().notNull(),
    /** SHA-256 of the normalised request: a reused idempotency key must come with the same request. */
    requestHash: text('request_hash').notNull(),
    upstreamTaskId: text('upstream_task_id'),
    externalTaskId: text('external_task_id'),
    idempotencyKey: text('idempotency_key'),
    videos: jsonb('videos').$type<StoredVideo[]>().notNull().default([]),
    ...timestamps,
    submittedAt: timestamp('submitted_at', { withTimezone: true, precision: 3 }),
    completedAt: timestamp('completed_at', { withTimezone: true, precision: 3 }),
    /** When the reconciler should next look at this task; null once it is final. */
    nextCheckAt: timestamp('next_check_at', { withTimezone: true, precision: 3 }),
    checkAttempts: integer('check_attempts').notNull().default(0),
    /** A task with no final state by then is failed by the reconciler. */
    deadlineAt: timestamp('deadline_at', { withTimezone: true, precision: 3 }).notNull(),
    /** The position in task_changes of the task's latest change (its transaction id, then its sequence). */
    changeTxid: bigint('change_txid', { mode: 'bigint' }).notNull().default(sql`0`),
    changeSeq: bigint('change_seq', { mode: 'bigint' }).notNull().default(sql`0`),
    /** Dispatch order within the tenant's queue: HIGH, NORMAL, LOW, then age. */
    priority: text('priority', { enum: TASK_PRIORITIES }).notNull().default('NORMAL'),
    /** Set while the task waits for an upstream slot (its place in the queue); null once dispatched or final. */
    queuedAt: timestamp('queued_at', { withTimezone: true, precision: 3 }),
    /** A task still waiting for a slot by then is cancelled (cancelAfterSeconds). */
    cancelAt: timestamp('cancel_at', { withTimezone: true, precision: 3 }),
    /** Units at our price table, once final (0 for a failed or cancelled task). */
    units: doublePrecision('units'),
    /** The upstream's `final_unit_deduction`, once final and reported. */
    upstreamUnits: text('upstream_units'),
  },
  (table) => [
    // Ascending: a backward scan serves the newest-first pages, a forward scan the `last` pages.
    index('omni_tasks_tenant_created_idx').on(table.tenantId, table.createdAt, table.id),
    // Quota checks count a tenant's in-flight tasks.
    index('omni_tasks_tenant_status_idx').on(table.tenantId, table.status),
    uniqueIndex('omni_tasks_upstream_task_id_unique').on(table.upstreamTaskId),
    uniqueIndex('omni_tasks_tenant_external_task_id_unique').on(table.tenantId, table.externalTaskId),
    uniqueIndex('omni_tasks_tenant_idempotency_key_unique').on(table.tenantId, table.idempotencyKey),
    index('omni_tasks_next_check_idx').on(table.nextCheckAt).where(sql`${table.nextCheckAt} is not null`),
    // The reconciler also leases unfinished tasks past their deadline, whatever their backoff.
    index('omni_tasks_deadline_idx').on(table.deadlineAt).where(sql`${table.nextCheckAt} is not null`),
    check('omni_tasks_status_check', sql`${table.status} in ('PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED')`),
    check('omni_tasks_priority_check', sql`${table.priority} in ('HIGH', 'NORMAL', 'LOW')`),
    // The queue: each tenant's waiting tasks in dispatch order.
    index('omni_tasks_queue_idx')
      .on(table.tenantId, sql`(case ${table.priority} when 'HIGH' then 0 when 'NORMAL' then 1 else 2 end)`, table.queuedAt, table.id)
      .where(sql`${table.queuedAt} is not null`),
    // The upstream budget counts the tasks that hold a slot: sent (or being sent) and not final.
    index('omni_tasks_upstream_slots_idx')
      .on(table.tenantId)
      .where(sql`${table.status} in ('PENDING', 'SUBMITTED', 'PROCESSING') and ${table.queuedAt} is null`),
  ],
);

/**
 * The change log: one row per change of a task's status or version, appended in the changing
 * transaction. Its order is (txid, seq): the writing transaction's id, then a global sequence.
 * Readers take only rows whose transaction is older than every transaction still running
 * (txid < the snapshot's xmin): no row can appear later before such a position, so a reader that
 * moves forward through that order never skips a change, whatever order transactions commit in.
 */
export const taskChanges = pgTable(
  'task_changes',
  {
    txid: bigint('txid', { mode: 'bigint' }).notNull().default(sql`(pg_current_xact_id()::text::bigint)`),
    seq: bigint('seq', { mode: 'bigint' }).generatedAlwaysAsIdentity(),
    tenantId: uuid('tenant_id').notNull(),
    taskId: uuid('task_id').notNull(),
    version: integer('version').notNull(),
    /** The task row as this change left it (to_jsonb): subscribers and webhooks get each version as it was. */
    task: jsonb('task').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (table) => [
    primaryKey({ columns: [table.txid, table.seq] }),
    // Replay of one tenant's changes after a cursor.
    index('task_changes_tenant_position_idx').on(table.tenantId, table.txid, table.seq),
    // Pruning by age.
    index('task_changes_created_idx').on(table.createdAt),
  ],
);

/**
 * Tasks by status, maintained by a trigger on omni_tasks (migration 0006) so that /metrics costs
 * the same at any table size. Each change adds to one of a few shards, picked at random, so that
 * concurrent changes rarely wait on the same row; a count is the sum over its shards.
 */
export const taskStatusCounts = pgTable(
  'task_status_counts',
  {
    status: text('status', { enum: TASK_STATUSES }).notNull(),
    shard: integer('shard').notNull(),
    count: bigint('count', { mode: 'number' }).notNull().default(0),
  },
  (table) => [primaryKey({ columns: [table.status, table.shard] })],
);

/**
 * The upstream body of a task not yet accepted upstream, kept only so that the create can be
 * retried (it may carry inline images); deleted in the transaction that records the acceptance.
 */
export const taskSubmissions = pgTable('task_submissions', {
  taskId: uuid('task_id')
    .primaryKey()
    .references(() => omniTasks.id, { onDelete: 'cascade' }),
  body: jsonb('body').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
});

/**
 * The upstream budget shared by every instance (one row): its lock orders dispatch passes, and
 * it keeps the adaptive limit (AIMD on the upstream's 1303/429) and the pause after a refusal.
 */
export const upstreamBudget = pgTable('upstream_budget', {
  id: integer('id').primaryKey(),
  /** The adaptive limit; null means UPSTREAM_MAX_IN_FLIGHT (no refusal seen since it last grew back). */
  limit: doublePrecision('limit'),
  /** No task is dispatched before this, after the upstream refused one for load. */
  pausedUntil: timestamp('paused_until', { withTimezone: true, precision: 3 }),
  /** When the limit last shrank: one overload is one signal, however many refusals it brings. */
  decreasedAt: timestamp('decreased_at', { withTimezone: true, precision: 3 }),
  throttles: bigint('throttles', { mode: 'number' }).notNull().default(0),
});

/**
 * Upstream slots held and tasks waiting, per tenant, maintained by a trigger on omni_tasks
 * (migration 0012) so that a dispatch pass, a create and a /metrics scrape read a few rows however
 * many tasks hold slots or wait. A tenant's figure is the sum over its shards. Claims and requeues
 * (which run under the budget row's lock, one at a time) write shard 0; every other change writes
 * one of the shards 1-15 picked by its transaction id, so that no transaction holding the budget
 * lock ever waits on a count row locked by one that may be waiting for the budget lock.
 */
export const upstreamSlotCounts = pgTable(
  'upstream_slot_counts',
  {
    tenantId: uuid('tenant_id').notNull(),
    shard: integer('shard').notNull(),
    /** Tasks holding a slot: claimed (queued_at null) and not final. */
    held: bigint('held', { mode: 'number' }).notNull().default(0),
    /** Tasks waiting for a slot (queued_at set). */
    queued: bigint('queued', { mode: 'number' }).notNull().default(0),
  },
  (table) => [primaryKey({ columns: [table.tenantId, table.shard] })],
);

/**
 * When a waiting task of each tenant was last claimed for dispatch: among tenants holding equally
 * few slots, the least recently served goes first. Written only under the budget row's lock (so
 * not on the tenant row, which a create locks before it asks for the budget).
 */
export const upstreamTurns = pgTable('upstream_turns', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  lastServedAt: timestamp('last_served_at', { withTimezone: true, precision: 3 }).notNull(),
});

/** Audit trail: every status change and every raw upstream payload received. */
export const taskEvents = pgTable(
  'task_events',
  {
    id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
    taskId: uuid('task_id')
      .notNull()
      .references(() => omniTasks.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['status', 'upstream', 'archive'] }).notNull(),
    /** Where the news came from: create, webhook, poll, refresh, reconciler. */
    source: text('source').notNull(),
    fromStatus: text('from_status', { enum: TASK_STATUSES }),
    toStatus: text('to_status', { enum: TASK_STATUSES }),
    version: integer('version'),
    payload: jsonb('payload'),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (table) => [index('task_events_task_id_created_idx').on(table.taskId, table.createdAt)],
);

const USAGE_KINDS = ['video', 'failure'] as const;

/**
 * The usage ledger: append-only, one row per billable event, unique per (task, kind), so that a
 * repeated callback, a poll and a webhook for the same task can never count twice. `id` is the
 * stable event id that billing systems de-duplicate on.
 */
export const usageEvents = pgTable(
  'usage_events',
  {
    id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    taskId: uuid('task_id')
      .notNull()
      .references(() => omniTasks.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: USAGE_KINDS }).notNull(),
    mode: text('mode', { enum: ['STD', 'PRO'] }).notNull(),
    hasVideoInput: boolean('has_video_input').notNull(),
    /** Output seconds: 0 for a failure. */
    videoSeconds: doublePrecision('video_seconds').notNull(),
    /** Where the seconds came from: the result's duration, the requested duration, or the 10 s cap of an edit. */
    secondsSource: text('seconds_source', { enum: ['result', 'requested', 'assumed_max', 'none'] }).notNull(),
    /** Units per second of the price table at the time of the event. */
    rate: doublePrecision('rate').notNull(),
    units: doublePrecision('units').notNull(),
    /** The upstream's own `final_unit_deduction`, when it reported one. */
    upstreamUnits: text('upstream_units'),
    occurredAt: timestamp('occurred_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (table) => [
    uniqueIndex('usage_events_task_kind_unique').on(table.taskId, table.kind),
    index('usage_events_tenant_occurred_idx').on(table.tenantId, table.occurredAt, table.id),
    // The admin's export of every tenant's events.
    index('usage_events_occurred_idx').on(table.occurredAt, table.id),
  ],
);

/**
 * The usage ledger summed per tenant, UTC day, kind and mode, kept by triggers on usage_events in
 * the writing transaction (migration 0008): usage reports and quota checks read these few rows
 * instead of the ledger, which stays the source of truth. Sharded like task_status_counts, so that
 * a tenant's tasks finishing together rarely wait on one row; a sum is over the shards.
 */
export const usageRollups = pgTable(
  'usage_rollups',
  {
    tenantId: uuid('tenant_id').notNull(),
    day: date('day', { mode: 'string' }).notNull(),
    kind: text('kind', { enum: USAGE_KINDS }).notNull(),
    mode: text('mode', { enum: ['STD', 'PRO'] }).notNull(),
    shard: integer('shard').notNull(),
    events: bigint('events', { mode: 'number' }).notNull().default(0),
    videoSeconds: doublePrecision('video_seconds').notNull().default(0),
    units: doublePrecision('units').notNull().default(0),
  },
  (table) => [primaryKey({ columns: [table.tenantId, table.day, table.kind, table.mode, table.shard] })],
);

/**
 * One job per result video to copy into our own store. Leased like the reconciler's tasks
 * (FOR UPDATE SKIP LOCKED on next_attempt_at); the stored key is deterministic, so a job re-run
 * after a crash overwrites the same object instead of making a second one.
 */
export const videoArchives = pgTable(
  'video_archives',
  {
    taskId: uuid('task_id')
      .notNull()
      .references(() => omniTasks.id, { onDelete: 'cascade' }),
    /** 1-based, as OmniVideo appears in the task's videos. */
    videoIndex: integer('video_index').notNull(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    sourceUrl: text('source_url').notNull(),
    status: text('status', { enum: ['pending', 'done', 'failed'] })
      .notNull()
      .default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, precision: 3 }),
    lastError: text('last_error'),
    storedKey: text('stored_key'),
    sizeBytes: bigint('size_bytes', { mode: 'number' }),
    sha256: text('sha256'),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    archivedAt: timestamp('archived_at', { withTimezone: true, precision: 3 }),
  },
  (table) => [
    primaryKey({ name: 'video_archives_pkey', columns: [table.taskId, table.videoIndex] }),
    index('video_archives_tenant_id_idx').on(table.tenantId),
    index('video_archives_next_attempt_idx').on(table.nextAttemptAt).where(sql`${table.status} = 'pending'`),
  ],
);

/**
 * A tenant's outbound webhook endpoint (Standard Webhooks). `secret` signs every delivery; after
 * a rotation `previousSecret` signs beside it until `previousSecretExpiresAt`. Secrets are needed
 * in the clear to sign, so they are stored as they are, and never logged nor returned after
 * creation or rotation.
 */
export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    /** WebhookEventType names this endpoint receives. */
    events: text('events').array().notNull(),
    description: text('description'),
    enabled: boolean('enabled').notNull().default(true),
    disabledReason: text('disabled_reason'),
    secret: text('secret').notNull(),
    previousSecret: text('previous_secret'),
    previousSecretExpiresAt: timestamp('previous_secret_expires_at', { withTimezone: true, precision: 3 }),
    /** The first failed attempt since the last success; null while deliveries succeed. */
    failingSince: timestamp('failing_since', { withTimezone: true, precision: 3 }),
    ...timestamps,
  },
  (table) => [index('webhook_endpoints_tenant_created_idx').on(table.tenantId, table.createdAt, table.id)],
);

export type WebhookAttemptRecord = { at: string; httpStatus: number | null; durationMs: number | null; error: string | null };

/**
 * One event for one endpoint: the exact body signed and sent, and every attempt. Unique per
 * (endpoint, event id), so the change log turned into deliveries twice still makes one each.
 * Leased like the archive jobs: a pending delivery whose `next_attempt_at` is due is taken with
 * FOR UPDATE SKIP LOCKED and pushed forward by the lease, so one instance makes each attempt.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: uuid('id').primaryKey().default(sql`gen_random_uuid()`),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    /** The `webhook-id` header: the same for every attempt and redelivery of this event. */
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    /** The JSON body, byte for byte as signed. */
    body: text('body').notNull(),
    status: text('status', { enum: ['pending', 'succeeded', 'failed'] })
      .notNull()
      .default('pending'),
    /** Attempts made in the current run of the schedule (a redelivery starts a new run). */
    scheduleAttempts: integer('schedule_attempts').notNull().default(0),
    attempts: jsonb('attempts').$type<WebhookAttemptRecord[]>().notNull().default([]),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true, precision: 3 }),
    ...timestamps,
  },
  (table) => [
    uniqueIndex('webhook_deliveries_endpoint_event_unique').on(table.endpointId, table.eventId),
    index('webhook_deliveries_endpoint_created_idx').on(table.endpointId, table.createdAt, table.id),
    index('webhook_deliveries_tenant_id_idx').on(table.tenantId),
    index('webhook_deliveries_next_attempt_idx').on(table.nextAttemptAt).where(sql`${table.status} = 'pending'`),
    index('webhook_deliveries_created_idx').on(table.createdAt),
  ],
);
