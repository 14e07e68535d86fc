"""The report in a real browser (headless Chromium): thumbnails load, the filter hides and shows videos
and shots, sorting, the folder of pages, the inline player with a WebVTT sidecar, and a hostile file
name and label that must show as text and run nothing.

VIDTAG_SCREENSHOT=docs/report.png makes the first test save its screenshot there (the README's picture).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from _browser import chromium, loaded_widths, require_browser
from media import make_video
from vidtag.results.record import Record, named
from vidtag.report import make_report
from vidtag.report.html import all_labels

ROOT = Path(__file__).resolve().parent.parent
EVIL_NAME = "<img src=x onerror=alert(1)>.mp4"
EVIL_LABEL = "</script><script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.dialogs = []  # an alert() from injected script would land here
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    page.close()


@pytest.fixture(scope="module")
def example_records(tmp_path_factory) -> Path:
    """Real records: the default model on the example videos, 4 clips each, their paths relative to
    the records file (as a run started in its folder writes them)."""
    import vidtag

    folder = tmp_path_factory.mktemp("run")
    (folder / "examples").mkdir()
    for video in ROOT.glob("examples/*.mp4"):
        (folder / "examples" / video.name).symlink_to(video)
    records = sorted(vidtag.classify([str(folder / "examples")], clips=4, top_k=3), key=lambda r: r.path)
    for record in records:
        record.path = Path(record.path).relative_to(folder).as_posix()
    assert [r.path for r in records] == ["examples/bigbuckbunny.mp4", "examples/bikes.mp4"]
    assert all(r.ok for r in records)
    path = folder / "tags.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name, frames in (("short.mp4", 32), ("long.mp4", 96), ("mid.mp4", 64)):
        make_video(folder / name, frames=frames, fps=16, width=96, height=64, gop=8)
    return folder


def shot_record(path: Path, duration: float, shots: list[tuple[float, float, str]], **extra) -> dict:
    data = {"path": str(path), "status": "ok", "model": "tiny", "duration": duration,
            "labels": [{"label": shots[0][2], "score": 0.6}],
            "clips": [{"start": 0.0, "end": duration, "labels": [{"label": shots[0][2], "score": 0.6}]}],
            "shots": [{"start": s, "end": e, "labels": [{"label": label, "score": 0.5}]} for s, e, label in shots],
            "segments": [{"label": label, "start": s, "end": e, "score": 0.5} for s, e, label in shots]}
    data.update(extra)
    return data


def write_records(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def shown(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.filter(e => !e.closest('[hidden]')).map(e => e.textContent)")


def test_report_of_the_example_videos(page, example_records, tmp_path, monkeypatch):
    monkeypatch.chdir(example_records.parent)  # as a user runs it: vidtag report tags.jsonl -o report.html
    make_report(Path("tags.jsonl"), Path("report.html"))
    page.goto((example_records.parent / "report.html").as_uri())
    widths = loaded_widths(page)
    assert len(widths) == 8 and all(w > 0 for w in widths)  # 4 clips x 2 videos, every image decoded
    assert shown(page, ".video h2") == ["examples/bigbuckbunny.mp4", "examples/bikes.mp4"]
    assert page.text_content("#count") == "2 of 2 videos"

    bunny, bikes = [Record.from_dict(json.loads(line)) for line in example_records.read_text().splitlines()]
    only_bikes = next(x.label for x in bikes.labels if x.label not in all_labels(bunny))
    page.fill("#filter", only_bikes)
    assert [Path(p).name for p in shown(page, ".video h2")] == ["bikes.mp4"]
    assert page.text_content("#count") == "1 of 2 videos"
    assert all(only_bikes in text for text in shown(page, ".shot figcaption"))  # shots without it hidden
    page.fill("#filter", "")
    assert len(shown(page, ".video h2")) == 2

    # a frequent tag from the summary (the summary counts tags), one the bikes do not have
    chip = next(x.label for x in named(bunny) if x.label not in all_labels(bikes))
    page.click(f'.chip[data-query="{chip}"]')
    assert page.input_value("#filter") == f'"{chip}"'
    assert [Path(p).name for p in shown(page, ".video h2")] == ["bigbuckbunny.mp4"]
    page.fill("#filter", "")
    target = Path(os.environ.get("VIDTAG_SCREENSHOT") or tmp_path / "report.png")
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.dialogs == []


def test_filter_shows_the_shots_that_carry_a_label(page, videos, tmp_path):
    records = write_records(tmp_path / "r.jsonl", [
        shot_record(videos / "long.mp4", 6.0, [(0, 2, "surfing"), (2, 4, "sailing"), (4, 6, "surfing")]),
        shot_record(videos / "short.mp4", 2.0, [(0, 1, "cooking"), (1, 2, "sailing")])])
    make_report(records, tmp_path / "r.html")
    page.goto((tmp_path / "r.html").as_uri())
    assert len(shown(page, ".shot")) == 5
    page.fill("#filter", "surf")  # a part of a label
    assert [Path(p).name for p in shown(page, ".video h2")] == ["long.mp4"]
    assert shown(page, ".shot .when") == ["0:00.0–0:02.0", "0:04.0–0:06.0"]
    assert shown(page, ".row .name") == ["surfing"]
    page.fill("#filter", '"sailing"')
    assert len(shown(page, ".video h2")) == 2 and len(shown(page, ".shot")) == 2
    # the timeline: one row per label, hovering a span shows its score
    page.fill("#filter", "")
    title = page.get_attribute(".video:first-of-type .row .span", "title")
    assert title == "surfing: 0:00.0–0:02.0, score 0.500"
    page.hover(".video:first-of-type .row .span")
    assert page.dialogs == []


def test_sorting(page, videos, tmp_path):
    records = write_records(tmp_path / "r.jsonl", [
        shot_record(videos / "mid.mp4", 4.0, [(0, 4, "b")], labels=[{"label": "b", "score": 0.2}]),
        shot_record(videos / "short.mp4", 2.0, [(0, 2, "a")], labels=[{"label": "a", "score": 0.9}]),
        shot_record(videos / "long.mp4", 6.0, [(0, 6, "c")], labels=[{"label": "c", "score": 0.5}])])
    make_report(records, tmp_path / "r.html")
    page.goto((tmp_path / "r.html").as_uri())

    def order():
        return [Path(p).stem for p in shown(page, ".video h2")]

    assert order() == ["mid", "short", "long"]
    page.select_option("#sort", "duration")
    assert order() == ["long", "mid", "short"]
    page.select_option("#sort", "score")
    assert order() == ["short", "long", "mid"]
    page.select_option("#sort", "path")
    assert order() == ["long", "mid", "short"]
    page.select_option("#sort", "order")
    assert order() == ["mid", "short", "long"]


def test_hostile_name_and_label_show_as_text(page, videos, tmp_path):
    evil = tmp_path / EVIL_NAME
    shutil.copy(videos / "short.mp4", evil)
    records = write_records(tmp_path / "r.jsonl", [
        shot_record(evil, 2.0, [(0, 2, EVIL_LABEL)], labels=[{"label": EVIL_LABEL, "score": 0.9}]),
        {"path": str(tmp_path / ("gone " + EVIL_NAME)), "status": "error", "error": f"cannot read {EVIL_LABEL}",
         "model": "tiny", "labels": [], "clips": []}])
    make_report(records, tmp_path / "r.html")
    page.goto((tmp_path / "r.html").as_uri())
    loaded_widths(page)
    assert page.dialogs == [] and page.evaluate("window.pwned") is None
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], script').length") == 1  # the page's own script
    assert page.text_content(".video h2 a") == str(evil)
    assert page.get_attribute(".video h2 a", "href") == EVIL_NAME.replace("<", "%3C").replace(">", "%3E") \
        .replace(" ", "%20").replace("=", "%3D").replace("(", "%28").replace(")", "%29")
    assert page.evaluate("document.querySelector('.video h2 a').href") == evil.as_uri()
    assert shown(page, ".video .labels .label")[0] == EVIL_LABEL
    assert EVIL_LABEL in page.text_content("#summary") and EVIL_LABEL in page.text_content("#failures")
    page.fill("#filter", "</script>")  # the filter finds a label by its text, markup and all
    assert len(shown(page, ".video h2")) == 1 and page.dialogs == []


def test_folder_of_pages(page, videos, tmp_path):
    names = ["short", "mid", "long", "short", "mid"]
    records = write_records(tmp_path / "r.jsonl", [
        shot_record(videos / f"{n}.mp4", 2.0, [(0, 1, f"label{i}"), (1, 2, "common")]) for i, n in enumerate(names)])
    summary = make_report(records, tmp_path / "rep", per_page=2, workers=2)
    assert summary.pages == 3
    page.goto((tmp_path / "rep" / "index.html").as_uri())
    assert page.text_content("#count") == "3 of 3 pages"
    page.fill("#filter", '"label4"')
    assert shown(page, ".pages a") == ["videos 5–5"]
    page.click(".pages li:not([hidden]) a")
    page.wait_for_load_state("load")
    assert page.url.endswith("page-0003.html#q=%22label4%22")
    assert page.input_value("#filter") == '"label4"'
    assert shown(page, ".shot .when") == ["0:00.0–0:01.0"]
    assert page.get_attribute("nav a[href^='page-0002']", "href") == "page-0002.html#q=%22label4%22"
    page.fill("#filter", "")
    page.click("nav a[href^='page-0002']")
    page.wait_for_load_state("load")
    widths = loaded_widths(page)
    assert len(widths) == 4 and all(w > 0 for w in widths)  # images beside the page, by relative links
    assert [Path(p).name for p in shown(page, ".video h2")] == ["long.mp4", "short.mp4"]


def test_thumbnail_click_plays_the_video_with_its_labels_as_subtitles(page, videos, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(videos / "long.mp4", video)
    (tmp_path / "clip.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:03.000\nsurfing 0.81\n\n"
                                       "00:00:03.000 --> 00:00:06.000\nsailing 0.64\n")
    records = write_records(tmp_path / "r.jsonl", [shot_record(video, 6.0, [(0, 3, "surfing"), (3, 6, "sailing")])])
    make_report(records, tmp_path / "r.html")
    page.goto((tmp_path / "r.html").as_uri())
    page.click(".shot:nth-of-type(2) img")
    page.wait_for_function("() => { const v = document.querySelector('.player video');"
                           " return v && v.readyState >= 1 && v.currentTime >= 3; }", timeout=15000)
    page.wait_for_function("() => document.querySelector('.player track').readyState === 2", timeout=15000)
    state = page.evaluate("""() => { const v = document.querySelector('.player video'), t = v.textTracks[0];
        return {error: v.error && v.error.message, mode: t.mode, cues: Array.from(t.cues).map(c => c.text)}; }""")
    assert state == {"error": None, "mode": "showing", "cues": ["surfing 0.81", "sailing 0.64"]}
    assert page.url == (tmp_path / "r.html").as_uri()  # played in the page, not followed as a link
