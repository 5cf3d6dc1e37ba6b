"""Demo templates: every template the starter journeys and support use,
approved and live in `en` and `pt`, written by a seeded marketer and approved
by a seeded reviewer through the real workflow; plus one waiting in review."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from config import roles
from templates import services
from templates.models import Template

AUTHOR = "demo_marketer"
REVIEWER = "demo_reviewer"

NAME = {"path": "contact.first_name", "fallback": "there", "locale_fallbacks": {"pt": "cliente"}}
APPOINTMENT = {"path": "event.appointment_at", "type": "datetime", "required": True}
AMOUNT = {"path": "event.amount", "type": "money", "required": True}
INVOICE = {"path": "event.invoice_url", "type": "url", "required": True}
EXPIRES = {"path": "event.expires_at", "type": "date", "required": True}
CASE = {"path": "event.case_number", "required": True}
EXPECTED = {"path": "event.expected_response", "fallback": "within one business day"}
OFFER = {"path": "event.offer_code", "fallback": "COMEBACK10"}
REPLY = {"path": "event.message", "required": True}  # the agent's words (support)

SENDER = {"from_email": "hello@example.com", "from_name": "Acme", "reply_to": "support@example.com"}
STOP_EN, STOP_PT = " Reply STOP to opt out.", " Responda STOP para sair."


def _email(subject: str, paragraphs: list[str], cta: tuple[str, str] | None = None, preheader: str = "") -> dict:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    if cta:
        body += f'<p><a href="{cta[1]}" style="background:#2563eb;color:#fff;padding:8px 16px">{cta[0]}</a></p>'
    html = f'<div style="font-family:sans-serif;max-width:560px">{body}<p>— Acme</p></div>'
    return {"subject": subject, "preheader": preheader, "html": html, "sender_profile": SENDER}


# key: (channel, message class, variables, {locale: content})
DEMO_TEMPLATES: dict[str, tuple[str, str, list, dict[str, dict]]] = {
    "onboarding-welcome-email": ("email", "operational", [NAME], {
        "en": _email("Welcome to Acme, {{ contact.first_name }}", [
            "Hi {{ contact.first_name }}, your account is ready.",
            "One thing to do first: connect your calendar, it takes two minutes."],
            ("Finish setup", "https://example.com/setup"), "Your account is ready"),
        "pt": _email("Bem-vindo à Acme, {{ contact.first_name }}", [
            "Olá {{ contact.first_name }}, a sua conta está pronta.",
            "Primeiro passo: ligue o seu calendário, demora dois minutos."],
            ("Concluir configuração", "https://example.com/setup"), "A sua conta está pronta"),
    }),
    "onboarding-nudge-sms": ("sms", "operational", [NAME], {
        "en": {"body": "Hi {{ contact.first_name }}, finish setting up Acme: https://example.com/setup "
                       "Reply HELP for help."},
        "pt": {"body": "Olá {{ contact.first_name }}, conclua a configuração: https://example.com/setup "
                       "Responda HELP."},
    }),
    "onboarding-nudge-push": ("push", "operational", [NAME], {
        "en": {"title": "Almost there, {{ contact.first_name }}", "body": "Connect your calendar to get started.",
               "deep_link": "acme://setup", "data": {"screen": "setup"}},
        "pt": {"title": "Quase lá, {{ contact.first_name }}", "body": "Ligue o seu calendário para começar.",
               "deep_link": "acme://setup", "data": {"screen": "setup"}},
    }),
    "appointment-reminder-email": ("email", "operational", [NAME, APPOINTMENT], {
        "en": _email("Your appointment on {{ event.appointment_at|localdate }}", [
            "Hi {{ contact.first_name }}, this is a reminder of your appointment on "
            "{{ event.appointment_at|localdatetime }}.", "Need another time? Reply to this email."]),
        "pt": _email("A sua marcação a {{ event.appointment_at|localdate }}", [
            "Olá {{ contact.first_name }}, lembramos a sua marcação a {{ event.appointment_at|localdatetime }}.",
            "Precisa de outra hora? Responda a este email."]),
    }),
    "appointment-reminder-sms": ("sms", "operational", [NAME, APPOINTMENT], {
        "en": {"body": "Acme: reminder, appointment {{ event.appointment_at|localdatetime }}. "
                       "Reply YES to confirm or RESCHEDULE."},
        "pt": {"body": "Acme: lembrete, marcação {{ event.appointment_at|localdatetime }}. "
                       "Responda YES para confirmar ou RESCHEDULE."},
    }),
    "appointment-reminder-push": ("push", "operational", [APPOINTMENT], {
        "en": {"title": "Appointment soon", "body": "See you at {{ event.appointment_at|localtime }}.",
               "deep_link": "acme://appointments"},
        "pt": {"title": "Marcação em breve", "body": "Até às {{ event.appointment_at|localtime }}.",
               "deep_link": "acme://appointments"},
    }),
    "appointment-reminder-whatsapp": ("whatsapp", "operational", [NAME, APPOINTMENT], {
        "en": {"template_name": "appointment_reminder", "language": "en", "category": "utility",
               "content_sid": "HXdemoappointmentreminderen00000",
               "parameters": ["contact.first_name", "event.appointment_at|localdatetime"],
               "body": "Hi {{ contact.first_name }}, your appointment is on {{ event.appointment_at|localdatetime }}.",
               "provider_status": "approved"},
        "pt": {"template_name": "appointment_reminder", "language": "pt_BR", "category": "utility",
               "content_sid": "HXdemoappointmentreminderpt00000",
               "parameters": ["contact.first_name", "event.appointment_at|localdatetime"],
               "body": "Olá {{ contact.first_name }}, a sua marcação é a {{ event.appointment_at|localdatetime }}.",
               "provider_status": "approved"},
    }),
    "payment-failed-email": ("email", "operational", [NAME, AMOUNT, INVOICE], {
        "en": _email("Your payment of {{ event.amount }} did not go through", [
            "Hi {{ contact.first_name }}, we could not take your payment of {{ event.amount }}.",
            "Please update your card to keep your plan."], ("Update payment", "{{ event.invoice_url }}")),
        "pt": _email("O seu pagamento de {{ event.amount }} falhou", [
            "Olá {{ contact.first_name }}, não conseguimos cobrar {{ event.amount }}.",
            "Atualize o seu cartão para manter o plano."], ("Atualizar pagamento", "{{ event.invoice_url }}")),
    }),
    "payment-failed-push": ("push", "operational", [AMOUNT, INVOICE], {
        "en": {"title": "Payment failed", "body": "We could not take {{ event.amount }}. Tap to update your card.",
               "deep_link": "{{ event.invoice_url }}"},
        "pt": {"title": "Pagamento falhou", "body": "Não conseguimos cobrar {{ event.amount }}. Toque para atualizar.",
               "deep_link": "{{ event.invoice_url }}"},
    }),
    "payment-failed-sms": ("sms", "operational", [AMOUNT, INVOICE], {
        "en": {"body": "Acme: your payment of {{ event.amount }} failed. Update it here: {{ event.invoice_url }}"},
        "pt": {"body": "Acme: o pagamento de {{ event.amount }} falhou. Atualize aqui: {{ event.invoice_url }}"},
    }),
    "renewal-reminder-email": ("email", "operational", [NAME, EXPIRES], {
        "en": _email("Your plan renews on {{ event.expires_at|localdate }}", [
            "Hi {{ contact.first_name }}, your plan expires on {{ event.expires_at|localdate }}.",
            "Nothing to do if your card is up to date."], ("Review plan", "https://example.com/billing")),
        "pt": _email("O seu plano renova a {{ event.expires_at|localdate }}", [
            "Olá {{ contact.first_name }}, o seu plano expira a {{ event.expires_at|localdate }}.",
            "Se o cartão estiver atualizado, não precisa de fazer nada."],
            ("Ver plano", "https://example.com/billing")),
    }),
    "reengagement-email": ("email", "marketing", [NAME], {
        "en": _email("We miss you, {{ contact.first_name }}", [
            "Here is what is new since your last visit: shared calendars and faster booking."],
            ("See what's new", "https://example.com/new")),
        "pt": _email("Temos saudades, {{ contact.first_name }}", [
            "Novidades desde a sua última visita: calendários partilhados e marcações mais rápidas."],
            ("Ver novidades", "https://example.com/new")),
    }),
    "reengagement-push": ("push", "marketing", [NAME], {
        "en": {"title": "New in Acme", "body": "{{ contact.first_name }}, shared calendars are here.",
               "deep_link": "acme://whats-new"},
        "pt": {"title": "Novo na Acme", "body": "{{ contact.first_name }}, já há calendários partilhados.",
               "deep_link": "acme://whats-new"},
    }),
    "winback-email": ("email", "marketing", [NAME, OFFER], {
        "en": _email("Come back with 10% off", [
            "Hi {{ contact.first_name }}, use code {{ event.offer_code }} for 10% off your next three months."],
            ("Reactivate", "https://example.com/reactivate")),
        "pt": _email("Volte com 10% de desconto", [
            "Olá {{ contact.first_name }}, use o código {{ event.offer_code }} e tenha 10% nos próximos três meses."],
            ("Reativar", "https://example.com/reactivate")),
    }),
    "winback-sms": ("sms", "marketing", [OFFER], {
        "en": {"body": "Acme: come back with code {{ event.offer_code }} for 10% off." + STOP_EN},
        "pt": {"body": "Acme: volte com o código {{ event.offer_code }} e tenha 10%." + STOP_PT},
    }),
    "post-purchase-email": ("email", "marketing", [NAME], {
        "en": _email("Thanks for your order, {{ contact.first_name }}", [
            "Your order is confirmed. Tell us how we did: it takes one minute."],
            ("Leave a review", "https://example.com/review")),
        "pt": _email("Obrigado pela sua encomenda, {{ contact.first_name }}", [
            "A sua encomenda está confirmada. Diga-nos como correu: demora um minuto."],
            ("Deixar opinião", "https://example.com/review")),
    }),
    "case-ack-email": ("email", "operational", [NAME, CASE, EXPECTED], {
        "en": _email("We got your request (case {{ event.case_number }})", [
            "Hi {{ contact.first_name }}, thanks for reaching out. Your case number is {{ event.case_number }}.",
            "We will get back to you {{ event.expected_response }}."]),
        "pt": _email("Recebemos o seu pedido (caso {{ event.case_number }})", [
            "Olá {{ contact.first_name }}, obrigado pelo contacto. O número do caso é {{ event.case_number }}.",
            "Responderemos {{ event.expected_response }}."]),
    }),
    "case-callback-sms": ("sms", "operational", [CASE], {
        "en": {"body": "Acme support: we tried to reach you about case {{ event.case_number }}. "
                       "Reply with a good time to call."},
        "pt": {"body": "Apoio Acme: tentámos contactá-lo sobre o caso {{ event.case_number }}. "
                       "Responda com uma boa hora para ligarmos."},
    }),
    "case-followup-email": ("email", "operational", [NAME, CASE], {
        "en": _email("Is case {{ event.case_number }} solved?", [
            "Hi {{ contact.first_name }}, we have not heard back about case {{ event.case_number }}.",
            "Reply to this email if you still need help."]),
        "pt": _email("O caso {{ event.case_number }} ficou resolvido?", [
            "Olá {{ contact.first_name }}, não tivemos resposta sobre o caso {{ event.case_number }}.",
            "Responda a este email se ainda precisar de ajuda."]),
    }),
    "case-agent-reply-email": ("email", "operational", [NAME, CASE, REPLY], {
        "en": _email("Re: case {{ event.case_number }}", ["Hi {{ contact.first_name }},", "{{ event.message }}"]),
        "pt": _email("Re: caso {{ event.case_number }}", ["Olá {{ contact.first_name }},", "{{ event.message }}"]),
    }),
    "case-agent-reply-sms": ("sms", "operational", [CASE, REPLY], {
        "en": {"body": "Acme support (case {{ event.case_number }}): {{ event.message }}"},
        "pt": {"body": "Apoio Acme (caso {{ event.case_number }}): {{ event.message }}"},
    }),
    "demo-rcs-card": ("rcs", "marketing", [NAME], {
        "en": {"title": "Spring picks for {{ contact.first_name }}", "description": "New plans, same price.",
               "media_url": "https://example.com/img/spring.png",
               "suggestions": [{"type": "url", "text": "See plans", "value": "https://example.com/plans"},
                               {"type": "reply", "text": "Not now", "value": "NOT_NOW"}],
               "fallback_text": "Acme: new plans, same price: https://example.com/plans" + STOP_EN},
        "pt": {"title": "Escolhas de primavera para {{ contact.first_name }}",
               "description": "Planos novos, mesmo preço.",
               "media_url": "https://example.com/img/spring.png",
               "suggestions": [{"type": "url", "text": "Ver planos", "value": "https://example.com/plans"},
                               {"type": "reply", "text": "Agora não", "value": "NOT_NOW"}],
               "fallback_text": "Acme: planos novos, mesmo preço: https://example.com/plans" + STOP_PT},
    }),
    "demo-in-app": ("in_app", "marketing", [NAME], {
        "en": {"title": "Try shared calendars", "body": "{{ contact.first_name }}, invite your team in one click.",
               "cta_label": "Invite team", "cta_url": "acme://team/invite"},
        "pt": {"title": "Experimente calendários partilhados", "body": "{{ contact.first_name }}, convide a equipa.",
               "cta_label": "Convidar equipa", "cta_url": "acme://team/invite"},
    }),
}

IN_REVIEW = {
    "spring-promo-email": ("email", "marketing", [NAME, OFFER], {
        "en": _email("Spring sale: 20% off, {{ contact.first_name }}", [
            "Use code {{ event.offer_code }} before the end of April."], ("Shop now", "https://example.com/spring")),
        "pt": _email("Primavera: 20% de desconto, {{ contact.first_name }}", [
            "Use o código {{ event.offer_code }} até ao fim de abril."], ("Comprar", "https://example.com/spring")),
    }),
}


def _person(username: str, role: str) -> User:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def _draft(key: str, spec: tuple, author: User):
    channel, message_class, variables, by_locale = spec
    template = Template.objects.filter(key=key).first() or services.template_create(
        key=key, name=key.replace("-", " ").capitalize(), channel=channel, message_class=message_class, actor=author,
    )
    version = services.version_create_draft(template=template, actor=author)
    for locale, content in by_locale.items():
        version_fields, variant_fields, provider_status = services.content_to_fields(content)
        if version_fields:
            services.version_update(version=version, actor=author, **version_fields)
        variant = services.variant_save(version=version, actor=author, locale=locale, **variant_fields)
        if provider_status:
            services.whatsapp_status_update(variant=variant, status=provider_status)
    for variable in variables:
        services.variable_save(version=version, actor=author, **variable)
    services.version_submit(version=version, actor=author, comment="demo content")
    return version


def seed() -> int:
    roles.sync_roles()
    author, reviewer = _person(AUTHOR, roles.MARKETER), _person(REVIEWER, roles.REVIEWER)
    added = 0
    for key, spec in DEMO_TEMPLATES.items():
        if Template.objects.filter(key=key, live_version__isnull=False).exists():
            continue
        version = _draft(key, spec, author)
        services.version_approve(version=version, actor=reviewer, comment="demo: approved")
        added += 1
    for key, spec in IN_REVIEW.items():
        if Template.objects.filter(key=key, versions__status="in_review").exists():
            continue
        _draft(key, spec, author)
        added += 1
    return added
