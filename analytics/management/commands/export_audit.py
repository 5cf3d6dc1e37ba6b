from django.core.management.base import BaseCommand, CommandError

from analytics import services
from analytics.models import AuditExport, ExportStatus


class Command(BaseCommand):
    help = "Write the audit export of one ISO week now (e.g. --week 2026-W47) and print its manifest."

    def add_arguments(self, parser):
        parser.add_argument("--week", help="ISO week, e.g. 2026-W47")
        parser.add_argument("--retry", type=int, metavar="EXPORT_ID", help="Run a failed export again")

    def handle(self, *args, week=None, retry=None, **options):
        if bool(week) == bool(retry):
            raise CommandError("Give either --week 2026-W47 or --retry EXPORT_ID")
        if retry:
            export = AuditExport.objects.filter(pk=retry).first()
            if export is None or export.status != ExportStatus.FAILED:
                raise CommandError(f"export {retry} is not a failed export")
        else:
            try:
                services.week_bounds(week)
                # Run here, not on a worker: the row is made directly, nothing is enqueued.
                export = AuditExport.objects.create(week=week, requested_by="manage.py export_audit",
                                                    requested_at=services.timezone.now())
            except services.ExportError as error:
                raise CommandError(str(error))
        try:
            export = services.run_export(export.pk)
        except Exception as error:
            raise CommandError(f"export {export.pk} failed and was marked failed: {error}")
        self.stdout.write(f"Export {export.pk} of {export.week}: {export.directory}")
        for entry in export.manifest["files"]:
            self.stdout.write(f"  {entry['file']:<28} {entry['rows']:>10} rows  sha256 {entry['sha256']}")
