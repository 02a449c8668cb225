CREATE TABLE "upstream_slot_counts" (
	"tenant_id" uuid NOT NULL,
	"shard" integer NOT NULL,
	"held" bigint DEFAULT 0 NOT NULL,
	"queued" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "upstream_slot_counts_tenant_id_shard_pk" PRIMARY KEY("tenant_id","shard")
);
--> statement-breakpoint
CREATE TABLE "upstream_turns" (
	"tenant_id" uuid PRIMARY KEY NOT NULL,
	"last_served_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "upstream_turns" ADD CONSTRAINT "upstream_turns_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- tenants.last_dispatched_at is copied, no longer used, and left in place for one release: instances
-- of the previous release still read and write it while a rolling deploy replaces them.
INSERT INTO "upstream_turns" ("tenant_id", "last_served_at")
	SELECT "id", "last_dispatched_at" FROM "tenants" WHERE "last_dispatched_at" IS NOT NULL;
--> statement-breakpoint
-- Keeps upstream_slot_counts in step with omni_tasks inside the writing transaction. A task holds a
-- slot when it is PENDING, SUBMITTED or PROCESSING with queued_at null; it waits when queued_at is
-- set. A claim (waiting -> holding) or a requeue (holding -> waiting), the only changes of
-- queued_at that keep the status, run under the budget row's lock and write shard 0; any other
-- change writes shard 1 + txid % 15. Transactions holding the budget lock thus lock only shard-0 rows, which nobody else locks, and can never wait on a
-- transaction (a create) that holds a count row while it waits for the budget lock.
CREATE FUNCTION "omni_tasks_slots_inserted"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO upstream_slot_counts AS c (tenant_id, shard, held, queued)
		SELECT tenant_id, 1 + (txid_current() % 15)::integer,
			count(*) FILTER (WHERE status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND queued_at IS NULL),
			count(*) FILTER (WHERE queued_at IS NOT NULL)
		FROM new_rows
		WHERE (status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND queued_at IS NULL) OR queued_at IS NOT NULL
		GROUP BY tenant_id ORDER BY tenant_id
		ON CONFLICT (tenant_id, shard) DO UPDATE SET held = c.held + EXCLUDED.held, queued = c.queued + EXCLUDED.queued;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "omni_tasks_slots_deleted"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO upstream_slot_counts AS c (tenant_id, shard, held, queued)
		SELECT tenant_id, 1 + (txid_current() % 15)::integer,
			-count(*) FILTER (WHERE status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND queued_at IS NULL),
			-count(*) FILTER (WHERE queued_at IS NOT NULL)
		FROM old_rows
		WHERE (status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND queued_at IS NULL) OR queued_at IS NOT NULL
		GROUP BY tenant_id ORDER BY tenant_id
		ON CONFLICT (tenant_id, shard) DO UPDATE SET held = c.held + EXCLUDED.held, queued = c.queued + EXCLUDED.queued;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "omni_tasks_slots_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	held_delta integer := (NEW.status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND NEW.queued_at IS NULL)::integer
		- (OLD.status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND OLD.queued_at IS NULL)::integer;
	queued_delta integer := (NEW.queued_at IS NOT NULL)::integer - (OLD.queued_at IS NOT NULL)::integer;
BEGIN
	IF held_delta <> 0 OR queued_delta <> 0 THEN
		INSERT INTO upstream_slot_counts AS c (tenant_id, shard, held, queued)
			VALUES (
				NEW.tenant_id,
				CASE WHEN NEW.status = OLD.status AND held_delta <> 0 AND held_delta = -queued_delta THEN 0 ELSE 1 + (txid_current() % 15)::integer END,
				held_delta,
				queued_delta
			)
			ON CONFLICT (tenant_id, shard) DO UPDATE SET held = c.held + EXCLUDED.held, queued = c.queued + EXCLUDED.queued;
	END IF;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_slots_inserted" AFTER INSERT ON "omni_tasks"
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "omni_tasks_slots_inserted"();
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_slots_deleted" AFTER DELETE ON "omni_tasks"
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "omni_tasks_slots_deleted"();
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_slots_changed" AFTER UPDATE OF status, queued_at ON "omni_tasks"
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.queued_at IS DISTINCT FROM NEW.queued_at)
	EXECUTE FUNCTION "omni_tasks_slots_changed"();
--> statement-breakpoint
-- TRUNCATE fires no row or delete trigger: the counts of an emptied table are emptied with it.
CREATE FUNCTION "omni_tasks_counts_truncated"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM upstream_slot_counts;
	DELETE FROM task_status_counts;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_counts_truncated" AFTER TRUNCATE ON "omni_tasks"
	FOR EACH STATEMENT EXECUTE FUNCTION "omni_tasks_counts_truncated"();
--> statement-breakpoint
INSERT INTO "upstream_slot_counts" (tenant_id, shard, held, queued)
	SELECT tenant_id, 1,
		count(*) FILTER (WHERE status IN ('PENDING', 'SUBMITTED', 'PROCESSING') AND queued_at IS NULL),
		count(*) FILTER (WHERE queued_at IS NOT NULL)
	FROM "omni_tasks" GROUP BY tenant_id;