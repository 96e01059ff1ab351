-- Least privilege. The owner (meter_owner, which runs these migrations) owns every object;
-- the pipeline (meter_pipeline) reads and writes rows, never the schema; the API (meter_api)
-- reads the serving tables and nothing else. No role here is a superuser, so none can turn
-- off the triggers that seal issued bills (session_replication_role) or run a program
-- (COPY ... TO PROGRAM). Roles are created, with their passwords, by `meter-db setup`
-- (or the embedded server's start), before this migration runs.
REVOKE ALL ON SCHEMA billing, serving FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA billing, serving FROM PUBLIC;
REVOKE ALL ON public.schema_migrations FROM PUBLIC;

GRANT USAGE ON SCHEMA billing, serving TO meter_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON billing.bills, billing.bill_adjustments TO meter_pipeline;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA billing TO meter_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON serving.daily_usage, serving.refreshes TO meter_pipeline;
GRANT SELECT ON serving.bill_estimates TO meter_pipeline;
GRANT SELECT ON public.schema_migrations TO meter_pipeline, meter_api;

GRANT USAGE ON SCHEMA serving TO meter_api;
GRANT SELECT ON serving.daily_usage, serving.refreshes, serving.bill_estimates TO meter_api;
