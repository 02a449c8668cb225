import { and, asc, eq, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import { timingSafeEqual } from 'node:crypto';
import { generateApiKey, keyDigest } from '../auth/api-keys.ts';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { keysetPast } from '../db/keyset.ts';
import { apiKeys, tenants } from '../db/schema.ts';

export type Tenant = typeof tenants.$inferSelect;
export type ApiKey = Omit<typeof apiKeys.$inferSelect, 'keyHash'>;

export type Viewer =
  | { kind: 'admin' }
  | {
      kind: 'tenant';
      tenantId: string;
      apiKeyId: string;
      /** The tenant's own rate limits; null means the configured default. */
      rates: { requestsPerSecond: number | null; createsPerMinute: number | null };
    };

type TenantViewer = Extract<Viewer, { kind: 'tenant' }>;

export type TenantLimits = {
  monthlyVideoSecondsLimit?: number | null;
  maxConcurrentTasks?: number | null;
  requestsPerSecond?: number | null;
  createsPerMinute?: number | null;
  /** Share of the upstream account (fair dispatch); default 1. */
  weight?: number | null;
};

// Writing last_used_at on every request would turn every read into a write; a minute is precise enough.
const LAST_USED_RESOLUTION_MS = 60_000;

const MAX_CACHED_KEYS = 10_000;

/** The tenant of a live key, by the key's hash; null when the key is unknown or revoked. */
async function liveKeyViewer(db: Db, hash: string, clock: Clock): Promise<TenantViewer | null> {
  const [key] = await db
    .select({
      id: apiKeys.id,
      tenantId: apiKeys.tenantId,
      lastUsedAt: apiKeys.lastUsedAt,
      requestsPerSecond: tenants.requestsPerSecond,
      createsPerMinute: tenants.createsPerMinute,
    })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .where(and(eq(apiKeys.keyHash, hash), isNull(apiKeys.revokedAt)))
    .limit(1);
  if (key === undefined) return null;
  if (key.lastUsedAt === null || clock.now() - key.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
    await db
      .update(apiKeys)
      .set({ lastUsedAt: sql`now()` })
      .where(and(eq(apiKeys.id, key.id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - interval '1 minute'`))));
  }
  return {
    kind: 'tenant',
    tenantId: key.tenantId,
    apiKeyId: key.id,
    rates: { requestsPerSecond: key.requestsPerSecond, createsPerMinute: key.createsPerMinute },
  };
}

/** A new tenant with its first key: the key is shown once, here, with its id (to revoke it later). */
async function createTenant(db: Db, input: { name: string } & TenantLimits): Promise<{ tenant: Tenant; apiKey: string; apiKeyId: string }> {
  return db.transaction(async (tx) => {
    const [tenant] = await tx
      .insert(tenants)
      .values({
        name: input.name,
        monthlyVideoSecondsLimit: input.monthlyVideoSecondsLimit ?? null,
        maxConcurrentTasks: input.maxConcurrentTasks ?? null,
        requestsPerSecond: input.requestsPerSecond ?? null,
        createsPerMinute: input.createsPerMinute ?? null,
        weight: input.weight ?? 1,
      })
      .returning();
    if (tenant === undefined) throw new Error('insert into tenants returned no row');
    const key = generateApiKey();
    const [row] = await tx
      .insert(apiKeys)
      .values({ tenantId: tenant.id, keyHash: key.hash, prefix: key.prefix })
      .returning({ id: apiKeys.id });
    if (row === undefined) throw new Error('insert into api_keys returned no row');
    return { tenant, apiKey: key.key, apiKeyId: row.id };
  });
}

/** A new key for an existing tenant; null when the tenant does not exist. */
async function createApiKey(db: Db, tenantId: string): Promise<{ id: string; apiKey: string } | null> {
  const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  if (tenant === undefined) return null;
  const key = generateApiKey();
  const [row] = await db.insert(apiKeys).values({ tenantId, keyHash: key.hash, prefix: key.prefix }).returning({ id: apiKeys.id });
  if (row === undefined) throw new Error('insert into api_keys returned no row');
  return { id: row.id, apiKey: key.key };
}

/** What is shown of a key: never its hash. */
const KEY_COLUMNS = {
  id: apiKeys.id,
  tenantId: apiKeys.tenantId,
  prefix: apiKeys.prefix,
  createdAt: apiKeys.createdAt,
  revokedAt: apiKeys.revokedAt,
  lastUsedAt: apiKeys.lastUsedAt,
};

/** A tenant's keys, oldest first; null when the tenant does not exist. */
async function listApiKeys(db: Db, tenantId: string): Promise<ApiKey[] | null> {
  const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  if (tenant === undefined) return null;
  return db.select(KEY_COLUMNS).from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
}

async function getApiKey(db: Db, id: string): Promise<ApiKey | null> {
  const [key] = await db.select(KEY_COLUMNS).from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
  return key ?? null;
}

async function updateLimits(db: Db, tenantId: string, limits: TenantLimits): Promise<Tenant | null> {
  const changes: Partial<typeof tenants.$inferInsert> = {};
  if (limits.monthlyVideoSecondsLimit !== undefined) changes.monthlyVideoSecondsLimit = limits.monthlyVideoSecondsLimit;
  if (limits.maxConcurrentTasks !== undefined) changes.maxConcurrentTasks = limits.maxConcurrentTasks;
  if (limits.requestsPerSecond !== undefined) changes.requestsPerSecond = limits.requestsPerSecond;
  if (limits.createsPerMinute !== undefined) changes.createsPerMinute = limits.createsPerMinute;
  if (limits.weight !== undefined && limits.weight !== null) changes.weight = limits.weight;
  const [tenant] = await db
    .update(tenants)
    .set({ ...changes, updatedAt: sql`now()` })
    .where(eq(tenants.id, tenantId))
    .returning();
  return tenant ?? null;
}

/**
 * Bearer keys to viewers, with a short cache. `authCacheSeconds`: how long a resolved key is
 * trusted without asking the database again; a revoked key (or a changed limit) takes effect at
 * once on this instance and within that many seconds on the others; 0 asks every time. Keys found
 * unknown are remembered as long (a key is random: one unknown now cannot exist later), so
 * guessing costs no database read per try.
 */
function createKeyCache(db: Db, options: { adminApiKey: string | null; authCacheSeconds: number; clock: Clock }) {
  const { clock } = options;
  const known = new Map<string, { viewer: TenantViewer; until: number }>();
  const unknown = new Map<string, number>();
  // Bumped by every revocation and limit change: a lookup that started before one does not cache
  // its answer, which may predate the change.
  let epoch = 0;
  const adminDigest = options.adminApiKey === null ? null : keyDigest(options.adminApiKey);
  const remember = <T>(map: Map<string, T>, hash: string, value: T) => {
    if (options.authCacheSeconds <= 0) return;
    if (map.size >= MAX_CACHED_KEYS) map.delete(map.keys().next().value as string);
    map.set(hash, value);
  };
  return {
    /**
     * The admin scope or a tenant; null when the key is unknown or revoked. `beforeLookup` runs
     * when the answer is not cached, before the database is asked, and may throw to refuse.
     */
    async authenticate(token: string, beforeLookup?: () => void): Promise<Viewer | null> {
      // One hash per request: the admin check compares it with the admin key's, in constant time.
      const digest = keyDigest(token);
      if (adminDigest !== null && timingSafeEqual(digest, adminDigest)) return { kind: 'admin' };
      const hash = digest.toString('hex');
      const now = clock.now();
      const cached = known.get(hash);
      if (cached !== undefined && cached.until > now) return cached.viewer;
      if ((unknown.get(hash) ?? 0) > now) return null;
      beforeLookup?.();
      const started = epoch;
      const viewer = await liveKeyViewer(db, hash, clock);
      const until = clock.now() + options.authCacheSeconds * 1000;
      if (viewer === null) {
        known.delete(hash);
        remember(unknown, hash, until);
      } else if (epoch === started) {
        unknown.delete(hash);
        remember(known, hash, { viewer, until });
      }
      return viewer;
    },
    forget(match: (viewer: TenantViewer) => boolean): void {
      epoch += 1;
      for (const [hash, entry] of known) if (match(entry.viewer)) known.delete(hash);
    },
  };
}

export function createTenantService(
  db: Db,
  options: {
    adminApiKey: string | null;
    authCacheSeconds: number;
    clock?: Clock;
    /** Told when a key is revoked on this instance, to end its connections at once. */
    onKeyRevoked?: (apiKeyId: string) => void;
  },
) {
  const keys = createKeyCache(db, { ...options, clock: options.clock ?? systemClock });
  return {
    authenticate: keys.authenticate,
    createTenant: (input: { name: string } & TenantLimits) => createTenant(db, input),
    createApiKey: (tenantId: string) => createApiKey(db, tenantId),
    listApiKeys: (tenantId: string) => listApiKeys(db, tenantId),
    getApiKey: (id: string) => getApiKey(db, id),

    /** True when the key existed and was live; revoking twice is harmless and answers false. */
    async revokeApiKey(id: string): Promise<boolean> {
      const revoked = await db
        .update(apiKeys)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id });
      keys.forget((viewer) => viewer.apiKeyId === id);
      options.onKeyRevoked?.(id);
      return revoked.length > 0;
    },

    /** Which of these key ids are live (exist and are not revoked). */
    async liveKeys(ids: string[]): Promise<Set<string>> {
      if (ids.length === 0) return new Set();
      const rows = await db
        .select({ id: apiKeys.id })
        .from(apiKeys)
        .where(and(inArray(apiKeys.id, ids), isNull(apiKeys.revokedAt)));
      return new Set(rows.map((row) => row.id));
    },

    async getTenant(id: string): Promise<Tenant | null> {
      const [tenant] = await db.select().from(tenants).where(eq(tenants.id, id)).limit(1);
      return tenant ?? null;
    },

    /** Tenants oldest first, keyset-paged by (created_at, id). */
    async listTenants(page: { limit: number; after: { createdAt: Date; id: string } | null }): Promise<Tenant[]> {
      const after = page.after;
      return db
        .select()
        .from(tenants)
        .where(after === null ? undefined : keysetPast([tenants.createdAt, tenants.id], [after.createdAt, after.id], 'asc'))
        .orderBy(tenants.createdAt, tenants.id)
        .limit(page.limit);
    },

    async updateLimits(tenantId: string, limits: TenantLimits): Promise<Tenant | null> {
      const tenant = await updateLimits(db, tenantId, limits);
      keys.forget((viewer) => viewer.tenantId === tenantId);
      return tenant;
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
