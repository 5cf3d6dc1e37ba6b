from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Support"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from channels.services import register_send_guard
        from channels.signals import inbound_message_received
        from consent.services import register_erase_handler, register_merge_handler
        from journeys.models import Task
        from journeys.tick_hooks import register_tick_hook
        from support import escalation, routing, services
        from support.models import SupportCase

        inbound_message_received.connect(routing.on_inbound, dispatch_uid="support.route_inbound")
        # Journeys offers no explicit task hook yet: its Task rows are how a
        # journey step asks for a person (escalation steps, "open a case").
        post_save.connect(escalation.on_journey_task_created, sender=Task, dispatch_uid="support.journey_task")
        # Asked again at delivery: a case opened after the message was queued still holds it.
        register_send_guard("support.case_hold", escalation.marketing_hold_guard, at_delivery=True)
        # The first-response SLA check runs on the journeys tick (one scheduler).
        register_tick_hook("support.first_response_sla", services.cases_check_first_response_sla)
        # Every status change and new case is a save(): the per-instant hold cache starts over.
        post_save.connect(escalation.holds_forget, sender=SupportCase, dispatch_uid="support.holds_forget")
        register_merge_handler("support", services.on_contact_merge)
        register_erase_handler("support", services.on_contact_erase)
