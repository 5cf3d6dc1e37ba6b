"""Enforce the append-only consent ledger in PostgreSQL itself, so no code
path (a raw query, a future bug) can rewrite consent history. The one change
allowed is erasure replacing the evidence with {"redacted": true}."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent records are append-only: delete refused';
    END IF;
    IF (NEW.id, NEW.contact_id, NEW.channel, NEW.purpose, NEW.status, NEW.source, NEW.wording_version,
        NEW.recorded_at, NEW.recorded_by, NEW.expires_at, NEW.confirms_id)
       IS DISTINCT FROM
       (OLD.id, OLD.contact_id, OLD.channel, OLD.purpose, OLD.status, OLD.source, OLD.wording_version,
        OLD.recorded_at, OLD.recorded_by, OLD.expires_at, OLD.confirms_id)
       OR NEW.evidence <> '{"redacted": true}'::jsonb THEN
        RAISE EXCEPTION 'consent records are append-only: update refused';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER consent_ledger_append_only
    BEFORE UPDATE OR DELETE ON consent_consentrecord
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS consent_ledger_append_only ON consent_consentrecord;
DROP FUNCTION IF EXISTS consent_ledger_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]
    operations = [migrations.RunPython(create_trigger, drop_trigger)]
