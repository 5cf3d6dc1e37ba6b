"""The starter journeys from journeys/starter/*.yaml, loaded active: imported
and published by the seed's editor, approved by a different reviewer."""

from __future__ import annotations

from pathlib import Path

from journeys import as_code, services
from journeys.models import Journey, VersionStatus

STARTER_DIR = Path(__file__).resolve().parent / "starter"
EDITOR = "seed_demo"
REVIEWER = "seed_demo:compliance"


def starter_files() -> list[Path]:
    return sorted(STARTER_DIR.glob("*.yaml"))


def load_starter(path: Path) -> Journey | None:
    """Import, publish and approve one starter journey; None if it exists."""
    text = path.read_text(encoding="utf-8")
    document, problems = as_code.parse(text)
    if document is None or problems:
        raise ValueError(f"{path.name}: {problems}")
    if Journey.objects.filter(key=document["key"]).exists():
        return None
    result = as_code.import_yaml(text=text, actor=EDITOR, publish=True)
    if result.problems:
        raise ValueError(f"{path.name}: " + "; ".join(str(p) for p in result.problems))
    if result.version.status == VersionStatus.IN_REVIEW:
        services.journey_version_approve(version=result.version, actor=REVIEWER, note="starter journey")
    return result.journey


def seed() -> int:
    return sum(1 for path in starter_files() if load_starter(path) is not None)
