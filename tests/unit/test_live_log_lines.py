"""``plait logs --follow`` prints whole lines, each headed by its attempt, from chunks of several attempts."""

from __future__ import annotations

from plait_cli.logs import LineJoiner


def test_a_line_split_across_chunks_is_printed_once_whole_and_attempts_do_not_mix() -> None:
    lines = LineJoiner()
    assert lines.feed("a", "a | ", "one\ntw", ended=False) == "a | one\n"
    assert lines.feed("b", "b | ", "left", ended=False) == ""
    assert lines.feed("a", "a | ", "o\n", ended=False) == "a | two\n"
    assert lines.feed("b", "b | ", " over", ended=True) == "b | left over\n"  # its attempt ended: no more is coming
    assert lines.feed("a", "a | ", "", ended=True) == ""
