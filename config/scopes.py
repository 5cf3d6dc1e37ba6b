"""What an API key may do. Each API view names the scope every method needs
(`required_scopes`); a view that names none answers 403 to every key, so a
new endpoint is closed until someone decides who may call it."""

SCOPES = {
    "events:write": "Send events (POST /events/)",
    "contacts:read": "Read contacts and their consent",
    "contacts:write": "Create, update and erase contacts",
    "consent:write": "Record consent grants and revocations",
    "messages:send": "Send transactional and operational messages",
    "messages:read": "Read messages and their delivery timelines",
    "cases:read": "Read support cases",
    "cases:write": "Open and update support cases",
    "journeys:read": "Read journeys, versions, enrollments and stats; export journeys as YAML",
    "journeys:write": "Import journeys, enroll or exit contacts, pause and resume",
    "templates:read": "List approved message templates",
}
SCOPE_CHOICES = [(scope, f"{scope}: {text}") for scope, text in SCOPES.items()]
