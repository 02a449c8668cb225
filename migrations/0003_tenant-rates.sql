ALTER TABLE "tenants" ADD COLUMN "requests_per_second" integer;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "creates_per_minute" integer;