from django.core.management.base import BaseCommand, CommandError

from templates.whatsapp import NotConfigured, twilio_client, whatsapp_statuses_refresh


class Command(BaseCommand):
    help = "Fetch WhatsApp template approval status (pending/approved/rejected/paused) from the Twilio Content API."

    def handle(self, *args, **options):
        try:
            client = twilio_client()
        except NotConfigured as error:
            raise CommandError(str(error))
        report = whatsapp_statuses_refresh(client=client)
        for line in report.changed:
            self.stdout.write(f"changed: {line}")
        for line in report.errors:
            self.stderr.write(f"error: {line}")
        self.stdout.write(f"{report.checked} checked, {len(report.changed)} changed, {len(report.errors)} errors")
        if report.errors and not report.checked:
            raise CommandError("no WhatsApp template could be checked")
