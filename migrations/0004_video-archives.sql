CREATE TABLE "video_archives" (
	"task_id" uuid NOT NULL,
	"video_index" integer NOT NULL,
	"tenant_id" uuid NOT NULL,
	"source_url" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp (3) with time zone,
	"last_error" text,
	"stored_key" text,
	"size_bytes" bigint,
	"sha256" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"archived_at" timestamp (3) with time zone,
	CONSTRAINT "video_archives_pkey" PRIMARY KEY("task_id","video_index")
);
--> statement-breakpoint
ALTER TABLE "video_archives" ADD CONSTRAINT "video_archives_task_id_omni_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."omni_tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "video_archives" ADD CONSTRAINT "video_archives_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "video_archives_tenant_id_idx" ON "video_archives" USING btree ("tenant_id");--> statement-breakpoint
CREATE INDEX "video_archives_next_attempt_idx" ON "video_archives" USING btree ("next_attempt_at") WHERE "video_archives"."status" = 'pending';