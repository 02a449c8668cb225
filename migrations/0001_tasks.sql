CREATE TABLE "omni_tasks" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"status" text NOT NULL,
	"status_message" text,
	"version" integer DEFAULT 1 NOT NULL,
	"prompt" text NOT NULL,
	"model_name" text NOT NULL,
	"mode" text NOT NULL,
	"aspect_ratio" text,
	"duration_seconds" integer,
	"has_video_input" boolean NOT NULL,
	"request" jsonb NOT NULL,
	"request_hash" text NOT NULL,
	"upstream_task_id" text,
	"external_task_id" text,
	"idempotency_key" text,
	"videos" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"submitted_at" timestamp (3) with time zone,
	"completed_at" timestamp (3) with time zone,
	"next_check_at" timestamp (3) with time zone,
	"check_attempts" integer DEFAULT 0 NOT NULL,
	"deadline_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "omni_tasks_status_check" CHECK ("omni_tasks"."status" in ('PENDING', 'SUBMITTED', 'PROCESSING', 'SUCCEEDED', 'FAILED'))
);
--> statement-breakpoint
CREATE TABLE "task_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"task_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"source" text NOT NULL,
	"from_status" text,
	"to_status" text,
	"version" integer,
	"payload" jsonb,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "task_submissions" (
	"task_id" uuid PRIMARY KEY NOT NULL,
	"body" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD CONSTRAINT "omni_tasks_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_events" ADD CONSTRAINT "task_events_task_id_omni_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."omni_tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_submissions" ADD CONSTRAINT "task_submissions_task_id_omni_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."omni_tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "omni_tasks_tenant_created_idx" ON "omni_tasks" USING btree ("tenant_id","created_at","id");--> statement-breakpoint
CREATE INDEX "omni_tasks_tenant_updated_idx" ON "omni_tasks" USING btree ("tenant_id","updated_at");--> statement-breakpoint
CREATE UNIQUE INDEX "omni_tasks_upstream_task_id_unique" ON "omni_tasks" USING btree ("upstream_task_id");--> statement-breakpoint
CREATE UNIQUE INDEX "omni_tasks_tenant_external_task_id_unique" ON "omni_tasks" USING btree ("tenant_id","external_task_id");--> statement-breakpoint
CREATE UNIQUE INDEX "omni_tasks_tenant_idempotency_key_unique" ON "omni_tasks" USING btree ("tenant_id","idempotency_key");--> statement-breakpoint
CREATE INDEX "omni_tasks_next_check_idx" ON "omni_tasks" USING btree ("next_check_at") WHERE "omni_tasks"."next_check_at" is not null;--> statement-breakpoint
CREATE INDEX "task_events_task_id_created_idx" ON "task_events" USING btree ("task_id","created_at");