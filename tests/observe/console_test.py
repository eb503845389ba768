"""Drives eddy's web console in headless Chromium (Debian's chromium and chromium-driver,
through selenium) against a running `eddy serve`, changing the broker with the `eddy` CLI
between looks, and checks what a person would see:

1. the topic list shows the created topic;
2. a group's page shows lag that falls as a consumer reads (three reads, lag to 0);
3. a processor redeploy shows the replay's progress bar, then the switch-over;
4. a table page answers a key lookup;
5. the SQL box runs statements and a pull query, and streams a push query's rows.

Screenshots of each step go to --shots. The browser's log must hold no error. Every wait has a
deadline; any failure exits non-zero with what was expected and what the page showed.

usage: console_test.py --url URL --eddy BIN --broker ADDR --shots DIR --spec2 FILE
       --views N --page-count N
"""
import argparse
import json
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT = 60.0


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def step(message):
    print(message, flush=True)


class Console:
    def __init__(self, args):
        self.args = args
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        self.driver.set_page_load_timeout(WAIT)
        self.log = []

    def eddy(self, *words):
        run = subprocess.run([self.args.eddy, "--broker", self.args.broker, *words],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            fail(f"eddy {' '.join(words)}: {run.stderr}")
        return run.stdout

    def open(self, hash_):
        self.driver.get(self.args.url + "/#" + hash_)

    def wait_for(self, what, probe, timeout=WAIT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except Exception as e:  # the element is being redrawn: look again
                last = repr(e)
                continue
            if last is not None and last is not False:
                return last
            time.sleep(0.1)
        self.shot("failed")
        fail(f"{what}: not within {timeout} s (last look: {last!r})")

    def text_of(self, selector):
        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else None

    def shot(self, name):
        self.driver.save_screenshot(f"{self.args.shots}/{name}.png")

    def collect_log(self):
        self.log.extend(self.driver.get_log("browser"))


def topics(c):
    c.open("topics")
    c.wait_for("the topic list showing pageviews",
               lambda: c.text_of('[data-testid=topic-row][data-topic="pageviews"] [data-testid=topic-end]') == str(c.args.views))
    c.shot("1-topics")
    step("topics: pageviews listed with its records")


def group_lag(c):
    """Three reads of a third each: the lag shown falls after each, to 0 after the last."""
    third = c.args.views // 3
    lag = lambda: int(c.text_of("[data-testid=group-lag]") or -1)
    c.eddy("consume", "pageviews", "--group", "console-readers", "--count", str(third))
    c.open("group/console-readers")
    seen = [c.wait_for("the group's lag", lambda: lag() > 0 and lag())]
    c.shot("2-group-lag-before")
    for count in (third, c.args.views - 2 * third):
        c.eddy("consume", "pageviews", "--group", "console-readers", "--count", str(count))
        seen.append(c.wait_for("the lag falling", lambda: lag() < seen[-1] and str(lag())))
        seen[-1] = int(seen[-1])
    if seen[-1] != 0:
        fail(f"lag did not fall to 0: {seen}")
    c.wait_for("the lag chart", lambda: c.driver.find_elements(By.CSS_SELECTOR, "[data-testid=lag-chart] polyline"))
    time.sleep(1.2)  # one more poll, so the chart has its last point
    c.shot("2-group-lag-after")
    step(f"group: lag seen falling {seen}")


def replay(c):
    c.open("processors")
    c.wait_for("the processor card", lambda: c.text_of('[data-processor="clicks-per-page"] [data-testid=serving-version]') == "1")
    c.eddy("processor", "deploy", c.args.spec2)
    percents = []

    def progress():
        text = c.text_of("[data-testid=replay-percent]")
        if text:
            percents.append(float(text.rstrip("%")))
            if len(percents) == 1:
                c.shot("3-replay-progress")
        return c.text_of('[data-processor="clicks-per-page"] [data-testid=switchover]')

    switched = c.wait_for("the switch-over to version 2", progress)
    if "version 2" not in switched:
        fail(f"switch-over text: {switched!r}")
    if not percents or min(percents) >= 100.0:
        fail(f"no replay progress under 100% was shown: {percents}")
    c.shot("4-switched-over")
    step(f"processors: replay progress seen {percents[:3]}…{percents[-1:]}, then {switched!r}")


def table(c):
    c.open("tables/clicks-per-page%2Fclicks")
    key = c.driver.find_element(By.CSS_SELECTOR, "[data-testid=table-key]")
    key.send_keys("/page/3")
    c.driver.find_element(By.CSS_SELECTOR, "[data-testid=table-get]").click()
    cell = c.wait_for("the key lookup's row", lambda: c.text_of("[data-testid=table-result] tr:nth-child(2)"))
    expected = f'"/page/3" {c.args.page_count}'
    if cell != expected:
        fail(f"table row {cell!r}, expected {expected!r}")
    c.shot("5-table-lookup")
    step(f"tables: /page/3 -> {cell}")


def run_sql(c, sql):
    box = c.driver.find_element(By.CSS_SELECTOR, "[data-testid=sql-input]")
    box.clear()
    box.send_keys(sql)
    c.driver.find_element(By.CSS_SELECTOR, "[data-testid=sql-run]").click()


def sql(c):
    c.open("sql")
    run_sql(c, "CREATE STREAM hits (page VARCHAR KEY, ms BIGINT) WITH (kafka_topic='hits', value_format='JSON', partitions=1);\n"
               "CREATE TABLE hitsPerPage AS SELECT page, COUNT(*) AS n FROM hits GROUP BY page EMIT CHANGES;")
    c.wait_for("the statements' results", lambda: "hitsPerPage" in (c.text_of("[data-testid=sql-out]") or "") or None)
    c.eddy("produce", "hits", "--key-sep", "|", c.args.hits)
    pull = "SELECT page, n FROM hitsPerPage WHERE ROWKEY = '/pricing';"

    def answered():
        run_sql(c, pull)
        time.sleep(0.3)
        return c.text_of("[data-testid=sql-rows] tr:nth-child(2)") == "/pricing 3"

    c.wait_for("the pull query answering /pricing 3", answered)
    c.shot("6-sql-pull")
    run_sql(c, "SELECT page, n FROM hitsPerPage EMIT CHANGES;")
    c.wait_for("the push query's header", lambda: c.text_of("[data-testid=push-rows] tr"))
    c.eddy("produce", "hits", "--key-sep", "|", c.args.hits)
    c.wait_for("pushed rows", lambda: len(c.driver.find_elements(By.CSS_SELECTOR, "[data-testid=push-row]")) >= 2)
    c.shot("7-sql-push")
    c.driver.find_element(By.CSS_SELECTOR, "[data-testid=sql-stop]").click()
    step("sql: statements ran, the pull query answered, push rows streamed")


def main():
    parser = argparse.ArgumentParser()
    for name in ("--url", "--eddy", "--broker", "--shots", "--spec2", "--hits"):
        parser.add_argument(name, required=True)
    parser.add_argument("--views", type=int, required=True)
    parser.add_argument("--page-count", type=int, required=True)
    c = Console(parser.parse_args())
    try:
        for check in (topics, group_lag, replay, table, sql):
            check(c)
            c.collect_log()
        errors = [e for e in c.log if e.get("level") == "SEVERE"]
        if errors:
            fail("the browser logged errors: " + json.dumps(errors))
        step(f"browser log: {len(c.log)} entries, no errors")
    finally:
        c.driver.quit()


if __name__ == "__main__":
    main()
