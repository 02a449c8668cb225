CREATE TABLE "usage_rollups" (
	"tenant_id" uuid NOT NULL,
	"day" date NOT NULL,
	"kind" text NOT NULL,
	"mode" text NOT NULL,
	"shard" integer NOT NULL,
	"events" bigint DEFAULT 0 NOT NULL,
	"video_seconds" double precision DEFAULT 0 NOT NULL,
	"units" double precision DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_rollups_tenant_id_day_kind_mode_shard_pk" PRIMARY KEY("tenant_id","day","kind","mode","shard")
);
--> statement-breakpoint
-- Keeps usage_rollups in step with usage_events inside the writing transaction, once per statement
-- (a bulk insert is one upsert per group). Groups are upserted in key order, so concurrent writers
-- take their row locks in one global order. A row removed from the ledger is subtracted; a changed
-- row is subtracted as it was and added as it is.
CREATE FUNCTION "usage_events_roll_up_added"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO usage_rollups AS r (tenant_id, day, kind, mode, shard, events, video_seconds, units)
		SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, kind, mode, floor(random() * 8)::integer,
		       count(*), sum(video_seconds), sum(units)
		FROM new_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
		ON CONFLICT (tenant_id, day, kind, mode, shard) DO UPDATE SET
			events = r.events + EXCLUDED.events,
			video_seconds = r.video_seconds + EXCLUDED.video_seconds,
			units = r.units + EXCLUDED.units;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE FUNCTION "usage_events_roll_up_removed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO usage_rollups AS r (tenant_id, day, kind, mode, shard, events, video_seconds, units)
		SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, kind, mode, floor(random() * 8)::integer,
		       -count(*), -sum(video_seconds), -sum(units)
		FROM old_rows GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
		ON CONFLICT (tenant_id, day, kind, mode, shard) DO UPDATE SET
			events = r.events + EXCLUDED.events,
			video_seconds = r.video_seconds + EXCLUDED.video_seconds,
			units = r.units + EXCLUDED.units;
	RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "usage_events_roll_up_inserted" AFTER INSERT ON "usage_events"
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "usage_events_roll_up_added"();
--> statement-breakpoint
CREATE TRIGGER "usage_events_roll_up_deleted" AFTER DELETE ON "usage_events"
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "usage_events_roll_up_removed"();
--> statement-breakpoint
CREATE TRIGGER "usage_events_roll_up_updated_old" AFTER UPDATE ON "usage_events"
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "usage_events_roll_up_removed"();
--> statement-breakpoint
CREATE TRIGGER "usage_events_roll_up_updated_new" AFTER UPDATE ON "usage_events"
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "usage_events_roll_up_added"();
--> statement-breakpoint
INSERT INTO "usage_rollups" (tenant_id, day, kind, mode, shard, events, video_seconds, units)
	SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, kind, mode, 0, count(*), sum(video_seconds), sum(units)
	FROM "usage_events" GROUP BY 1, 2, 3, 4;
