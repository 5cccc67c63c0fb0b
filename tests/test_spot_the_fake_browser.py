"""The spot-the-fake page in a real headless browser: Debian's chromium driven by selenium through Debian's
chromedriver (nothing downloads a browser; .ci/run installs both). It loads the page, sees the drawings, clicks
through the practice round, answers the scored round from the keyboard alone and reads the score."""
import shutil
import subprocess

import pytest

from test_spot_the_fake import NUM, TIMEOUT, Script, free_port, model  # noqa: F401 (model: a fixture)
from fruitgan.people import results
from fruitgan.people.session import score

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Headless as root, and nothing reaching out to the network (updates, sync, QUIC probes).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver (as .ci/run does)"
    monkeypatch.setenv("SE_OFFLINE", "true")            # selenium's manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=subprocess.DEVNULL))
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.set_script_timeout(TIMEOUT)
        yield driver
    finally:
        driver.quit()


def judge_round(driver, wait, label, count, answer):
    """Answer ``count`` drawings of the round named ``label``, each once it is shown; ``answer(n)`` sends one."""
    from selenium.webdriver.common.by import By

    shown = "const i = document.getElementById('drawing'); return i.complete ? i.naturalWidth : 0"
    for n in range(count):
        wait.until(lambda d: d.find_element(By.ID, "progress").text == f"{label}: drawing {n + 1} of {count}"
                   and d.find_element(By.ID, "real").is_enabled())
        assert driver.execute_script(shown) == 28                  # the drawing itself is on the page
        answer(n)


def test_a_whole_session_in_a_headless_browser(model, browser):  # noqa: F811 (the fixture)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    script = Script(model, "--port", str(free_port()))
    wait = WebDriverWait(browser, TIMEOUT)
    keys = "rrfrffrf"[:2 * NUM]
    try:
        browser.get(f"http://127.0.0.1:{script.port}/")
        wait.until(lambda d: d.find_element(By.ID, "practice").is_enabled())
        assert "4 drawn by model t" in browser.find_element(By.ID, "about").text
        browser.find_element(By.ID, "practice").click()
        judge_round(browser, wait, "Practice", 4, lambda n: browser.find_element(By.ID, "real").click())
        wait.until(lambda d: "practice is over" in d.find_element(By.ID, "feedback").text)
        assert browser.find_element(By.ID, "feedback").text.startswith(("Right: that drawing was real",
                                                                         "Wrong: that drawing was fake"))
        press = lambda n: ActionChains(browser).send_keys(keys[n]).perform()       # the keyboard alone
        judge_round(browser, wait, "Scored round", 2 * NUM, press)
        wait.until(lambda d: d.find_element(By.ID, "results").is_displayed())
        shown = browser.find_element(By.ID, "results").text
        assert script.proc.wait(timeout=TIMEOUT) == 0
    finally:
        script.stop()
    [record] = results.read_sessions(model / "models" / "model_t", "pear")
    assert "".join(i["answer"][0] for i in record["images"]) == keys and record["practice_answered"] == 4
    judged = score([(i["truth"], i["answer"]) for i in record["images"]])
    assert f"Judged right: {judged['accuracy']:.2f}" in shown
    assert f"You judged {judged['right']} of {2 * NUM} right" in shown
