"""Drives docstream's web page in Debian's Chromium through its WebDriver:
upload a file, wait for it to land, open it, search and ask; screenshots
at a laptop's and a phone's size.

usage: serve_page.py URL FILE TITLE WORD OUT_DIR
"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

url, path, title, word, out = sys.argv[1:6]

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--window-size=1280,800"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 240)


def by_css(css):
    return wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, css)))


def shot(name):
    time.sleep(0.3)  # let the last layout settle before the picture; not a timing assertion
    driver.save_screenshot(f"{out}/{name}.png")


try:
    driver.get(url)
    assert driver.title == "docstream", driver.title
    # Every state the upload's progress line shows, recorded as it changes.
    driver.execute_script("""
        window.seenStates = [];
        new MutationObserver(() => {
          for (const li of document.querySelectorAll('#jobs li')) {
            const s = li.dataset.state;
            if (window.seenStates[window.seenStates.length - 1] !== s) window.seenStates.push(s);
          }
        }).observe(document.getElementById('jobs'), {childList: true, subtree: true, attributes: true});
    """)
    driver.find_element(By.ID, "file").send_keys(path)
    landed = wait.until(lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, "#docs li a") if a.text == title), None))
    states = driver.execute_script("return window.seenStates")
    print("progress:", states)
    assert states and states[-1] == "landed", states
    assert not driver.find_elements(By.CSS_SELECTOR, "#jobs li"), "the landed upload's progress line stayed"
    landed.click()
    heading = wait.until(lambda d: d.find_element(By.ID, "doc-title").text if d.find_element(By.ID, "doc").is_displayed() else None)
    body = driver.find_element(By.ID, "doc-body").text
    print("document:", heading, "|", body[:200].replace("\n", " / "))
    assert heading == title, heading
    assert "characters" in body, body

    driver.find_element(By.ID, "q").send_keys(word)
    driver.find_element(By.CSS_SELECTOR, "#search-form button").click()
    hit = by_css("#hits li a")
    snippet = driver.find_element(By.CSS_SELECTOR, "#hits li .snippet").text
    assert word.lower() in snippet.lower(), snippet
    print("search:", hit.text, "|", snippet[:120])

    driver.find_element(By.ID, "question").send_keys(f"What does the document say about {word}?")
    driver.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    answer = wait.until(lambda d: d.find_element(By.ID, "answer").text if d.find_element(By.ID, "answer").text not in ("", "Thinking…") else None)
    assert "failed" not in answer.lower() and "error" not in answer.lower(), answer
    cites = driver.find_elements(By.CSS_SELECTOR, "#answer a.cite")
    print("answer:", answer[:300].replace("\n", " / "), "| citations:", len(cites))
    if cites:
        cites[0].click()
        wait.until(lambda d: d.find_element(By.ID, "doc").is_displayed() and "Cited: chunk" in d.find_element(By.ID, "doc-body").text)
    shot("laptop-1280x800")
    driver.execute_script("window.scrollTo(0, 0)")
    shot("laptop-top-1280x800")

    driver.set_window_size(390, 844)
    driver.execute_script("window.scrollTo(0, 0)")
    shot("phone-390x844")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
    print("ok")
finally:
    driver.quit()
