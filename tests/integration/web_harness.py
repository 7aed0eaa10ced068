"""callwarden web in integration tests: the page's process, users, a real headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from callwarden.store import Store
from callwarden.web import db
from callwarden.web.users import hash_password
from tests.integration.harness import DaemonProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,860",
)
PASSWORD = "lab password 123"
T = TypeVar("T")


@dataclass
class WebProcess(DaemonProcess):
    """``callwarden web`` as a real process (its JSON log as the daemon's)."""

    def start(self) -> WebProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callwarden", "web", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True, name="web-log-reader").start()
        return self


def add_users(store_path: Path, *users: tuple[str, str, str | None, str | None]) -> None:
    """(username, role, team, phone) each, with ``PASSWORD``."""
    password_hash = hash_password(PASSWORD)
    with Store.open(str(store_path)) as store:
        for username, role, team, phone in users:
            values = {"username": username, "role": role, "team": team, "phone": phone, "language": "en"}
            db.add_user(store, values=values | {"password_hash": password_hash, "created": datetime.now(UTC)})


@contextmanager
def browser() -> Iterator[WebDriver]:
    """Debian's Chromium, headless, driven by Debian's chromedriver (nothing downloaded)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise RuntimeError("chromium and chromium-driver are not installed: run scripts/setup")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: WebDriver, base: str, username: str, password: str = PASSWORD) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    # The answer's page: signed in (a sign-out button) or refused (an error). The fresh /login
    # above has neither, so nothing of it is mistaken for the answer.
    WebDriverWait(driver, 20).until(
        lambda d: d.find_elements(By.ID, "logout") or d.find_elements(By.ID, "login-error"),
        "no answer to the sign-in within 20 s",
    )


def wait_for(driver: WebDriver, css: str, timeout: float = 20) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, css), f"no {css} within {timeout}s")


def screenshot(driver: WebDriver, name: str, tmp: Path) -> None:
    """Into the test's directory, and into CALLWARDEN_WEB_SCREENSHOTS (docs/web) when set."""
    for folder in filter(None, (tmp, os.environ.get("CALLWARDEN_WEB_SCREENSHOTS"))):
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def _retry_stale(action: Callable[[], T], tries: int = 10) -> T:
    """The live list replaces its rows when anything changes: an element found a moment ago may
    be gone; find it again."""
    for _ in range(tries - 1):
        try:
            return action()
        except StaleElementReferenceException:
            continue
    return action()


def text_of(driver: WebDriver, css: str) -> str:
    return _retry_stale(lambda: str(driver.find_element(By.CSS_SELECTOR, css).text))


def click(driver: WebDriver, css: str) -> None:
    _retry_stale(lambda: driver.find_element(By.CSS_SELECTOR, css).click())
