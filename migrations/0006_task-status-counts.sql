CREATE TABLE "task_status_counts" (
	"status" text NOT NULL,
	"shard" integer NOT NULL,
	"count" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "task_status_counts_status_shard_pk" PRIMARY KEY("status","shard")
);
--> statement-breakpoint
-- Keeps task_status_counts in step with omni_tasks inside the writing transaction. The two rows of a
-- status change are upserted in status order, so concurrent changes take their row locks in one
-- global order and cannot deadlock each other.
CREATE FUNCTION "omni_tasks_count_statuses"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	pick integer := floor(random() * 16)::integer;
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO task_status_counts AS c (status, shard, count) VALUES (NEW.status, pick, 1)
			ON CONFLICT (status, shard) DO UPDATE SET count = c.count + 1;
	ELSIF TG_OP = 'DELETE' THEN
		INSERT INTO task_status_counts AS c (status, shard, count) VALUES (OLD.status, pick, -1)
			ON CONFLICT (status, shard) DO UPDATE SET count = c.count - 1;
	ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
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
CREATE TRIGGER "omni_tasks_count_statuses" AFTER INSERT OR DELETE OR UPDATE OF status ON "omni_tasks"
	FOR EACH ROW EXECUTE FUNCTION "omni_tasks_count_statuses"();
--> statement-breakpoint
INSERT INTO "task_status_counts" (status, shard, count) SELECT status, 0, count(*) FROM "omni_tasks" GROUP BY status;
