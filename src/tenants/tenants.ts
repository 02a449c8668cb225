import { and, eq, isNull, lt, or, sql } from 'drizzle-orm';
import { generateApiKey, hashApiKey, secretsEqual } from '../auth/api-keys.ts';
import type { Db } from '../db/database.ts';
import { keysetPast } from '../db/keyset.ts';
import { apiKeys, tenants } from '../db/schema.ts';

export type Tenant = typeof tenants.$inferSelect;

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
};

// Writing last_used_at on every request would turn every read into a write; a minute is precise enough.
const LAST_USED_RESOLUTION_MS = 60_000;

const MAX_CACHED_KEYS = 10_000;

/** The tenant of a live key, by the key's hash; null when the key is unknown or revoked. */
async function liveKeyViewer(db: Db, hash: string): Promise<TenantViewer | null> {
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
  if (key.lastUsedAt === null || Date.now() - key.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
    await db
      .update(apiKeys)
      .set({ lastUsedAt: sql`now()` })
      .where(
        and(
          eq(apiKeys.id, key.id),
          or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - interval '1 minute'`)),
        ),
      );
  }
  return {
    kind: 'tenant',
    tenantId: key.tenantId,
    apiKeyId: key.id,
    rates: { requestsPerSecond: key.requestsPerSecond, createsPerMinute: key.createsPerMinute },
  };
}

async function createTenant(db: Db, input: { name: string } & TenantLimits): Promise<{ tenant: Tenant; apiKey: string }> {
  return db.transaction(async (tx) => {
    const [tenant] = await tx
      .insert(tenants)
      .values({
        name: input.name,
        monthlyVideoSecondsLimit: input.monthlyVideoSecondsLimit ?? null,
        maxConcurrentTasks: input.maxConcurrentTasks ?? null,
        requestsPerSecond: input.requestsPerSecond ?? null,
        createsPerMinute: input.createsPerMinute ?? null,
      })
      .returning();
    if (tenant === undefined) throw new Error('insert into tenants returned no row');
    const key = generateApiKey();
    await tx.insert(apiKeys).values({ tenantId: tenant.id, keyHash: key.hash, prefix: key.prefix });
    return { tenant, apiKey: key.key };
  });
}

/** A new key for an existing tenant; null when the tenant does not exist (tenants are never deleted). */
async function createApiKey(db: Db, tenantId: string): Promise<{ id: string; apiKey: string } | null> {
  const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
  if (tenant === undefined) return null;
  const key = generateApiKey();
  const [row] = await db
    .insert(apiKeys)
    .values({ tenantId, keyHash: key.hash, prefix: key.prefix })
    .returning({ id: apiKeys.id });
  if (row === undefined) throw new Error('insert into api_keys returned no row');
  return { id: row.id, apiKey: key.key };
}

/**
 * `authCacheSeconds`: how long a resolved key is trusted without asking the database again. A
 * revoked key (or a changed limit) takes effect at once on the instance that made the change and
 * within that many seconds on the others; 0 asks the database on every request.
 */
export function createTenantService(db: Db, options: { adminApiKey: string | null; authCacheSeconds: number }) {
  const cache = new Map<string, { viewer: TenantViewer; until: number }>();
  const forget = (match: (viewer: TenantViewer) => boolean) => {
    for (const [hash, entry] of cache) if (match(entry.viewer)) cache.delete(hash);
  };

  return {
    /** Resolves a bearer token to the admin scope or a tenant; null when the key is unknown or revoked. */
    async authenticate(token: string): Promise<Viewer | null> {
      if (options.adminApiKey !== null && secretsEqual(token, options.adminApiKey)) return { kind: 'admin' };
      const hash = hashApiKey(token);
      const cached = cache.get(hash);
      if (cached !== undefined && cached.until > Date.now()) return cached.viewer;
      const viewer = await liveKeyViewer(db, hash);
      if (viewer === null) {
        cache.delete(hash);
        return null;
      }
      if (options.authCacheSeconds > 0) {
        if (cache.size >= MAX_CACHED_KEYS) cache.delete(cache.keys().next().value as string);
        cache.set(hash, { viewer, until: Date.now() + options.authCacheSeconds * 1000 });
      }
      return viewer;
    },

    createTenant: (input: { name: string } & TenantLimits) => createTenant(db, input),

    createApiKey: (tenantId: string) => createApiKey(db, tenantId),

    /** True when the key existed and was live; revoking twice is harmless and answers false. */
    async revokeApiKey(id: string): Promise<boolean> {
      const revoked = await db
        .update(apiKeys)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id });
      forget((viewer) => viewer.apiKeyId === id);
      return revoked.length > 0;
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
      const changes: Partial<typeof tenants.$inferInsert> = {};
      if (limits.monthlyVideoSecondsLimit !== undefined) changes.monthlyVideoSecondsLimit = limits.monthlyVideoSecondsLimit;
      if (limits.maxConcurrentTasks !== undefined) changes.maxConcurrentTasks = limits.maxConcurrentTasks;
      if (limits.requestsPerSecond !== undefined) changes.requestsPerSecond = limits.requestsPerSecond;
      if (limits.createsPerMinute !== undefined) changes.createsPerMinute = limits.createsPerMinute;
      const [tenant] = await db
        .update(tenants)
        .set({ ...changes, updatedAt: sql`now()` })
        .where(eq(tenants.id, tenantId))
        .returning();
      forget((viewer) => viewer.tenantId === tenantId);
      return tenant ?? null;
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
