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
        "consent.view_pushdevice",
    ],
    OPERATOR: [
        "consent.view_contact", "consent.change_contact", "consent.view_consentrecord",
        "consent.add_consentrecord", "consent.view_suppression", "consent.add_suppression",
        "consent.change_suppression", "consent.view_quiethoursrule", "consent.add_quiethoursrule",
        "consent.change_quiethoursrule", "consent.view_holiday", "consent.add_holiday", "consent.change_holiday",
        "consent.view_contactmerge", "consent.view_pushdevice", "consent.change_pushdevice",
    ],
}
