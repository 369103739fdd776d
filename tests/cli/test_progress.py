"""The CLI's progress display (gdvision.cli.progress): where it shows, what a line says, stdout kept clean."""

from __future__ import annotations

import pytest

import gdvision.cli.progress as progress


@pytest.mark.parametrize(
    "enabled, tty, env, mode",
    [
        (True, True, "", "bar"),
        (True, False, "", "off"),  # a log or a pipe: no bar unless asked
        (True, False, "1", "lines"),
        (True, True, "0", "off"),
        (False, True, "1", "off"),  # --quiet / --json win over everything
    ],
)
def test_progress_mode(enabled: bool, tty: bool, env: str, mode: str) -> None:
    assert progress.progress_mode(enabled, tty=tty, env={progress.ENV: env}) == mode


def test_lines_name_the_stage_with_counts_and_eta(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    clock = iter([0.0, 2.0, 5.0, 9.0, 21.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "progress_mode", lambda enabled: "lines")
    with progress.progress_bar(True, "sweep") as update:
        update(completed=1, total=5, info="x")  # the stage's first line: printed
        update(completed=2)  # within LINE_EVERY_S of the last line: not printed
        update(description="refine", completed=3, total=4)  # a new stage: printed, with its own clock
        update(info="")  # LINE_EVERY_S later: printed
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "sweep: 1/5 (x) 0:02 elapsed, eta 0:08",
        "refine: 3/4 0:00 elapsed, eta 0:00",
        "refine: 3/4 0:12 elapsed, eta 0:04",
    ]


def test_the_bar_writes_nothing_on_stdout(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(progress, "progress_mode", lambda enabled: "bar")
    with progress.progress_bar(True, "stage 1") as update:
        update(completed=1, total=3, info="loss 1")
        update(description="stage 2", total=None, info="")
        update(advance=1)
    assert capsys.readouterr().out == ""
