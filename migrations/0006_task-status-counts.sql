CREATE TABLE "task_status_counts" (
	"status" text NOT NULL,
	"shard" integer NOT NULL,
	"count" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "task_status_counts_status_shard_pk" PRIMARY KEY("status","shard")
);
--> statement-breakpoint
-- Keeps task_status_counts in step with omni_tasks inside the writing transaction. Inserts and
-- deletes are counted once per statement (a bulk insert is one upsert per status, not one per
-- row); a status change, always a single-row update, moves one count. The two rows of a change are
-- upserted in status order, so concurrent changes take their row locks in one global order and
-- cannot deadlock each other.
CREATE FUNCTION "omni_tasks_count_inserted"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO task_status_counts AS c (status, shard, count)
		SELECT status, floor(random() * 16)::integer, count(*) FROM new_rows GROUP BY status ORDER BY status
		ON CONFLICT (status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "omni_tasks_count_deleted"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO task_status_counts AS c (status, shard, count)
		SELECT status, floor(random() * 16)::integer, -count(*) FROM old_rows GROUP BY status ORDER BY status
		ON CONFLICT (status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "omni_tasks_count_status_change"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	pick integer := floor(random() * 16)::integer;
BEGIN
	IF NEW.status IS DISTINCT FROM OLD.status THEN
		INSERT INTO task_status_counts AS c (status, shard, count)
			SELECT d.status, pick, d.delta
			FROM (VALUES (OLD.status, -1), (NEW.status, 1)) AS d(status, delta)
			ORDER BY d.status
			ON CONFLICT (status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
	END IF;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_count_inserted" AFTER INSERT ON "omni_tasks"
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "omni_tasks_count_inserted"();
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_count_deleted" AFTER DELETE ON "omni_tasks"
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "omni_tasks_count_deleted"();
--> statement-breakpoint
CREATE TRIGGER "omni_tasks_count_status_change" AFTER UPDATE OF status ON "omni_tasks"
	FOR EACH ROW EXECUTE FUNCTION "omni_tasks_count_status_change"();
--> statement-breakpoint
INSERT INTO "task_status_counts" (status, shard, count) SELECT status, 0, count(*) FROM "omni_tasks" GROUP BY status;
