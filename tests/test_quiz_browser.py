"""`ganji quiz` in a real browser: headless Chromium driven by Selenium plays a 10-card quiz on a tiny
home with the keyboard only; the answers file then holds 10 valid lines and the results page shows a
fool rate per model.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); skipped, saying so, where
they are missing. With GANJI_QUIZ_SCREENSHOT=PATH, the results page is also saved there as a PNG
(the README's picture: `GANJI_QUIZ_SCREENSHOT=ganji/assets/readme/quiz.png pytest tests/test_quiz_browser.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from quiz_support import copy_world, start_server

from ganji.quiz.session import load_session, session_folders

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="headless Chromium and its driver are not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,1500",
                "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_ten_card_quiz_played_with_the_keyboard(browser, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    home = copy_world(tmp_path_factory.getbasetemp(), tmp_path / "home")
    proc, url = start_server(home, "--n", "10", "--seed", "1", "--reader", "ann", "--device", "cpu")
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.02)

        def state() -> tuple[str, str]:
            return tuple(browser.execute_script("return [document.body.dataset.state, document.body.dataset.card || '']"))

        said = []
        for card in range(10):
            wait.until(lambda _d, card=card: state() == ("ready", str(card)) or state()[0] == "error")
            assert state()[0] != "error", browser.find_element(By.ID, "error").text
            assert browser.find_element(By.ID, "progress").text == f"Card {card + 1} of 10"
            if card == 0:  # Tab to the focused "Real" button and press Enter: no mouse anywhere
                ActionChains(browser).send_keys(Keys.TAB).send_keys(Keys.ENTER).perform()
                said.append("real")
            else:
                key = "rf"[card % 3 == 0]
                ActionChains(browser).send_keys(key).perform()
                said.append({"r": "real", "f": "fake"}[key])
        wait.until(lambda _d: state()[0] in ("done", "error"))
        assert state()[0] == "done", browser.find_element(By.ID, "error").text
        rows = browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")
        by_model = {r.get_attribute("data-model"): [td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows}
        assert set(by_model) == {"vae", "gan", "real"}
        for model in ("vae", "gan"):
            cells = by_model[model]
            assert cells[0] == f"{model} (run r)" and re.fullmatch(r"\d+%", cells[3]) and re.fullmatch(r"\d+%–\d+%", cells[4])
        assert len(browser.find_elements(By.CSS_SELECTOR, "#cards figure")) == 10
        shot = os.environ.get("GANJI_QUIZ_SCREENSHOT")
        if shot:  # the whole page, no more
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1000, height + browser.execute_script("return window.outerHeight - window.innerHeight"))
            browser.save_screenshot(shot)
        out, err = proc.communicate(timeout=30)  # the results were shown: the command ends by itself
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "fool rate" in out
    (path,) = session_folders(home)
    lines = (path / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 10
    for i, line in enumerate(lines):
        answer = json.loads(line)
        assert answer["card"] == i and answer["answer"] == said[i] and answer["reader"] == "ann"
        assert isinstance(answer["ms"], int) and answer["ms"] >= 0 and answer["source"]["kind"] in ("real", "fake")
    session = load_session(path)
    assert session.finished and {a.source.model for a in session.answers} == {None, "vae", "gan"}
