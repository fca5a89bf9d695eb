"""The dashboard's pages: what each shows (in process), and every page driven in headless
Chromium against a real server process (tests/services/test_dashboard_browser.py)."""

from __future__ import annotations

import re

from tests.factories import planted_dataset
from tests.services.test_api import post_cold_item


def test_an_item_page_shows_its_simulated_users_with_their_evidence_and_ranks(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[1])
    post_cold_item(client, queue, item)
    page = client.get(f"/dashboard/items/new-{item}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    simulated = runtime.store.simulated_detail(f"new-{item}")
    assert simulated and f"Simulated users ({len(simulated)})" in html
    for user, _, _ in simulated:
        assert f'href="/dashboard/users/{user}"' in html
    for name in (*runtime.release().warmer.signals, "history length", "merged"):
        assert f"<th>{name}</th>" in html
    # Each simulated user's rank of the item: most have it in their top 100.
    table = html.split('id="simulated"')[1].split("</table>")[0]
    ranks = [int(rank) for rank in re.findall(r"<td>(\d+)</td>\s*</tr>", table)]
    assert len(ranks) > len(simulated) // 2 and min(ranks) >= 1
    assert 'id="neighbours"' in html and 'id="map"' in html


def test_a_user_page_lists_history_and_each_pool(service) -> None:
    client, runtime, _ = service
    user = runtime.release().user_ids[0]
    html = client.get(f"/dashboard/users/{user}").text
    assert "trained with the model version" in html
    for pool in ("all", "warm", "cold"):
        assert f'id="pool-{pool}"' in html
    history = runtime.store.seen_item_ids(user)
    assert f"History ({len(history)})" in html and history
    assert all(f'href="/dashboard/items/{item}"' in html for item in history)


def test_overview_and_jobs_pages_count_what_the_store_holds(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    post_cold_item(client, queue, int(data.cold_test_items[2]))
    client.get(f"/v1/users/{runtime.release().user_ids[0]}/recommendations")
    html = client.get("/dashboard").text
    counts = runtime.store.counts()
    assert f'<p class="big">{counts["users"]}</p>' in html
    origins = runtime.store.item_origins()
    # The state holds the data set's warm items; cold ones arrive through the API.
    assert origins["api"] >= 1 and origins["dataset"] == len(planted_dataset().warm_items)
    shown = f"data set {origins['dataset']} · posted {origins['api']}"
    assert shown in html
    assert runtime.store.active_version().id in html
    assert "requests to this process" in html  # the recommendation above, charted
    jobs = client.get("/dashboard/jobs", params={"kind": "warm_up", "status": "succeeded"}).text
    assert jobs.count("<td>warm_up</td>") >= 1 and "<td>refresh</td>" not in jobs


def test_unknown_ids_and_bad_filters_are_refused_with_a_reason(service) -> None:
    client, _, _ = service
    missing = client.get("/dashboard/items/no-such-item")
    assert missing.status_code == 404 and "no item &#39;no-such-item&#39;" in missing.text
    assert client.get("/dashboard/users/nobody").status_code == 404
    bad = client.get("/dashboard/jobs", params={"kind": "nonsense"})
    assert bad.status_code == 422 and "kind" in bad.text
    assert client.get("/dashboard/items/" + "x" * 500).status_code == 422
    nul = client.get("/dashboard/items", params={"q": "a\x00b"})  # PostgreSQL refuses NUL
    assert nul.status_code == 422 and "q" in nul.text


def test_a_service_started_empty_shows_its_pages(empty_service) -> None:
    client, _, _ = empty_service
    for path in ("/dashboard", "/dashboard/items", "/dashboard/jobs"):
        assert client.get(path).status_code == 200, path
    assert "no model version yet" in client.get("/dashboard").text
