-- A campaign contact's disposition is its latest call's. The call's own disposition arrives by
-- the event projection, which may land after Twilio's final status callback settled the
-- attempt (Kafka lag): so the contact follows the call row whenever its disposition is set,
-- by a trigger, rather than only copying it at settlement.
-- depends: 0310_campaigns

CREATE FUNCTION parley_campaign_disposition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE campaign_contacts k SET disposition = NEW.disposition
    FROM campaign_attempts a
    WHERE a.call_sid = NEW.twilio_call_sid AND k.contact_id = a.contact_id
      AND k.attempts = a.attempt_no AND k.disposition IS DISTINCT FROM NEW.disposition;
    RETURN NULL;
END $$;

CREATE TRIGGER calls_campaign_disposition AFTER UPDATE OF disposition ON calls
    FOR EACH ROW WHEN (NEW.disposition IS NOT NULL AND NEW.twilio_call_sid IS NOT NULL
                       AND NEW.disposition IS DISTINCT FROM OLD.disposition)
    EXECUTE FUNCTION parley_campaign_disposition();
