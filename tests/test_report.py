"""The run report: escaping of user-provided names, what the page of an unfinished run says,
many classes capped, the evaluator's per-class record, and the page of a real tiny run opened
in headless Chromium (driven over the DevTools protocol on a pipe, with the standard library)."""

import base64
import fcntl
import html
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from gendd.cli import main
from gendd.report import MAX_CLASS_ROWS, write_report
from gendd.sets import DistilledSet, load_set, save_set

NASTY = "<b>T-shirt</b> & \"top\" 'x'"


def gendd(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fake_eval(k: int, ipc: int, names: list[str], mean: float = 61.25, method: str = "gendd",
              rounds=(60.0, 62.5)) -> dict:
    confusion = [[5 if i == j else (1 if j == (i + 1) % k else 0) for j in range(k)]
                 for i in range(k)]
    return {"accuracy": {"mean": mean, "std": 1.25, "rounds": list(rounds)},
            "per_class_accuracy": [100.0 * 5 / 6 - (c % 7) for c in range(k)],
            "confusion": confusion, "model": "convnet", "epochs": 300,
            "protocol": {"train_passes": 301}, "wall_time_s": 12.5, "dataset": "fashion-mnist",
            "num_images": k * ipc, "counts_per_class": [ipc] * k, "flags": [],
            "source": {"kind": "set", "metadata": {"class_names": names, "method": method}}}


def make_run(root, k: int = 10, ipc: int = 2, names=None, evaluated: bool = True,
             stages=("autoencoder", "denoiser"), set_name: str = "ipc2"):
    """A run directory written by hand: config, trained stages (empty folders), a metrics log,
    one set with its samples before refinement, and its evaluation."""
    names = names or [f"class {c}" for c in range(k)]
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": "fashion-mnist",
                                                     "note": "<script>alert(1)</script>"}))
    for stage in stages:
        (run / stage).mkdir()
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"stage": s, "step": t, "loss": 1.0 / t, "lr": 1e-3, "images_per_s": 100.0,
                    **({"fd_classifier": 50.0 - t} if s == "denoiser" and t % 10 == 0 else {})})
        + "\n" for s in stages for t in range(5, 31, 5)))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(k).repeat_interleave(ipc)
    meta = {"dataset": "fashion-mnist", "class_names": names, "ipc": ipc,
            "generation_wall_time_s": 2.0, "images_per_s": 10.0,
            "sampler": {"solver": "dpm++", "steps": 4, "guidance": 2.0}}
    refined = {"refine": {"iterations": 3, "wall_time_s": 1.5}}
    for suffix, extra in ((".sampled", {}), ("", refined)):
        images = torch.randint(0, 256, (k * ipc, 1, 8, 8), generator=g, dtype=torch.uint8)
        save_set(run / "distilled" / f"{set_name}{suffix}.safetensors",
                 DistilledSet(images, labels, {**meta, **extra}))
    if evaluated:
        (run / "eval").mkdir()
        (run / "eval" / f"{set_name}.json").write_text(json.dumps(fake_eval(k, ipc, names)))
    return run


def test_user_provided_names_are_escaped(tmp_path):
    run = make_run(tmp_path, names=[NASTY] + [f"c{c}" for c in range(1, 10)], set_name="a&b")
    assert gendd("report", run).exit_code == 0
    page = (run / "report" / "index.html").read_text()
    assert html.escape(NASTY) in page and "<b>" not in page and NASTY not in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # the configuration
    assert "a&amp;b" in page and 'src="sets/a%26b/class_0.png"' in page
    assert (run / "report" / "sets" / "a&b" / "class_0.png").is_file()
    assert (run / "report" / "grid_a&b.png").is_file()


def test_accuracy_sits_beside_random_real_and_published_figures(tmp_path):
    run = make_run(tmp_path, ipc=10, set_name="ipc10")
    page = (write_report(run) / "index.html").read_text()
    row = page.split("<td>ipc10</td>")[1].split("</tr>")[0]
    assert "61.25 ± 1.25" in row and "60.00, 62.50" in row and "convnet, 300 epochs" in row
    assert "not evaluated" in row and "73.8" in row and "82.3" in row and "84.6" in row
    rnd = fake_eval(10, 10, [f"class {c}" for c in range(10)], mean=70.5, method="random")
    (run / "eval" / "random_ipc10.json").write_text(json.dumps(rnd))
    page = (write_report(run) / "index.html").read_text()
    row = page.split("<td>ipc10</td>")[1].split("</tr>")[0]
    assert "70.50 ± 1.25" in row and "not evaluated" not in row
    assert "| ipc10 |" in (run / "report" / "results.md").read_text()


def test_an_unfinished_run_shows_what_exists_and_says_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("dataset: fashion-mnist\n")
    (run / "autoencoder").mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"stage": "autoencoder", "step": 5,
                                                   "loss": 0.5, "lr": 1e-3}) + "\n{torn")
    r = gendd("report", run)
    assert r.exit_code == 0, r.output
    page = (run / "report" / "index.html").read_text()
    for text in ("autoencoder: trained", "the denoiser is not trained", "no distilled set",
                 "no evaluation yet", "Missing"):
        assert text in page, text
    assert (run / "report" / "curves.png").is_file()


def test_a_set_not_yet_evaluated_or_evaluated_by_an_old_gendd_is_named(tmp_path):
    run = make_run(tmp_path, evaluated=False)
    page = (write_report(run) / "index.html").read_text()
    assert "ipc2 is not evaluated: `gendd evaluate" in page and "no evaluation yet" in page
    old = fake_eval(10, 2, [])
    del old["per_class_accuracy"], old["confusion"]
    (run / "eval").mkdir()
    (run / "eval" / "ipc2.json").write_text(json.dumps(old))
    (run / "distilled" / "ipc2.safetensors").unlink()  # refinement interrupted
    page = (write_report(run) / "index.html").read_text()
    assert "per-class accuracy and confusion not recorded" in page
    assert "ipc2.sampled: its refinement did not finish" in page


def test_two_hundred_classes_stay_capped(tmp_path):
    run = make_run(tmp_path, k=200, ipc=1, names=[f"n{c:03d}" for c in range(200)])
    page = (write_report(run) / "index.html").read_text()
    assert page.count('src="sets/ipc2/class_') == MAX_CLASS_ROWS
    assert "the first 20 of 200 classes" in page and "the 10 worst and the 10 best" in page
    perclass = page.split('id="classes"')[1].split("</section>")[0]
    assert perclass.count("<tr>") == 2 * (10 + 1)  # two tables: a header and 10 classes each
    assert len(page) < 100_000
    mosaic = Image.open(run / "report" / "sets" / "ipc2" / "mosaic.png")
    assert mosaic.height < 2000 and mosaic.width < 2000  # 200 classes, 10 a row


def test_the_evaluator_keeps_per_class_accuracy_and_the_confusion(small_fashion, monkeypatch):
    from gendd.baselines import random_real
    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, evaluate_set

    monkeypatch.setenv("GENDD_COMPILE", "0")
    ds = load_dataset("fashion-mnist", small_fashion)
    r = evaluate_set(random_real(ds, 2, seed=0), ds, challenge_protocol(epochs=2, rounds=2),
                     progress=False)
    confusion = torch.tensor(r["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum(1).tolist() == [2 * 10] * 10
    # the accuracy of the rounds is the confusion's diagonal, as the report shows it
    assert 100 * confusion.diag().sum() / confusion.sum() == pytest.approx(r["accuracy"]["mean"])
    assert r["per_class_accuracy"] == pytest.approx((100 * confusion.diag() / 20).tolist())


# ---------------------------------------------------------------------------------------------
# The page in a real browser

CHECKS = """({
  images: [...document.images].map(i => ({src: i.getAttribute('src'),
                                          ok: i.complete && i.naturalWidth > 0})),
  accuracy: [...document.querySelectorAll('table.accuracy tbody tr')].map(
    tr => [...tr.cells].map(td => td.innerText.trim())),
  text: document.body.innerText,
  bold: document.querySelectorAll('b').length,
})"""


class DevTools:
    """Headless Chromium driven over its DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages ended by NUL, commands on the child's fd 3, replies and events on fd 4)."""

    def __init__(self, binary: str, profile, width: int = 1280, height: int = 900):
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()

        def child_fds():  # via fds >= 10, so that dup2 never overwrites the other pipe end
            a = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buf = b""
        while chunk := os.read(self._from_child, 1 << 16):
            buf += chunk
            *done, buf = buf.split(b"\0")
            for raw in done:
                self.messages.put(json.loads(raw))

    def _next(self, deadline: float) -> dict:
        try:
            msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"Chromium did not answer in time (exit code "
                                 f"{self.proc.poll()})") from None
        if "id" not in msg:
            self.events.append(msg)
        return msg

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while (reply := self._next(deadline)).get("id") != self._next_id:
            pass
        assert "error" not in reply, (method, reply["error"])
        return reply["result"]

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while not any(e["method"] == event for e in self.events):
            self._next(deadline)
        return next(e for e in self.events if e["method"] == event)

    def errors(self) -> list:
        """Uncaught exceptions, console.error calls and error log entries (failed loads)."""
        return [e["params"] for e in self.events
                if e["method"] == "Runtime.exceptionThrown"
                or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass  # it may exit before it answers
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        self._reader.join(timeout=5)
        os.close(self._from_child)


def open_page(binary: str, path, profile) -> tuple[dict, list, list[str], bytes]:
    """Load `path`; returns the CHECKS, the errors, every URL requested and a full-page PNG."""
    browser = DevTools(binary, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Page.navigate", {"url": path.as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        checks = browser.call("Runtime.evaluate", {"expression": CHECKS, "returnByValue": True},
                              session)["result"]["value"]
        shot = browser.call("Page.captureScreenshot",
                            {"format": "png", "captureBeyondViewport": True}, session)["data"]
        urls = [e["params"]["request"]["url"] for e in browser.events
                if e["method"] == "Network.requestWillBeSent"]
        return checks, browser.errors(), urls, base64.b64decode(shot)
    finally:
        browser.close()


@pytest.mark.slow
def test_the_page_of_a_tiny_run_in_headless_chromium(tiny_run, small_fashion, tmp_path,
                                                     monkeypatch):
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("headless-browser check needs Debian's `chromium` (apt-get install chromium; "
                    "scripts/setup.sh installs it where apt is available)")
    monkeypatch.setenv("GENDD_COMPILE", "0")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    r = gendd("distill", "--dataset", "fashion-mnist", "--data-root", small_fashion, "--ipc", 2,
              "--preset", "tiny", "--out", run)
    assert r.exit_code == 0, r.output
    # the same set again, under a crafted class name, with its evaluation
    s = load_set(run / "distilled" / "ipc2.safetensors")
    names = [NASTY] + s.metadata["class_names"][1:]
    save_set(run / "distilled" / "crafted.safetensors",
             DistilledSet(s.images, s.labels, {**s.metadata, "class_names": names}))
    ev = json.loads((run / "eval" / "ipc2.json").read_text())
    ev["source"]["metadata"]["class_names"] = names
    (run / "eval" / "crafted.json").write_text(json.dumps(ev))
    assert gendd("report", run).exit_code == 0

    checks, errors, urls, png = open_page(binary, run / "report" / "index.html",
                                          tmp_path / "profile")
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in urls), urls  # nothing from the network
    assert len(checks["images"]) > 20 and all(i["ok"] for i in checks["images"]), checks["images"]
    rows = {row[0]: row for row in checks["accuracy"]}
    for f in (run / "eval").glob("*.json"):
        acc = json.loads(f.read_text())["accuracy"]
        assert rows[f.stem][2] == f"{acc['mean']:.2f} ± {acc['std']:.2f}"
        assert all(f"{v:.2f}" in rows[f.stem][3] for v in acc["rounds"])
    assert NASTY in checks["text"] and checks["bold"] == 0
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    assert shot.height > 1000 and len(shot.getcolors(1 << 24)) > 100  # not a blank page


def test_a_time_budget_set_shows_the_ipc_reached_and_the_time_spent(tmp_path):
    run = make_run(tmp_path, evaluated=False)
    s = load_set(run / "distilled" / "ipc2.sampled.safetensors")
    meta = {**s.metadata, "time_budget_s": 60.0, "generation_wall_time_s": 58.25, "rounds": 3}
    save_set(run / "distilled" / "budget60s.safetensors", DistilledSet(s.images, s.labels, meta))
    page = (write_report(run) / "index.html").read_text()
    assert "time budget 60 s: IPC 2 reached in 58.2 s (3 rounds)" in page
