"""The "your usage" page in headless Chromium (Debian's), served by the real API."""

import time
from decimal import Decimal

from meter_assets import postgres
from meter_assets.serving.auth import mint


def test_page_draws_the_customers_days_with_estimated_days_marked(api, browser, pg_dsn):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{api}/?days=30#token={mint(2)}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    load_ms = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready-ms"))
    print(f"page load to chart drawn: {load_ms} ms")

    with postgres.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT local_date, kwh, estimated_kwh FROM serving.daily_usage WHERE customer_id = 2 "
            "ORDER BY local_date DESC LIMIT 30"
        ).fetchall()
    chart = browser.find_element(By.ID, "chart")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert chart.get_attribute("data-days") == "30" and len(bars) == 30
    assert sorted(b.get_attribute("data-date") for b in bars) == sorted(day.isoformat() for day, _, _ in rows)
    estimated = {b.get_attribute("data-date") for b in bars if "estimated" in b.get_attribute("class")}
    assert estimated == {day.isoformat() for day, _, est in rows if est > 0} and estimated
    total = browser.find_element(By.ID, "total-kwh").get_attribute("data-kwh")
    assert Decimal(total) == sum(kwh for _, kwh, _ in rows)
    assert browser.find_element(By.ID, "estimate").text not in ("", "–", "none yet")
    assert "#token" not in browser.current_url, "the token leaves the address bar"
    assert all(b.get_attribute("data-average-rate") is None for b in bars), "not on a day-ahead tariff"


def test_a_day_ahead_customer_sees_each_days_average_rate(api, browser, pg_dsn):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{api}/?days=7#token={mint(1)}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    with postgres.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT local_date, average_rate FROM serving.daily_usage WHERE customer_id = 1 "
            "ORDER BY local_date DESC LIMIT 7"
        ).fetchall()
    bars = browser.find_element(By.ID, "chart").find_elements(By.CSS_SELECTOR, "rect.bar")
    shown = {b.get_attribute("data-date"): Decimal(b.get_attribute("data-average-rate")) for b in bars}
    assert shown == {day.isoformat(): rate for day, rate in rows}
    # the bar's tooltip says it, in the customer's currency, before tax
    title = bars[-1].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert "a kWh before tax" in title and str(rows[0][1])[-4:] in title


def test_a_home_with_solar_panels_sees_what_it_sent_to_the_grid_and_its_credit(api, browser, pg_dsn):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{api}/?days=7#token={mint(2)}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    with postgres.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT local_date, export_kwh, export_credit FROM serving.daily_usage WHERE customer_id = 2 "
            "ORDER BY local_date DESC LIMIT 7"
        ).fetchall()
    bars = browser.find_element(By.ID, "chart").find_elements(By.CSS_SELECTOR, "rect.bar")
    shown = {
        b.get_attribute("data-date"): (
            Decimal(b.get_attribute("data-export-kwh")),
            Decimal(b.get_attribute("data-export-credit")),
        )
        for b in bars
    }
    assert shown == {day.isoformat(): (kwh, credit) for day, kwh, credit in rows}
    title = bars[-1].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert f"sent to the grid {float(rows[0][1]):g} kWh, credit" in title and str(-rows[0][2]) in title
    # the period's export and credit, summed here from the served rows
    card = browser.find_element(By.ID, "total-export")
    assert Decimal(card.get_attribute("data-kwh")) == sum(kwh for _, kwh, _ in rows)
    assert Decimal(card.get_attribute("data-credit")) == sum(credit for *_, credit in rows)


def test_page_without_a_valid_token_says_so(api, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{api}/#token={mint(2, ttl_seconds=60, now=time.time() - 3600)}")
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda d: error.is_displayed())
    assert "expired" in error.text
