-- Which version of the curated readings (the `reads_15min` Delta table) a bill or an
-- adjustment was computed from: that version can be read again to show exactly what was
-- billed. Rows written before this migration do not know it (NULL).
ALTER TABLE billing.bills ADD COLUMN reads_version bigint;
ALTER TABLE billing.bill_adjustments ADD COLUMN reads_version bigint;
