from config.roles import AGENT, MARKETER, OPERATOR, REVIEWER

_VIEW = ["templates.view_template", "templates.view_templateversion", "templates.view_templatevariant",
         "templates.view_templatevariable", "templates.view_versiontransition", "templates.view_liveversionchange"]
_EDIT = ["templates.add_template", "templates.change_template", "templates.add_templateversion",
         "templates.change_templateversion", "templates.add_templatevariant", "templates.change_templatevariant",
         "templates.delete_templatevariant", "templates.add_templatevariable", "templates.change_templatevariable",
         "templates.delete_templatevariable"]

ROLE_PERMISSIONS = {
    MARKETER: [*_VIEW, *_EDIT],
    REVIEWER: [*_VIEW, "templates.approve_templateversion"],
    AGENT: list(_VIEW),
    OPERATOR: list(_VIEW),
}
