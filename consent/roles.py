"""Who sees contacts' addresses (consent.view_personal_data): the support
agent, who replies to the customer from the case and must check the address
the messages went to, and the operator, who suppresses and lifts by address
and traces bounces and failures to one. Not the marketer (journeys and
templates work on segments and external ids) nor the compliance reviewer
(auditing who got what and why needs the external id, the decision and a
masked address, which is what the weekly export carries)."""

from config.roles import AGENT, MARKETER, OPERATOR, REVIEWER

ROLE_PERMISSIONS = {
    MARKETER: [
        "consent.view_contact", "consent.view_consentrecord", "consent.view_suppression",
        "consent.view_quiethoursrule", "consent.view_holiday",
    ],
    REVIEWER: [
        "consent.view_contact", "consent.view_consentrecord", "consent.view_suppression",
        "consent.add_suppression", "consent.view_contactmerge", "consent.view_quiethoursrule", "consent.view_holiday",
    ],
    AGENT: [
        "consent.view_contact", "consent.view_consentrecord", "consent.add_consentrecord",
        "consent.view_pushdevice", "consent.view_personal_data",
    ],
    OPERATOR: [
        "consent.view_contact", "consent.change_contact", "consent.view_consentrecord",
        "consent.add_consentrecord", "consent.view_suppression", "consent.add_suppression",
        "consent.change_suppression", "consent.view_quiethoursrule", "consent.add_quiethoursrule",
        "consent.change_quiethoursrule", "consent.view_holiday", "consent.add_holiday", "consent.change_holiday",
        "consent.view_contactmerge", "consent.view_pushdevice", "consent.change_pushdevice",
        "consent.view_personal_data",
    ],
}
