"""The progress line: drawn only on a terminal, counts every byte a store's tensors read."""
from __future__ import annotations

import io

import numpy as np

from weightkit.cli import progress
from weightkit.cli.progress import Progress, data_bytes, tracked
from weightkit.converters.store import Store, Tensor


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def store() -> Store:
    return Store.from_arrays({"a": np.arange(1000, dtype=np.float32), "b": np.ones((30, 7))})


def test_counts_reads_by_chunk_and_by_index(monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    out = Terminal()
    s = store()
    with Progress("convert", data_bytes(s), out) as bar:
        counted = tracked(s, bar.advance)
        chunks = list(counted["a"].iter_chunks(512))
        whole = counted["b"].read()
        assert bar.done == data_bytes(s)
    assert np.array_equal(np.concatenate(chunks), s["a"].read()) and np.array_equal(whole, s["b"].read())
    text = out.getvalue()
    assert "convert [" in text and "100%" in text and text.endswith("\r\x1b[K")
    assert counted.format == s.format and list(counted) == list(s)


def test_silent_when_not_a_terminal_or_short(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with Progress("diff", 10, out) as bar:
        bar.advance(10)
    assert out.getvalue() == ""
    tty = Terminal()
    monkeypatch.setattr(progress, "DELAY", 60.0)
    with Progress("diff", 10, tty) as bar:  # done before the delay: never drawn
        bar.advance(10)
    assert tty.getvalue() == ""


def test_tracked_tensor_keeps_meta_and_lazy_edits():
    s = Store({"w": Tensor.from_array(np.arange(6.0), {"role": "optimizer", "key": "k"})})
    seen = []
    t = tracked(s, seen.append)["w"]
    assert t.role == "optimizer" and t.meta["key"] == "k"
    assert np.array_equal(t.map(lambda x: x * 2)[1:3], [2.0, 4.0]) and seen == [16]


def test_a_line_that_is_never_drawn_leaves_the_store_as_it_is():
    s = store()
    with Progress("verify", data_bytes(s), io.StringIO()) as bar:
        assert tracked(s, bar) is s
    with Progress("verify", data_bytes(s), Terminal(), enabled=False) as bar:
        assert tracked(s, bar) is s
    with Progress("verify", data_bytes(s), Terminal()) as bar:
        counted = tracked(s, bar)
        counted["a"].read()
        assert counted is not s and bar.done == s["a"].nbytes


def test_sizes_are_in_the_unit_that_fits_the_total(monkeypatch):
    """A small file showed `0.0/0.0 GB`: done and total share the unit the total reads best in
    (the units `show` gives sizes in), the rate has its own."""
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    for total, done, sizes in ((800, 400, "400/800 B"), (48_000, 12_000, "11.7/46.9 KiB"),
                               (3 << 20, 1 << 20, "1.0/3.0 MiB"),
                               (5 << 30, 1 << 29, "0.5/5.0 GiB")):
        out = Terminal()
        with Progress("show", total, out) as bar:
            bar.advance(done)
            line = out.getvalue()
        assert f"  {sizes}  " in line and line.endswith("/s\x1b[K"), line
