CREATE TABLE "upstream_budget" (
	"id" integer PRIMARY KEY NOT NULL,
	"limit" double precision,
	"paused_until" timestamp (3) with time zone,
	"decreased_at" timestamp (3) with time zone,
	"throttles" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
ALTER TABLE "omni_tasks" DROP CONSTRAINT "omni_tasks_status_check";--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "priority" text DEFAULT 'NORMAL' NOT NULL;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "queued_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "cancel_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "units" double precision;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "upstream_units" text;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "weight" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
CREATE INDEX "omni_tasks_queue_idx" ON "omni_tasks" USING btree ("tenant_id",(case "priority" when 'HIGH' then 0 when 'NORMAL' then 1 else 2 end),"queued_at","id") WHERE "omni_tasks"."queued_at" is not null;--> statement-breakpoint
CREATE INDEX "omni_tasks_upstream_slots_idx" ON "omni_tasks" USING btree ("tenant_id") WHERE "omni_tasks"."status" in ('PENDING', 'SUBMITTED', 'PROCESSING') and "omni_tasks"."queued_at" is null;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD CONSTRAINT "omni_tasks_priority_check" CHECK ("omni_tasks"."priority" in ('HIGH', 'NORMAL', 'LOW'));--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD CONSTRAINT "omni_tasks_status_check" CHECK ("omni_tasks"."status" in ('PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELLED'));--> statement-breakpoint
INSERT INTO "upstream_budget" ("id") VALUES (1) ON CONFLICT DO NOTHING;
--> statement-breakpoint
-- Tasks that were final before this migration take their cost from the ledger.
UPDATE "omni_tasks" AS t SET "units" = u."units", "upstream_units" = u."upstream_units"
	FROM "usage_events" AS u
	WHERE u."task_id" = t."id" AND t."status" IN ('SUCCEEDED', 'FAILED')
		AND (u."kind" = 'video' OR NOT EXISTS (SELECT 1 FROM "usage_events" v WHERE v."task_id" = t."id" AND v."kind" = 'video'));
