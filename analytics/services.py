"""Rollups (a whole local day rebuilt in one transaction, so re-running a day
never double counts) and the weekly audit export (streamed to CSV and XLSX,
complete only once its manifest is written)."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum
from django.utils import timezone
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from analytics.models import (
    AuditExport,
    ChannelDay,
    ExportStatus,
    JourneyDay,
    PermissionChange,
    RollupDay,
    SupportDay,
)
from channels.models import DeliveryEvent, MessageStatus, OriginKind, OutboundMessage
from consent.masking import mask_address
from consent.models import ConsentRecord, ConsentStatus
from journeys.models import OPEN_ENROLLMENT, Enrollment, EnrollmentStatus, JourneyVersion, StepExecution
from support.models import CaseEvent, CaseEventKind, SupportCase
from templates.models import VersionStatus, VersionTransition

logger = logging.getLogger(__name__)
S = MessageStatus


class ExportError(ValueError):
    """An export cannot be made as asked (bad week, already running)."""


# --- Days and histograms ---------------------------------------------------------------


def workspace_zone() -> ZoneInfo:
    return ZoneInfo(settings.WORKSPACE_TIMEZONE)


def local_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(workspace_zone()).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a workspace-local day, as aware datetimes (23 or 25 hours across a DST change)."""
    zone = workspace_zone()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    # In UTC: subtracting two datetimes of one zone gives wall-clock time, 24 h even across DST.
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def rounded_minutes(delta: dt.timedelta) -> int:
    """Whole minutes under 100, else two significant figures: mergeable
    histogram keys whose percentiles are within 5 % of the exact ones."""
    minutes = max(delta.total_seconds() / 60, 0)
    return round(minutes) if minutes < 100 else int(float(f"{minutes:.2g}"))


def add_to_histogram(histogram: dict[str, int], delta: dt.timedelta) -> None:
    key = str(rounded_minutes(delta))
    histogram[key] = histogram.get(key, 0) + 1


def merge_histograms(histograms: Iterable[dict[str, int]]) -> dict[int, int]:
    merged: dict[int, int] = defaultdict(int)
    for histogram in histograms:
        for key, n in histogram.items():
            merged[int(key)] += n
    return merged


def percentile(histogram: dict[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a merged histogram; None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = max(1, -(-int(fraction * total * 1000) // 1000)), 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            return key
    return max(histogram)


# --- Rollups ---------------------------------------------------------------------------


def decision_reason(detail: str) -> str:
    """The reason code of a status event's detail ('quiet_hours: until 08:00',
    'at delivery: consent_missing: ...', 'frequency_cap again')."""
    code = detail.removeprefix("at delivery: ").split(":", 1)[0].strip()
    return code.removesuffix(" again") or "unspecified"


@transaction.atomic
def rollup_day(day: dt.date, *, now: dt.datetime | None = None) -> RollupDay:
    """Rebuild every rollup row of one local day from the raw rows. Two runs of
    one day take turns on the RollupDay lock; each replaces the day whole."""
    now = now or timezone.now()
    RollupDay.objects.bulk_create([RollupDay(day=day, computed_at=now)], ignore_conflicts=True)
    marker = RollupDay.objects.select_for_update().get(day=day)
    start, end = day_bounds(day)
    for model in (ChannelDay, JourneyDay, SupportDay):
        model.objects.filter(day=day).delete()
    ChannelDay.objects.bulk_create(_channel_rows(day, start, end))
    JourneyDay.objects.bulk_create(_journey_rows(day, start, end))
    SupportDay.objects.bulk_create(_support_rows(day, start, end))
    marker.computed_at = now
    marker.save(update_fields=["computed_at"])
    return marker


def _channel_rows(day, start, end) -> list[ChannelDay]:
    rows: dict[tuple[str, str], ChannelDay] = {}

    def row(channel: str, provider: str) -> ChannelDay:
        key = (channel or "", provider or "")
        if key not in rows:
            rows[key] = ChannelDay(day=day, channel=key[0], provider=key[1], decisions={}, cost=Decimal(0))
        return rows[key]

    events = DeliveryEvent.objects.filter(kind=DeliveryEvent.Kind.STATUS, received_at__gte=start,
                                          received_at__lt=end, message__is_test=False)
    moves = events.values_list("message__channel", "message__provider", "old_status", "status").annotate(n=Count("pk"))
    for channel, provider, old, new, n in moves:
        target = row(channel, provider)
        if new == MessageStatus.QUEUED and old in ("", MessageStatus.DEFERRED):
            target.queued += n
        if old == MessageStatus.SENDING and new in (S.SENT, S.DELIVERED, S.FAILED, S.BOUNCED, S.UNDELIVERED):
            target.sent += n
        if new == S.DELIVERED:
            target.delivered += n
        elif new in (S.FAILED, S.UNDELIVERED):
            target.failed += n
        elif new == S.BOUNCED:
            target.bounced += n
    decided = events.filter(status__in=[S.SUPPRESSED, S.DEFERRED]).values_list(
        "message__channel", "message__provider", "status", "detail").iterator(chunk_size=5000)
    for channel, provider, status, detail in decided:
        target = row(channel, provider)
        setattr(target, status, getattr(target, status) + 1)
        reasons = target.decisions.setdefault(status, {})
        reason = decision_reason(detail)
        reasons[reason] = reasons.get(reason, 0) + 1

    def within(field: str) -> Q:
        return Q(**{f"{field}__gte": start, f"{field}__lt": end})

    engagement = (
        OutboundMessage.objects.filter(is_test=False).filter(
            within("first_opened_at") | within("first_clicked_at") | within("replied_at") | within("sent_at"))
        .values_list("channel", "provider")
        .annotate(opened=Count("pk", filter=within("first_opened_at")),
                  clicked=Count("pk", filter=within("first_clicked_at")),
                  replied=Count("pk", filter=within("replied_at")),
                  cost=Sum("cost_estimate", filter=within("sent_at")))
    )
    for channel, provider, opened, clicked, replied, cost in engagement:
        target = row(channel, provider)
        target.opened, target.clicked, target.replied, target.cost = opened, clicked, replied, cost or Decimal(0)

    revoked = ConsentRecord.objects.filter(status=ConsentStatus.REVOKED, recorded_at__gte=start, recorded_at__lt=end)
    for channel, n in revoked.values_list("channel").annotate(n=Count("pk")):
        row(channel, "").opt_outs = n

    converted = Enrollment.objects.filter(status=EnrollmentStatus.CONVERTED, is_control=False,
                                          ended_at__gte=start, ended_at__lt=end)
    reached = (OutboundMessage.objects.filter(origin_enrollment_id__in=converted.values("pk"), is_test=False)
               .values_list("channel", "provider").annotate(n=Count("contact", distinct=True)))
    for channel, provider, n in reached:
        row(channel, provider).converted_contacts = n
    return list(rows.values())


def _journey_rows(day, start, end) -> list[JourneyDay]:
    rows: dict[tuple[int, str], JourneyDay] = {}
    journey_of = {}

    def row(version_id: int, step_key: str) -> JourneyDay:
        key = (version_id, step_key)
        if key not in rows:
            if version_id not in journey_of:
                journey_of.update(JourneyVersion.objects.filter(pk=version_id).values_list("pk", "journey_id"))
            rows[key] = JourneyDay(day=day, journey_id=journey_of[version_id], version_id=version_id,
                                   step_key=step_key, convert_minutes={}, messages={})
        return rows[key]

    def outcomes(prefix: str = "") -> dict:
        """Counts of enrollments (distinct when reached through executions) by what became of them."""
        def count(**status) -> Count:
            condition = Q(**{f"{prefix}{key}": value for key, value in status.items()}) if status else None
            return Count(f"{prefix}pk", distinct=bool(prefix), filter=condition)

        return {"entered": count(), "in_progress": count(status__in=OPEN_ENROLLMENT),
                "converted": count(status=EnrollmentStatus.CONVERTED), "exited": count(status=EnrollmentStatus.EXITED),
                "completed": count(status=EnrollmentStatus.COMPLETED)}

    cohort = Enrollment.objects.filter(entered_at__gte=start, entered_at__lt=end)
    for values in cohort.values("version_id", "journey_id", "is_control").annotate(**outcomes()):
        journey_of[values["version_id"]] = values["journey_id"]
        target = row(values["version_id"], "")
        if values["is_control"]:
            target.control_entered, target.control_converted = values["entered"], values["converted"]
        else:
            for name in ("entered", "in_progress", "converted", "exited", "completed"):
                setattr(target, name, values[name])
    conversions = cohort.filter(status=EnrollmentStatus.CONVERTED, is_control=False).values_list(
        "version_id", "entered_at", "ended_at").iterator(chunk_size=5000)
    for version_id, entered_at, ended_at in conversions:
        add_to_histogram(row(version_id, "").convert_minutes, ended_at - entered_at)

    executions = StepExecution.objects.filter(executed_at__gte=start, executed_at__lt=end)
    per_step = executions.values("enrollment__version_id", "step_key").annotate(**outcomes("enrollment__"))
    for values in per_step:
        target = row(values["enrollment__version_id"], values["step_key"])
        for name in ("entered", "in_progress", "converted", "exited", "completed"):
            setattr(target, name, values[name])

    messages = (OutboundMessage.objects.filter(origin_kind=OriginKind.JOURNEY, created_at__gte=start,
                                               created_at__lt=end, origin_journey_version_id__isnull=False)
                .values_list("origin_journey_version_id", "origin_step_key", "status").annotate(n=Count("pk")))
    for version_id, step_key, status, n in messages:
        for target in (row(version_id, step_key), row(version_id, "")):
            target.messages[status] = target.messages.get(status, 0) + n
    return list(rows.values())


def _support_rows(day, start, end) -> list[SupportDay]:
    rows: dict[tuple[str, str], SupportDay] = {}

    def row(source: str, category: str) -> SupportDay:
        if (source, category) not in rows:
            rows[source, category] = SupportDay(day=day, source=source, category=category,
                                                first_response_minutes={}, resolution_minutes={})
        return rows[source, category]

    cases = SupportCase.objects
    for source, category, n in (cases.filter(opened_at__gte=start, opened_at__lt=end)
                                .values_list("source", "category").annotate(n=Count("pk"))):
        row(source, category).opened = n
    answered = cases.filter(first_response_at__gte=start, first_response_at__lt=end).values_list(
        "source", "category", "opened_at", "first_response_at")
    for source, category, opened_at, answered_at in answered.iterator(chunk_size=5000):
        target = row(source, category)
        target.first_responses += 1
        add_to_histogram(target.first_response_minutes, answered_at - opened_at)
    agent_replied = CaseEvent.objects.filter(case=OuterRef("pk"), kind=CaseEventKind.AGENT_REPLY)
    resolved = cases.filter(resolved_at__gte=start, resolved_at__lt=end).annotate(
        agent=Exists(agent_replied)).values_list("source", "category", "opened_at", "resolved_at", "agent")
    for source, category, opened_at, resolved_at, agent in resolved.iterator(chunk_size=5000):
        target = row(source, category)
        target.resolved += 1
        target.resolved_without_agent += not agent
        add_to_histogram(target.resolution_minutes, resolved_at - opened_at)
    events = CaseEvent.objects.filter(at__gte=start, at__lt=end, kind__in=[CaseEventKind.ESCALATION,
                                                                           CaseEventKind.SLA_BREACH])
    for source, category, kind, n in events.values_list("case__source", "case__category", "kind").annotate(
            n=Count("pk")):
        target = row(source, category)
        if kind == CaseEventKind.ESCALATION:
            target.escalations = n
        else:
            target.sla_breaches = n
    return list(rows.values())


def rollup_range(first: dt.date, last: dt.date, *, now: dt.datetime | None = None) -> int:
    day, done = first, 0
    while day <= last:
        rollup_day(day, now=now)
        day += dt.timedelta(days=1)
        done += 1
    return done


def tick(*, now: dt.datetime | None = None) -> dict[str, object]:
    """Beat, every few minutes: today and yesterday again; days of the last
    month not recomputed since local midnight (late conversions, late
    reports), a few per tick; the scheduled export of last week once it is
    due; exports whose worker vanished marked failed."""
    now = now or timezone.now()
    today = local_today(now)
    rollup_range(today - dt.timedelta(days=1), today, now=now)
    midnight, _ = day_bounds(today)
    window = [today - dt.timedelta(days=n) for n in range(2, settings.ANALYTICS_SETTLE_DAYS + 1)]
    fresh = set(RollupDay.objects.filter(day__in=window, computed_at__gte=midnight).values_list("day", flat=True))
    stale = [day for day in window if day not in fresh][: settings.ANALYTICS_SETTLE_DAYS_PER_TICK]
    for day in stale:
        rollup_day(day, now=now)
    lost = fail_lost_exports(now=now)
    scheduled = schedule_weekly_export(now=now)
    return {"settled": len(stale), "lost_exports": lost, "scheduled_export": scheduled.pk if scheduled else None}


# --- Weekly audit export ---------------------------------------------------------------

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def week_bounds(week: str) -> tuple[dt.datetime, dt.datetime]:
    """[Monday 00:00, next Monday 00:00) of an ISO week in the workspace zone."""
    match = _WEEK.match(week or "")
    if not match:
        raise ExportError(f"{week!r} is not an ISO week; write it like 2026-W47")
    try:
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ExportError(f"{week} does not exist: {match[1]} has no week {int(match[2])}")
    return day_bounds(monday)[0], day_bounds(monday + dt.timedelta(days=7))[0]


def week_of(day: dt.date) -> str:
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


def request_export(week: str, *, requested_by: str, now: dt.datetime | None = None,
                   scheduled: bool = False) -> AuditExport:
    now = now or timezone.now()
    start, _ = week_bounds(week)
    if start > now:
        raise ExportError(f"{week} has not started yet")
    export = AuditExport.objects.create(week=week, requested_by=requested_by, requested_at=now, scheduled=scheduled)
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def _enqueue(export_id: int) -> None:
    from analytics.tasks import run_audit_export

    run_audit_export.delay(export_id)


def retry_export(export: AuditExport) -> AuditExport:
    if export.status != ExportStatus.FAILED:
        raise ExportError(f"export #{export.pk} is {export.status}; only a failed export can be retried")
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def schedule_weekly_export(*, now: dt.datetime | None = None) -> AuditExport | None:
    """Last ISO week's export, once it is Monday past ANALYTICS_EXPORT_HOUR local."""
    now = now or timezone.now()
    local = now.astimezone(workspace_zone())
    monday = local.date() - dt.timedelta(days=local.weekday())
    if local.date() == monday and local.hour < settings.ANALYTICS_EXPORT_HOUR:
        return None
    week = week_of(monday - dt.timedelta(days=7))
    if AuditExport.objects.filter(week=week, scheduled=True).exists():
        return None
    try:
        with transaction.atomic():
            export = AuditExport.objects.create(week=week, scheduled=True, requested_by="beat", requested_at=now)
    except IntegrityError:  # another tick made it first
        return None
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def fail_lost_exports(*, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.ANALYTICS_EXPORT_STALE_SECONDS)
    return AuditExport.objects.filter(status=ExportStatus.RUNNING, heartbeat_at__lt=stale).update(
        status=ExportStatus.FAILED, error="the worker running it stopped reporting progress; retry it")


def export_root() -> Path:
    return Path(settings.AUDIT_EXPORT_ROOT)


def run_export(export_id: int, *, now: dt.datetime | None = None) -> AuditExport:
    """Claim a pending or failed export and write its files; on any error the
    attempt's folder is removed and the export marked failed, never complete."""
    now = now or timezone.now()
    claimed = AuditExport.objects.filter(pk=export_id, status__in=[ExportStatus.PENDING, ExportStatus.FAILED]).update(
        status=ExportStatus.RUNNING, attempt=F("attempt") + 1, started_at=now, heartbeat_at=now, finished_at=None,
        rows_written=0, total_rows=0, error="", manifest={})
    export = AuditExport.objects.get(pk=export_id)
    if not claimed:
        return export
    # The token keeps a recreated database's export #1 off an older export #1's files.
    folder = export_root() / f"{export.week}-{export.pk}" / f"attempt-{export.attempt}-{secrets.token_hex(4)}"
    try:
        start, end = week_bounds(export.week)
        datasets = audit_datasets(start, end)
        AuditExport.objects.filter(pk=export.pk).update(total_rows=sum(d.count() for d in datasets))
        manifest = write_export(folder, export, datasets)
    except Exception as error:
        shutil.rmtree(folder, ignore_errors=True)
        AuditExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now())
        logger.exception("audit export %s failed", export.pk)
        raise
    AuditExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.COMPLETE, directory=str(folder), manifest=manifest, finished_at=timezone.now())
    export.refresh_from_db()
    return export


class Dataset:
    """One export file: its name, columns, a row count and a row stream."""

    def __init__(self, name: str, columns: list[str], rows, count=None):
        self.name, self.columns, self._rows, self._count = name, columns, rows, count

    def count(self) -> int:
        return self._count() if self._count else 0

    def rows(self) -> Iterator[list]:
        return self._rows()


XLSX_MAX_ROWS = 1_048_575  # one header line below Excel's 1,048,576


def write_export(folder: Path, export: AuditExport, datasets: list[Dataset]) -> dict:
    folder.mkdir(parents=True, exist_ok=False)
    workbook = Workbook(write_only=True)
    try:
        files, written = _write_datasets(folder, export, datasets, workbook)
    except BaseException:
        for sheet in workbook.worksheets:  # finish the sheets' writers so their temp files go too
            with contextlib.suppress(Exception):  # the original error is what matters
                sheet.close()
        raise
    workbook_path = folder / f"audit-{export.week}.xlsx"
    workbook.save(workbook_path)
    files.append({"file": workbook_path.name, "rows": written, "columns": []})
    for entry in files:
        entry["sha256"], entry["bytes"] = _digest(folder / entry["file"])
    manifest = {"week": export.week, "export": export.pk, "attempt": export.attempt,
                "generated_at": timezone.now().isoformat(), "timezone": settings.WORKSPACE_TIMEZONE, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    AuditExport.objects.filter(pk=export.pk).update(rows_written=written, heartbeat_at=timezone.now())
    return manifest


def _write_datasets(folder: Path, export: AuditExport, datasets: list[Dataset], workbook) -> tuple[list, int]:
    files, written = [], 0
    for dataset in datasets:
        path = folder / f"{dataset.name}.csv"
        sheet, sheet_rows, part = None, XLSX_MAX_ROWS, 0
        rows = 0
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(dataset.columns)
            for values in dataset.rows():
                text = [_text(value) for value in values]
                writer.writerow(text)
                if sheet_rows >= XLSX_MAX_ROWS:
                    part += 1
                    sheet = workbook.create_sheet(dataset.name[:28] if part == 1 else f"{dataset.name[:26]}-{part}")
                    sheet.append(dataset.columns)
                    sheet_rows = 0
                sheet.append([_cell(sheet, value) if value.startswith("=") or ILLEGAL_CHARACTERS_RE.search(value)
                              else value for value in text])
                sheet_rows += 1
                rows += 1
                written += 1
                if written % settings.ANALYTICS_EXPORT_PROGRESS_EVERY == 0:
                    AuditExport.objects.filter(pk=export.pk).update(rows_written=written, heartbeat_at=timezone.now())
        if part == 0:
            workbook.create_sheet(dataset.name[:28]).append(dataset.columns)
        files.append({"file": path.name, "rows": rows, "columns": dataset.columns})
    return files, written


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _cell(sheet, text: str) -> WriteOnlyCell:
    # Forced to a string: openpyxl makes "=HYPERLINK(...)" a formula; control characters are not allowed.
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", text))
    cell.data_type = "s"
    return cell


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


CHUNK = 2000

MESSAGE_COLUMNS = [
    "message_id", "created_at", "contact", "channel", "address_masked", "message_class", "origin_kind",
    "origin_label", "journey", "journey_version", "step", "case", "template_key", "template_version",
    "template_approved_by", "template_approved_at", "consent_record_id", "consent_status", "consent_source",
    "consent_recorded_at", "consent_wording_version", "decision_reason", "final_status", "sent_at",
    "delivered_at", "failed_at", "provider", "provider_message_id", "is_test",
]


def audit_datasets(start: dt.datetime, end: dt.datetime) -> list[Dataset]:
    versions = JourneyVersion.objects.filter(pk=OuterRef("origin_journey_version_id"))
    messages = OutboundMessage.objects.filter(created_at__gte=start, created_at__lt=end)

    def message_rows():
        rows = messages.annotate(
            journey_key=Subquery(versions.values("journey__key")[:1]),
            journey_number=Subquery(versions.values("number")[:1]),
            case_number=Subquery(SupportCase.objects.filter(pk=OuterRef("origin_case_id")).values("number")[:1]),
        ).order_by("created_at", "pk").values_list(
            "pk", "created_at", "contact__external_id", "channel", "address", "message_class", "origin_kind",
            "origin_label", "journey_key", "journey_number", "origin_step_key", "case_number", "template_key",
            "template_version__number", "template_version__approved_by__username", "template_version__approved_at",
            "consent_record_id", "consent_record__status", "consent_record__source", "consent_record__recorded_at",
            "consent_record__wording_version", "decision_reason", "status", "sent_at", "delivered_at", "failed_at",
            "provider", "provider_message_id", "is_test",
        )
        for row in rows.iterator(chunk_size=CHUNK):
            row = list(row)
            row[4] = mask_address(row[4])
            yield row

    decisions = DeliveryEvent.objects.filter(kind=DeliveryEvent.Kind.STATUS, received_at__gte=start,
                                             received_at__lt=end, status__in=[S.SUPPRESSED, S.DEFERRED])

    def decision_rows():
        rows = decisions.order_by("received_at", "pk").values_list(
            "pk", "received_at", "message_id", "message__contact__external_id", "message__channel",
            "message__address", "status", "detail", "message__deliver_after", "message__origin_kind",
            "message__origin_label", "message__template_key")
        for event_id, at, message_id, contact, channel, address, status, detail, after, kind, label, key in (
                rows.iterator(chunk_size=CHUNK)):
            yield [event_id, at, message_id, contact, channel, mask_address(address), status, decision_reason(detail),
                   detail, after if status == S.DEFERRED else None, kind, label, key]

    consent = ConsentRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end)

    def consent_rows():
        return consent.order_by("recorded_at", "pk").values_list(
            "pk", "recorded_at", "contact__external_id", "channel", "purpose", "status", "source", "recorded_by",
            "wording_version", "expires_at", "confirms_id", "evidence").iterator(chunk_size=CHUNK)

    template_reviews = VersionTransition.objects.filter(
        at__gte=start, at__lt=end, to_status__in=[VersionStatus.APPROVED, VersionStatus.CHANGES_REQUESTED])
    journey_reviews = JourneyVersion.objects.filter(reviewed_at__gte=start, reviewed_at__lt=end)

    def review_rows():
        for row in template_reviews.order_by("at", "pk").values_list(
                "at", "version__template__key", "version__number", "to_status", "actor_label", "comment",
                "content_hash").iterator(chunk_size=CHUNK):
            yield [row[0], "template", *row[1:]]
        for row in journey_reviews.order_by("reviewed_at", "pk").values_list(
                "reviewed_at", "journey__key", "number", "status", "reviewed_by", "review_note").iterator(
                chunk_size=CHUNK):
            yield [row[0], "journey", *row[1:], ""]

    permissions = PermissionChange.objects.filter(at__gte=start, at__lt=end)

    def permission_rows():
        return permissions.order_by("at", "pk").values_list("at", "actor", "action", "subject", "what").iterator(
            chunk_size=CHUNK)

    history_models = [model for model in apps.get_models() if hasattr(model, "history_object")]

    def history_rows():
        for model in sorted(history_models, key=lambda m: m._meta.label):
            records = model.objects.filter(history_date__gte=start, history_date__lt=end).select_related(
                "history_user").order_by("history_date", "history_id")
            for record in records.iterator(chunk_size=CHUNK):
                previous = record.prev_record if record.history_type == "~" else None
                changed = previous and sorted(change.field for change in record.diff_against(previous).changes)
                yield [record.history_date, model.instance_type._meta.label,
                       getattr(record, model.instance_type._meta.pk.attname),
                       {"+": "created", "~": "changed", "-": "deleted"}[record.history_type],
                       record.history_user.get_username() if record.history_user else "",
                       " ".join(changed or []), record.history_change_reason or ""]

    def history_count():
        return sum(m.objects.filter(history_date__gte=start, history_date__lt=end).count() for m in history_models)

    return [
        Dataset("messages", MESSAGE_COLUMNS, message_rows, messages.count),
        Dataset("decisions", ["event_id", "at", "message_id", "contact", "channel", "address_masked", "decision",
                              "reason", "detail", "deferred_until", "origin_kind", "origin_label", "template_key"],
                decision_rows, decisions.count),
        Dataset("consent_changes", ["record_id", "recorded_at", "contact", "channel", "purpose", "status", "source",
                                    "recorded_by", "wording_version", "expires_at", "confirms_record_id", "evidence"],
                consent_rows, consent.count),
        Dataset("template_reviews", ["at", "kind", "key", "version", "decision", "reviewer", "comment",
                                     "content_hash"], review_rows,
                lambda: template_reviews.count() + journey_reviews.count()),
        Dataset("permission_changes", ["at", "actor", "action", "subject", "what"], permission_rows,
                permissions.count),
        Dataset("admin_changes", ["at", "model", "object_id", "change", "user", "changed_fields", "reason"],
                history_rows, history_count),
    ]


def record_download(export: AuditExport, file: str, *, user, remote_addr: str | None = None) -> Path:
    """The path of one file of a complete export, after logging who took it."""
    names = {entry["file"] for entry in export.manifest.get("files", [])} | {"manifest.json"}
    if export.status != ExportStatus.COMPLETE or file not in names:
        raise ExportError(f"{file} is not a file of a complete export")
    export.downloads.create(user=user, file=file, at=timezone.now(), remote_addr=remote_addr)
    return Path(export.directory) / file


def record_permission_change(*, actor: str, action: str, subject: str, what: str) -> None:
    PermissionChange.objects.create(at=timezone.now(), actor=actor[:150], action=action, subject=subject[:200],
                                    what=what[:300])
