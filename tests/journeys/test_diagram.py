from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import yaml

from journeys.as_code import definition_of
from journeys.demo import starter_files
from journeys.diagram import render_svg
from journeys.selectors import StepCounts

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("path", starter_files(), ids=lambda p: p.stem)
def test_every_starter_journey_draws_as_valid_svg_with_a_box_per_step(path):
    definition = definition_of(yaml.safe_load(path.read_text()))

    root = ET.fromstring(render_svg(definition))

    boxes = [g.get("data-step") for g in root.iter(f"{SVG}g")]
    assert boxes == [s["key"] for s in definition["steps"]] + ["end"]
    assert len(list(root.iter(f"{SVG}path"))) >= len(definition["steps"])


def test_labels_are_escaped_and_counts_are_shown():
    definition = {"steps": [{"key": "<script>", "type": "task", "title": "x"}]}

    svg = render_svg(definition, {"<script>": StepCounts(waiting=2, executed=5, sent=0, converted=1)})

    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "waiting 2 · done 5 · converted 1" in svg
