CREATE TABLE "task_changes" (
	"txid" bigint DEFAULT (pg_current_xact_id()::text::bigint) NOT NULL,
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "task_changes_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" uuid NOT NULL,
	"task_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"task" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "task_changes_txid_seq_pk" PRIMARY KEY("txid","seq")
);
--> statement-breakpoint
DROP INDEX "omni_tasks_tenant_updated_idx";--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "change_txid" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "omni_tasks" ADD COLUMN "change_seq" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "task_changes_tenant_position_idx" ON "task_changes" USING btree ("tenant_id","txid","seq");--> statement-breakpoint
CREATE INDEX "task_changes_created_idx" ON "task_changes" USING btree ("created_at");