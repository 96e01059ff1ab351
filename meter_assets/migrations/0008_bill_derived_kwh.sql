-- How much of a bill's energy was halved from half-hour readings (NEM12 registers read every
-- 30 minutes): the curated layer splits each into two quarter hours, and a customer priced by
-- time of use is owed the fact that those quarter hours were not measured one by one. Part of
-- measured_kwh + estimated_kwh, not added to them. Bills written before this migration had
-- none (0).
ALTER TABLE billing.bills
    ADD COLUMN derived_kwh numeric(14, 3) NOT NULL DEFAULT 0,
    ADD CONSTRAINT derived_kwh_is_part_of_the_energy
        CHECK (derived_kwh >= 0 AND derived_kwh <= measured_kwh + estimated_kwh) NOT VALID;

-- Written once, like the lines and charges it describes.
DROP TRIGGER bill_lines_are_written_once ON billing.bills;
CREATE TRIGGER bill_lines_are_written_once
    BEFORE UPDATE ON billing.bills
    FOR EACH ROW
    WHEN (OLD.energy_lines IS DISTINCT FROM NEW.energy_lines
          OR OLD.standing_lines IS DISTINCT FROM NEW.standing_lines
          OR OLD.energy_charge <> NEW.energy_charge OR OLD.standing_charge <> NEW.standing_charge
          OR OLD.measured_kwh <> NEW.measured_kwh OR OLD.estimated_kwh <> NEW.estimated_kwh
          OR OLD.derived_kwh <> NEW.derived_kwh OR OLD.supply_days <> NEW.supply_days)
    EXECUTE FUNCTION billing.refuse_lines_changed_in_place();
