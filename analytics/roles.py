from config.roles import MARKETER, OPERATOR, REVIEWER

_EXPORTS = ["analytics.view_auditexport", "analytics.add_auditexport", "analytics.download_auditexport",
            "analytics.view_auditexportdownload", "analytics.view_permissionchange"]

ROLE_PERMISSIONS = {
    MARKETER: ["analytics.view_dashboard"],
    REVIEWER: ["analytics.view_dashboard", *_EXPORTS],
    OPERATOR: ["analytics.view_dashboard", *_EXPORTS],
}
