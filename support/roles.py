"""Model-level grants per role. Which cases an agent sees is decided per
case by guardian grants (support.selectors.cases_visible_to); operators hold
view_all_cases and edit the policies and rules.

Least privilege: no grant here reaches journeys' models. Agents do not
browse enrollments or tasks across all contacts; a case page shows the
enrollments of its contact and its own escalation, scoped by case grants."""

from config.roles import AGENT, OPERATOR

_READ_CONFIG = [
    "support.view_team", "support.view_workinghours", "support.view_teamholiday", "support.view_slapolicy",
    "support.view_keywordrule", "support.view_escalationpolicy", "support.view_escalationstep",
    "support.view_suppressionrule",
]
_EDIT_CONFIG = [
    f"support.{verb}_{model}"
    for model in ("team", "workinghours", "teamholiday", "slapolicy", "keywordrule", "escalationpolicy",
                  "escalationstep", "suppressionrule")
    for verb in ("add", "change", "delete")
]

ROLE_PERMISSIONS = {
    AGENT: [
        "support.view_supportcase", "support.change_supportcase", "support.add_supportcase",
        "support.reply_supportcase", "support.add_casenote", "support.view_casenote",
        "support.view_notification", "support.change_notification", *_READ_CONFIG,
    ],
    OPERATOR: [
        "support.view_supportcase", "support.change_supportcase", "support.add_supportcase",
        "support.view_all_cases", "support.reply_supportcase", "support.add_casenote", "support.view_casenote",
        "support.view_notification", "support.change_notification", *_READ_CONFIG, *_EDIT_CONFIG,
    ],
}
