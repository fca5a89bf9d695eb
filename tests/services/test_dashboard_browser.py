"""Every dashboard page driven in headless Chromium (Debian's package; scripts/test.sh
installs it) against a real server process over a small trained state: pages load without
console errors, charts are drawn, a posted item shows its simulated users, the write
button reaches the API, and each page's screenshot is saved under the test's folder
(and under ``LLMINS_SCREENSHOTS_DIR`` where set: the README's picture comes from there)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from services.store import Store
from tests.factories import planted_dataset
from tests.services.test_killed import kill, serve, trained  # noqa: F401 (a fixture)

CHROMIUM = Path("/usr/bin/chromium")


def test_every_page_loads_in_chromium_and_shows_a_posted_item(trained, tmp_path) -> None:  # noqa: F811
    assert CHROMIUM.exists(), "Debian's chromium is missing: scripts/test.sh installs it"
    state = Path(shutil.copytree(trained, tmp_path / "state", symlinks=True))
    data = planted_dataset()
    item = int(data.cold_test_items[0])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    server, base = serve(state, tmp_path / "server.log")
    try:
        posted = httpx.post(
            f"{base}/v1/items", json={"id": "new-paper", "text": data.item_texts[item]}
        )
        assert posted.status_code == 202, posted.text
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/v1/items/new-paper").json()["status"] != "warm":
            assert time.monotonic() < deadline, "the posted item did not warm"
            time.sleep(0.2)
        body = httpx.get(f"{base}/v1/items/new-paper").json()
        user = body["simulated_users"][0]["user_id"]
        for _ in range(5):  # something for the overview's latency chart
            httpx.get(f"{base}/v1/users/{user}/recommendations")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))

            def visit(name: str, path: str, charts: int = 0) -> None:
                response = page.goto(base + path)
                assert response is not None and response.status == 200, (path, response)
                if charts:  # Plotly marks the elements it drew into
                    page.wait_for_function(
                        f"document.querySelectorAll('.js-plotly-plot').length >= {charts}"
                    )
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            visit("overview", "/dashboard", charts=2)
            assert (
                page.inner_text("#active-version")
                == Store(f"sqlite:///{state / 'llmins.sqlite'}").active_version().id
            )
            visit("items", "/dashboard/items?q=new-")
            assert page.locator("#items a", has_text="new-paper").count() == 1
            visit("item", "/dashboard/items/new-paper", charts=1)
            rows = page.locator("#simulated tr").count() - 1
            assert rows == len(body["simulated_users"]) > 0
            assert page.inner_text("#item-status") == "warm"
            page.click(f"#simulated a:text-is('{user}')")
            page.wait_for_url(f"**/dashboard/users/{user}")
            page.screenshot(path=str(shots / "user.png"), full_page=True)
            assert page.locator("#pool-all tr").count() > 1
            visit("jobs", "/dashboard/jobs?kind=warm_up")
            assert page.locator("table.jobs a", has_text="new-paper").count() >= 1
            page.click("#model-job button[value=refresh]")  # no key configured: open
            page.wait_for_function(
                "document.getElementById('model-job-answer').textContent.includes('refresh')"
            )
            assert "refused" not in page.inner_text("#model-job-answer")
            browser.close()
        assert problems == [], problems
    finally:
        kill(server)
    assert {p.name for p in shots.iterdir()} == {
        f"{n}.png" for n in ("overview", "items", "item", "user", "jobs")
    }
    if os.environ.get("LLMINS_SCREENSHOTS_DIR"):
        shutil.copytree(shots, os.environ["LLMINS_SCREENSHOTS_DIR"], dirs_exist_ok=True)
