CREATE TABLE "usage_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"task_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"mode" text NOT NULL,
	"has_video_input" boolean NOT NULL,
	"video_seconds" double precision NOT NULL,
	"seconds_source" text NOT NULL,
	"rate" double precision NOT NULL,
	"units" double precision NOT NULL,
	"upstream_units" text,
	"occurred_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "usage_events" ADD CONSTRAINT "usage_events_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_events" ADD CONSTRAINT "usage_events_task_id_omni_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."omni_tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "usage_events_task_kind_unique" ON "usage_events" USING btree ("task_id","kind");--> statement-breakpoint
CREATE INDEX "usage_events_tenant_occurred_idx" ON "usage_events" USING btree ("tenant_id","occurred_at","id");--> statement-breakpoint
CREATE INDEX "usage_events_occurred_idx" ON "usage_events" USING btree ("occurred_at","id");--> statement-breakpoint
CREATE INDEX "omni_tasks_tenant_status_idx" ON "omni_tasks" USING btree ("tenant_id","status");