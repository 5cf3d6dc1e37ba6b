"""Reads that need thought: who may see and change which journeys, the live
counts behind the diagram, holdout lift, a CSV of contacts to enroll, and
"why not" from recorded decisions."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from consent.models import Contact, normalise_phone
from journeys.models import (
    OPEN_ENROLLMENT,
    Enrollment,
    EnrollmentStatus,
    EntryDecision,
    EntryOutcome,
    Journey,
    JourneyVersion,
    StepExecution,
    StepOutcome,
)

APPROVE_PERM = "journeys.approve_journeyversion"


def _is_user(user) -> bool:
    return getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)


def journeys_for_user(user, *, action: str = "view") -> QuerySet[Journey]:
    """Journeys this user may see (view: any with the role's permission, or
    granted per object) or change (the role's permission AND a grant on the
    journey: owner, user or team)."""
    if not _is_user(user):
        return Journey.objects.none()
    if user.is_superuser:
        return Journey.objects.all()
    if action == "view" and user.has_perm("journeys.view_journey"):
        return Journey.objects.all()
    if action == "change" and not user.has_perm("journeys.change_journey"):
        return Journey.objects.none()
    granted = get_objects_for_user(user, f"journeys.{action}_journey", klass=Journey, accept_global_perms=False)
    return Journey.objects.filter(Q(pk__in=granted.values("pk")) | Q(owner=user))


def can_change(user, journey: Journey) -> bool:
    return journeys_for_user(user, action="change").filter(pk=journey.pk).exists()


def can_publish(user, journey: Journey) -> bool:
    return can_change(user, journey) and user.has_perm("journeys.publish_journey")


def approval_refusal(user, version: JourneyVersion) -> str:
    """Why this user may not approve this version; '' when they may."""
    from consent.services import actor_label

    if not _is_user(user) or not user.has_perm(APPROVE_PERM):
        return "only a compliance reviewer may approve or reject a journey version"
    if actor_label(user) in version.editors or actor_label(user) == version.created_by:
        return f"{user.get_username()} edited this version and may not review it"
    return ""


# --- Live counts -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepCounts:
    waiting: int = 0
    executed: int = 0
    sent: int = 0
    converted: int = 0


def step_counts(journey: Journey) -> dict[str, StepCounts]:
    """Per step key: open enrollments there now, executions, messages queued
    and enrollments that went on to convert. Three aggregate queries."""
    waiting = dict(
        Enrollment.objects.filter(journey=journey, status__in=OPEN_ENROLLMENT)
        .values_list("current_step").annotate(n=Count("pk"))
    )
    executions = StepExecution.objects.filter(enrollment__journey=journey).values("step_key").annotate(
        executed=Count("pk"), sent=Count("pk", filter=Q(outcome=StepOutcome.SENT)),
    )
    converted = dict(
        StepExecution.objects.filter(enrollment__journey=journey, enrollment__status=EnrollmentStatus.CONVERTED)
        .values_list("step_key").annotate(n=Count("enrollment", distinct=True))
    )
    counts = {}
    for row in executions:
        key = row["step_key"]
        counts[key] = StepCounts(waiting.get(key, 0), row["executed"], row["sent"], converted.get(key, 0))
    for key, n in waiting.items():
        counts.setdefault(key, StepCounts(waiting=n))
    return counts


def journey_totals(journey: Journey) -> dict[str, int]:
    rows = Enrollment.objects.filter(journey=journey).values_list("status").annotate(n=Count("pk"))
    totals = {status: 0 for status in EnrollmentStatus.values}
    totals.update(dict(rows))
    totals["control"] = Enrollment.objects.filter(journey=journey, is_control=True).count()
    return totals


# --- Holdout lift ------------------------------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """Treatment (sent the journey) against control (the holdout, sent
    nothing), both tracked to the goal. Rates and lifts are fractions
    (0.25 = 25 %); None where there is nothing to divide by."""

    treatment_enrolled: int = 0
    treatment_converted: int = 0
    control_enrolled: int = 0
    control_converted: int = 0

    @property
    def treatment_rate(self) -> float | None:
        return self.treatment_converted / self.treatment_enrolled if self.treatment_enrolled else None

    @property
    def control_rate(self) -> float | None:
        return self.control_converted / self.control_enrolled if self.control_enrolled else None

    @property
    def absolute_lift(self) -> float | None:
        if self.treatment_rate is None or self.control_rate is None:
            return None
        return self.treatment_rate - self.control_rate

    @property
    def relative_lift(self) -> float | None:
        if self.absolute_lift is None or not self.control_rate:
            return None
        return self.absolute_lift / self.control_rate

    @property
    def p_value(self) -> float | None:
        return two_proportion_p_value(self.treatment_converted, self.treatment_enrolled,
                                      self.control_converted, self.control_enrolled)

    @property
    def absolute_lift_interval(self) -> tuple[float, float] | None:
        """95 % interval of the absolute lift: Newcombe's hybrid score interval
        (his method 10), which stays inside [-1, 1] and behaves at 0 % and 100 %,
        where the textbook Wald interval does not."""
        if not self.treatment_enrolled or not self.control_enrolled:
            return None
        return newcombe_interval(self.treatment_converted, self.treatment_enrolled,
                                 self.control_converted, self.control_enrolled)

    @property
    def relative_lift_interval(self) -> tuple[float, float] | None:
        """95 % interval of the relative lift (rate ratio - 1), Katz's log
        method; None while either group has no conversion."""
        if not self.treatment_converted or not self.control_converted:
            return None
        ratio = self.treatment_rate / self.control_rate
        se = math.sqrt(1 / self.treatment_converted - 1 / self.treatment_enrolled
                       + 1 / self.control_converted - 1 / self.control_enrolled)
        return ratio * math.exp(-Z_95 * se) - 1, ratio * math.exp(Z_95 * se) - 1

    def __add__(self, other: Lift) -> Lift:
        return Lift(self.treatment_enrolled + other.treatment_enrolled,
                    self.treatment_converted + other.treatment_converted,
                    self.control_enrolled + other.control_enrolled,
                    self.control_converted + other.control_converted)

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "treatment": {"enrolled": self.treatment_enrolled, "converted": self.treatment_converted,
                          "conversion_rate": self.treatment_rate},
            "control": {"enrolled": self.control_enrolled, "converted": self.control_converted,
                        "conversion_rate": self.control_rate},
            "absolute_lift": self.absolute_lift, "relative_lift": self.relative_lift, "p_value": self.p_value,
            "absolute_lift_ci95": self.absolute_lift_interval, "relative_lift_ci95": self.relative_lift_interval,
        }


Z_95 = 1.959963984540054


def wilson_interval(converted: int, enrolled: int, z: float = Z_95) -> tuple[float, float]:
    rate = converted / enrolled
    centre = rate + z * z / (2 * enrolled)
    spread = z * math.sqrt(rate * (1 - rate) / enrolled + z * z / (4 * enrolled * enrolled))
    scale = 1 + z * z / enrolled
    return (centre - spread) / scale, (centre + spread) / scale


def newcombe_interval(converted_a: int, enrolled_a: int, converted_b: int, enrolled_b: int) -> tuple[float, float]:
    """95 % interval of rate_a - rate_b from the two Wilson score intervals
    (Newcombe 1998, method 10)."""
    rate_a, rate_b = converted_a / enrolled_a, converted_b / enrolled_b
    low_a, high_a = wilson_interval(converted_a, enrolled_a)
    low_b, high_b = wilson_interval(converted_b, enrolled_b)
    difference = rate_a - rate_b
    return (difference - math.sqrt((rate_a - low_a) ** 2 + (high_b - rate_b) ** 2),
            difference + math.sqrt((high_a - rate_a) ** 2 + (rate_b - low_b) ** 2))


def two_proportion_p_value(converted_a: int, enrolled_a: int, converted_b: int, enrolled_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test: how likely a
    difference at least this large is if both groups convert alike. None
    without both groups; 1.0 when both rates are 0 % or both 100 %."""
    if not enrolled_a or not enrolled_b:
        return None
    pooled = (converted_a + converted_b) / (enrolled_a + enrolled_b)
    variance = pooled * (1 - pooled) * (1 / enrolled_a + 1 / enrolled_b)
    if variance == 0:
        return 1.0
    z = (converted_a / enrolled_a - converted_b / enrolled_b) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class JourneyLift:
    overall: Lift
    by_version: dict[int, Lift]  # version number -> its enrollments only


def holdout_lift(journey: Journey) -> JourneyLift:
    """Enrolled and converted per group, overall and per version, in one
    aggregate query. Open enrollments count as enrolled, not (yet) converted."""
    rows = (
        Enrollment.objects.filter(journey=journey).values_list("version__number", "is_control")
        .annotate(enrolled=Count("pk"), converted=Count("pk", filter=Q(status=EnrollmentStatus.CONVERTED)))
        .order_by("version__number", "is_control")
    )
    by_version: dict[int, Lift] = {}
    for number, is_control, enrolled, converted in rows:
        part = Lift(control_enrolled=enrolled, control_converted=converted) if is_control else Lift(enrolled, converted)
        by_version[number] = by_version.get(number, Lift()) + part
    return JourneyLift(overall=sum(by_version.values(), Lift()), by_version=by_version)


# --- Contacts to enroll from a CSV file ---------------------------------------------------

IDENTIFIER_COLUMNS = ("external_id", "email", "phone")


class CsvRefused(ValueError):
    """The whole file cannot be read (no header, too big, too many rows)."""


@dataclass(frozen=True)
class CsvProblem:
    line: int
    kind: str  # "unknown": no such (active) contact; "bad": the row itself is wrong
    message: str


@dataclass
class CsvContacts:
    contacts: list[Contact] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the file line naming each of contacts
    problems: list[CsvProblem] = field(default_factory=list)
    rows: int = 0

    @property
    def unknown(self) -> int:
        return sum(1 for p in self.problems if p.kind == "unknown")

    @property
    def bad(self) -> int:
        return sum(1 for p in self.problems if p.kind == "bad")


def enrollment_csv_read(data: bytes) -> CsvContacts:
    """The contacts a CSV names, one a row, by the first of external_id,
    email, phone the row fills (the header must name at least one), with
    every row that names nobody known, or is malformed, as a located problem.
    Contacts are looked up in one query per identifier column."""
    if len(data) > settings.JOURNEYS_ENROLL_CSV_MAX_BYTES:
        raise CsvRefused(f"the file is larger than {settings.JOURNEYS_ENROLL_CSV_MAX_BYTES:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvRefused("the file is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if not set(IDENTIFIER_COLUMNS) & set(header):
        raise CsvRefused("the first line must be a header naming a column external_id, email or phone")
    result, wanted = CsvContacts(), []  # wanted: (line, column, value)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        result.rows += 1
        if result.rows > settings.JOURNEYS_ENROLL_CSV_MAX_ROWS:
            raise CsvRefused(f"more than {settings.JOURNEYS_ENROLL_CSV_MAX_ROWS:,} rows")
        identified = _csv_identifier(reader.line_num, header, row)
        if isinstance(identified, CsvProblem):
            result.problems.append(identified)
        else:
            wanted.append(identified)
    _resolve_csv_contacts(result, wanted)
    return result


def _csv_identifier(line: int, header: list[str], row: list[str]) -> tuple[int, str, str] | CsvProblem:
    if len(row) > len(header):
        return CsvProblem(line, "bad", f"{len(row)} cells but the header names {len(header)} columns")
    cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
    column = next((c for c in IDENTIFIER_COLUMNS if cells.get(c)), None)
    if column is None:
        return CsvProblem(line, "bad", "no external_id, email or phone on this row")
    value = cells[column]
    if column == "email":
        value = value.lower()
    elif column == "phone":
        try:
            value = normalise_phone(value)
        except ValidationError as error:
            return CsvProblem(line, "bad", error.messages[0])
    return line, column, value


def _resolve_csv_contacts(result: CsvContacts, wanted: list[tuple[int, str, str]]) -> None:
    found: dict[tuple[str, str], Contact] = {}
    for column in IDENTIFIER_COLUMNS:
        values = {value for _, c, value in wanted if c == column}
        if values:
            for contact in Contact.objects.filter(**{f"{column}__in": values}).select_related("merged_into"):
                found[(column, getattr(contact, column))] = contact
    seen: set[int] = set()
    for line, column, value in wanted:
        contact = found.get((column, value))
        if contact is None:
            result.problems.append(CsvProblem(line, "unknown", f"no contact has {column} {value!r}"))
        elif contact.merged_into_id:
            result.problems.append(CsvProblem(
                line, "unknown", f"{value!r} was merged into {contact.merged_into.external_id!r}: name that one"))
        elif contact.erased_at:
            result.problems.append(CsvProblem(line, "unknown", f"{value!r} was erased"))
        elif contact.pk not in seen:  # a contact named twice is enrolled once
            seen.add(contact.pk)
            result.contacts.append(contact)
            result.lines.append(line)
    result.problems.sort(key=lambda p: p.line)


# --- Why not ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    at: dt.datetime | None
    what: str
    why: str


ENTRY_EXPLANATIONS = {
    EntryOutcome.CONDITION_FALSE: "an entry condition was false",
    EntryOutcome.REENTRY_RULE: "the re-entry rule kept them out",
    EntryOutcome.ALREADY_ENROLLED: "they were already in this journey",
    EntryOutcome.EXITED_BEFORE_ENTRY: "an exit or goal event had already happened",
    EntryOutcome.JOURNEY_NOT_ACTIVE: "the journey was not active",
}


def why_not(*, contact: Contact, journey: Journey, limit: int = 50) -> list[Reason]:
    """What was recorded about this contact and journey, newest first: entry
    decisions, how each enrollment ended, and every step that did not send
    (with the gate's or guard's reason on the message)."""
    from channels.models import OutboundMessage

    reasons: list[Reason] = []
    for decision in EntryDecision.objects.filter(contact=contact, journey=journey)[:limit]:
        if decision.outcome == EntryOutcome.ENTERED:
            continue
        event = f"event #{decision.event_id}" if decision.event_id else "manual enrollment"
        why = ENTRY_EXPLANATIONS.get(decision.outcome, decision.outcome)
        detail = f"{why}: {decision.detail}" if decision.detail else why
        reasons.append(Reason(decision.decided_at, f"not enrolled on {event}", detail))
    enrollments = list(Enrollment.objects.filter(contact=contact, journey=journey).select_related("version")[:limit])
    for enrollment in enrollments:
        reasons += _enrollment_reasons(enrollment)
    held = OutboundMessage.objects.filter(origin_enrollment_id__in=[e.pk for e in enrollments]).exclude(
        status__in=("queued", "sending", "sent", "delivered")
    )
    for message in held.order_by("-created_at")[:limit]:
        reasons.append(Reason(
            message.created_at, f"step {message.origin_step_key}: {message.channel} message {message.status}",
            f"{message.decision_reason}: {message.decision_detail}".rstrip(": "),
        ))
    if not reasons and not enrollments:
        reasons.append(Reason(None, "never considered", "no event of this journey's trigger was recorded for them"))
    return sorted(reasons, key=lambda r: r.at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)


def _enrollment_reasons(enrollment: Enrollment) -> list[Reason]:
    label = f"enrollment #{enrollment.pk} (v{enrollment.version.number})"
    reasons = []
    if enrollment.status in OPEN_ENROLLMENT:
        reasons.append(Reason(enrollment.entered_at, f"{label} is {enrollment.status}",
                              f"at step {enrollment.current_step}, next run {enrollment.next_run_at}"))
    else:
        reasons.append(Reason(enrollment.ended_at, f"{label} {enrollment.status}", enrollment.end_reason))
    if enrollment.is_control:
        reasons.append(Reason(enrollment.entered_at, f"{label} is in the holdout", "control contacts are sent nothing"))
    skipped = enrollment.executions.exclude(
        outcome__in=(StepOutcome.SENT, StepOutcome.DONE, StepOutcome.BRANCHED, StepOutcome.WAITING)
    )
    for execution in skipped:
        reasons.append(Reason(execution.executed_at, f"step {execution.step_key}: {execution.outcome}",
                              execution.reason or "-"))
    for execution in enrollment.executions.filter(outcome=StepOutcome.BRANCHED):
        reasons.append(Reason(execution.executed_at, f"step {execution.step_key} took {execution.next_step}",
                              execution.reason))
    return reasons
