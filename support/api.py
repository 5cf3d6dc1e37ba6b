"""REST API for cases. An API key is an integration (CRM, helpdesk) and sees
every case; a signed-in staff user sees only the cases guardian lets them
see (the same selector as the admin). Views parse, call a service, answer."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import authentication, pagination, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_auth import ApiKeyAuthentication, key_may_call
from config.models import ApiKey
from config.serializers import ErrorResponseSerializer, InputSerializer
from consent.models import Contact
from support import selectors, services
from support.models import CaseSource, CaseStatus, Category, Priority, SupportCase, Team

NUMBER_PATTERN = r"C-\d{6,}"


class IntegrationOrCaseWorker(permissions.BasePermission):
    """An API key, or an active staff user allowed to see cases at all."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            return key_may_call(request, view)
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm("support.view_supportcase"))


def visible_cases(request):
    queryset = SupportCase.objects.select_related("contact", "team", "assigned_agent")
    if isinstance(request.auth, ApiKey):
        return queryset
    return selectors.cases_visible_to(request.user, queryset)


def actor_of(request):
    return request.auth if isinstance(request.auth, ApiKey) else request.user


class CaseSerializer(serializers.ModelSerializer):
    contact = serializers.CharField(source="contact.external_id")
    team = serializers.CharField(source="team.name", allow_null=True, default=None)
    assigned_agent = serializers.CharField(source="assigned_agent.username", allow_null=True, default=None)

    class Meta:
        model = SupportCase
        fields = [
            "number", "contact", "subject", "category", "priority", "status", "source", "team", "assigned_agent",
            "opened_at", "first_response_due_at", "first_response_at", "resolution_due_at", "resolved_at",
            "closed_at",
        ]


class CaseCreateSerializer(InputSerializer):
    contact = serializers.CharField(min_length=1, max_length=200, help_text="The contact's external id")
    subject = serializers.CharField(min_length=1, max_length=200)
    category = serializers.ChoiceField(choices=Category.choices, default=Category.OTHER)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)

    def validate_contact(self, value: str) -> Contact:
        contact = Contact.objects.filter(external_id=value, erased_at__isnull=True).first()
        if contact is None:
            raise serializers.ValidationError(f"No contact has the external id {value!r}; create it first.")
        return contact


class CaseUpdateSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=CaseStatus.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    team = serializers.CharField(required=False, allow_null=True, help_text="Team name; null for none")
    assigned_agent = serializers.CharField(required=False, allow_null=True, help_text="Username; null: the queue")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def validate_team(self, value: str | None) -> Team | None:
        if value is None:
            return None
        team = Team.objects.filter(name=value).first()
        if team is None:
            raise serializers.ValidationError(f"No team is called {value!r}.")
        return team

    def validate_assigned_agent(self, value: str | None) -> User | None:
        if value is None:
            return None
        user = User.objects.filter(username=value, is_active=True, is_staff=True).first()
        if user is None:
            raise serializers.ValidationError(f"No active staff user is called {value!r}.")
        return user

    def validate(self, data: dict) -> dict:
        if not data:
            raise serializers.ValidationError("Give at least one of status, priority, team, assigned_agent.")
        team, agent = data.get("team"), data.get("assigned_agent")
        if team is not None and agent is not None and not agent.groups.filter(pk=team.group_id).exists():
            raise serializers.ValidationError({"assigned_agent": f"{agent.username} is not in team {team.name}."})
        return data


class CaseConflictSerializer(serializers.Serializer):
    type = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())


def conflict(error: services.SupportError, attr: str = "status") -> Response:
    return Response(
        {"type": "client_error", "errors": [{"code": "conflict", "detail": str(error), "attr": attr}]},
        status=status.HTTP_409_CONFLICT,
    )


class CasePagination(pagination.CursorPagination):
    ordering = ("-opened_at", "-id")


class CaseAuth:
    authentication_classes = [ApiKeyAuthentication, authentication.SessionAuthentication]
    permission_classes = [IntegrationOrCaseWorker]


class CaseListView(CaseAuth, APIView):
    required_scopes = {"GET": "cases:read", "POST": "cases:write"}

    @extend_schema(
        parameters=[
            OpenApiParameter("contact", str, description="Contact external id"),
            OpenApiParameter("status", str, enum=CaseStatus.values),
            OpenApiParameter("cursor", str, description="From the previous page's next link"),
        ],
        responses={200: inline_serializer("PaginatedCaseList", fields={
            "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
            "results": CaseSerializer(many=True),
        }), 400: ErrorResponseSerializer},
        operation_id="cases_list",
    )
    def get(self, request):
        queryset = visible_cases(request)
        wanted_status = request.query_params.get("status")
        if wanted_status:
            if wanted_status not in CaseStatus.values:
                raise serializers.ValidationError({"status": f"Use one of {', '.join(CaseStatus.values)}."})
            queryset = queryset.filter(status=wanted_status)
        if request.query_params.get("contact"):
            queryset = queryset.filter(contact__external_id=request.query_params["contact"])
        paginator = CasePagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(CaseSerializer(page, many=True).data)

    @extend_schema(request=CaseCreateSerializer, responses={201: CaseSerializer}, operation_id="cases_create",
                   description="Open a case. Its SLA clocks start and the escalation policy for its priority and "
                   "category runs (for high priority: acknowledgement email at once, SMS at 30 minutes without a "
                   "reply, assignment at 2 hours).")
    def post(self, request):
        if not isinstance(request.auth, ApiKey) and not request.user.has_perm("support.add_supportcase"):
            self.permission_denied(request, "You may not open cases.")
        serializer = CaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        source = CaseSource.API if isinstance(request.auth, ApiKey) else CaseSource.ADMIN
        agent = None if isinstance(request.auth, ApiKey) else request.user
        case = services.case_open(
            contact=data["contact"], subject=data["subject"], category=data["category"], priority=data["priority"],
            source=source, actor=actor_of(request), agent=agent,
        )
        return Response(CaseSerializer(_fresh(case)).data, status=status.HTTP_201_CREATED)


class CaseDetailView(CaseAuth, APIView):
    required_scopes = {"GET": "cases:read", "PATCH": "cases:write"}

    @extend_schema(responses={200: CaseSerializer, 404: OpenApiResponse(description="Unknown or not yours")},
                   operation_id="cases_retrieve")
    def get(self, request, number: str):
        return Response(CaseSerializer(get_object_or_404(visible_cases(request), number=number)).data)

    @extend_schema(
        request=CaseUpdateSerializer,
        responses={200: CaseSerializer, 409: CaseConflictSerializer},
        operation_id="cases_update",
        description="Change status (each through its own transition; an illegal one answers 409 and changes "
        "nothing), priority (SLA clocks recomputed) and assignment. Resolving or closing stops the case's "
        "pending escalation messages at once, queued ones included.",
    )
    def patch(self, request, number: str):
        case = get_object_or_404(visible_cases(request), number=number)
        if not isinstance(request.auth, ApiKey) and not selectors.can_change_case(request.user, case):
            self.permission_denied(request, "You may not change this case.")
        serializer = CaseUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                apply_update(case, serializer.validated_data, actor_of(request))
        except services.IllegalCaseTransition as error:
            return conflict(error)
        except services.SupportError as error:
            return conflict(error, attr="assigned_agent")
        return Response(CaseSerializer(_fresh(case)).data)


def _fresh(case: SupportCase) -> SupportCase:
    # The writer sees what it wrote, even a case it just handed to another team.
    return SupportCase.objects.select_related("contact", "team", "assigned_agent").get(pk=case.pk)


def apply_update(case: SupportCase, data: dict, actor) -> None:
    reason = data.get("reason", "")
    if "team" in data or "assigned_agent" in data:
        team = data.get("team", case.team)
        agent = data.get("assigned_agent", case.assigned_agent)
        services.case_assign(case=case, team=team, agent=agent, actor=actor, reason=reason)
    if "priority" in data:
        services.case_set_priority(case=case, priority=data["priority"], actor=actor, reason=reason)
    if "status" in data:
        services.case_set_status(case=case, status=data["status"], actor=actor, reason=reason)
