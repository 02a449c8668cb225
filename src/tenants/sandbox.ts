import { eq } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { settings } from '../db/schema.ts';
import { createTenantService } from './tenants.ts';

/** The settings row that says the sandbox was made; its value is the tenant's id. */
const SANDBOX_SETTING = 'sandbox_tenant';

const SANDBOX_TENANT_NAME = 'Sandbox';

/**
 * Creates the sandbox tenant, with its first API key, unless one was ever made on this database.
 * The settings row that remembers it is claimed in the same transaction that creates the tenant:
 * of two starts at once, one claims it and the other waits on the row's key, then finds it taken;
 * a start that fails midway leaves neither. Null when the sandbox already existed.
 */
export async function createSandboxTenantOnce(db: Db): Promise<{ tenantId: string; apiKey: string } | null> {
  return db.transaction(async (tx) => {
    const claimed = await tx
      .insert(settings)
      .values({ key: SANDBOX_SETTING, value: '' })
      .onConflictDoNothing({ target: settings.key })
      .returning({ key: settings.key });
    if (claimed.length === 0) return null;
    // The tenant service on this transaction: its own transaction becomes a savepoint inside it.
    const tenants = createTenantService(tx, { adminApiKey: null, authCacheSeconds: 0 });
    const { tenant, apiKey } = await tenants.createTenant({ name: SANDBOX_TENANT_NAME });
    await tx.update(settings).set({ value: tenant.id }).where(eq(settings.key, SANDBOX_SETTING));
    return { tenantId: tenant.id, apiKey };
  });
}

/** What the first start prints: the key, shown this once, and where to use it. */
export function sandboxBanner(apiKey: string, graphiqlUrl: string): string {
  return [
    '',
    `Sandbox tenant "${SANDBOX_TENANT_NAME}" created. Its API key, shown this once (only its hash is kept):`,
    '',
    `    ${apiKey}`,
    '',
    `GraphiQL: ${graphiqlUrl}`,
    `  put it in the Headers tab: {"Authorization": "Bearer ${apiKey}"}`,
    '',
  ].join('\n');
}
