"""The printable progress report in real headless Chromium shows the seeded month's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chromium import launch_chromium, wait_for_body_data
from bench.faces import OBAMA, make_y4m
from core.auth import Role

from .node_fixtures import Node
from .report_fixtures import FACTS, expected, month_text, seed

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "report"

pytestmark = pytest.mark.browser

CELLS_JS = """() => [...document.querySelectorAll('section.hospital')].flatMap((s) =>
  [...s.querySelectorAll('tr[data-key] td[data-col]')].map((td) => [
    s.dataset.hospital, td.dataset.col, td.parentElement.dataset.key, Number(td.textContent)]))"""


async def test_the_printable_page_shows_the_seeded_month(node: Node, tmp_path: Path) -> None:
    hospitals = await seed(node)
    want = expected(FACTS, hospitals)
    token = node.token(Role.ADMIN, "planner")
    camera = make_y4m(tmp_path / "cam.y4m", OBAMA, seconds=1)
    async with launch_chromium(camera, ARTIFACTS) as browser:
        page = await browser.new_page("admin")
        await page.goto(f"{node.url}/report#token={token}")
        await wait_for_body_data(page, "phase", "form")
        await page.fill("#month", month_text())
        await page.click("#generate")
        await wait_for_body_data(page, "phase", "ready")
        cells = await page.evaluate(CELLS_JS)
        await browser.screenshot(page, "report")
        await page.emulate_media(media="print")
        await page.pdf(path=str(ARTIFACTS / "report.pdf"), format="A4", print_background=True)

    shown = {}
    for hospital, column, key, number in cells:
        shown[(hospital, column, key)] = number
    # Every number the seeded facts give is on the page, in its hospital and specialty...
    for (hospital, specialty), counts in want.items():
        for key, number in counts.items():
            assert shown[(hospital, specialty, key)] == number, (hospital, specialty, key)
    # ... every other cell of a specialty is zero, and the totals add up.
    for (hospital, column, key), number in shown.items():
        if column != "*":
            assert number == want.get((hospital, column), {}).get(key, 0), (hospital, column, key)
    for hospital in {h for h, _ in want}:
        for key in {k for (h, _), c in want.items() if h == hospital for k in c}:
            assert shown[(hospital, "*", key)] == sum(
                c.get(key, 0) for (h, _), c in want.items() if h == hospital)
    assert shown[("*", "*", "first.booked")] == sum(c["first.booked"] for c in want.values())
