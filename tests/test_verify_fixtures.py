"""Every committed fixture round-trips through its default targets (the formats whose writers
declare no loss) unchanged, and through every other format as declared loss, a refusal asking
for a template, or unchanged: never an undeclared difference. No TensorFlow needed."""
import os

import pytest

from weightkit.converters.registry import FORMATS, load
from weightkit.diffing.verify import verify

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
# One or two fixtures of every format, with and without optimizer state.
SAMPLE = ["mlp--keras3.ckpt", "mlp--keras3.keras", "mlp--keras3.weights.h5",
          "mlp--keras3-sharded.weights.json", "mlp--tfkeras-full.h5", "mlp--tfkeras-weights.h5",
          "mlp--tfkeras-savedmodel", "tf1--partitioned.ckpt", "int8--keras3.weights.h5",
          "dense--tf-savedmodel"]


@pytest.mark.parametrize("name", SAMPLE)
def test_default_targets_are_identical(name):
    with load(os.path.join(FIXTURES, name)) as store:
        trips = verify(store)
    assert trips and trips[0].via == store.format
    assert {t.status for t in trips} <= {"identical", "skipped"}, \
        [(t.via, t.status, t.differences, t.error) for t in trips]


@pytest.mark.parametrize("name", SAMPLE)
def test_every_target_declares_what_it_loses(name):
    with load(os.path.join(FIXTURES, name)) as store:
        trips = verify(store, list(FORMATS))
    for t in trips:
        assert t.status != "different", (t.via, t.differences)
        if t.status in ("identical", "lossy"):
            assert (t.status == "lossy") == bool(t.lost), (t.via, t.status, t.lost)
        if t.status == "failed":  # only a writer that needs a template, saying so
            assert "--like" in t.error, (t.via, t.error)
    lossy = {t.via: t.lost for t in trips if t.status == "lossy"}
    assert lossy, "every fixture loses something in some format"
    if store.format != "tf-checkpoint" and "tf-checkpoint" in lossy:
        assert any("structure" in text or "graph" in text or "archive" in text
                   for text in lossy["tf-checkpoint"]), lossy["tf-checkpoint"]
