"""The autocorrect experiment: its typo generator, and quick mode end to end."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest

from rnnbptt import cli

WORDS = ["desert", "the", "a", "spelling", "address", "keyboard", "queue"]


@pytest.fixture(scope="module")
def autocorrect():
    return importlib.import_module("rnnbptt.experiments.autocorrect")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def differing(a: str, b: str) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_keyboard_neighbours_are_symmetric_and_local(autocorrect):
    near = autocorrect.NEIGHBOURS
    assert set(near) == set(autocorrect.ALPHABET)
    assert set(near["s"]) == set("adwezx")
    assert set(near["g"]) == set("fhtyvb")
    assert set(near["q"]) == set("wa")
    for key, others in near.items():
        assert key not in others
        for other in others:
            assert key in near[other]


def test_substitution_uses_a_keyboard_neighbour(autocorrect, rng):
    for word in WORDS * 20:
        wrong = autocorrect.typo(word, "substitute", rng)
        (i,) = differing(wrong, word)  # same length, exactly one letter changed
        assert wrong[i] in autocorrect.NEIGHBOURS[word[i]]


def test_deletion_removes_one_letter(autocorrect, rng):
    for word in WORDS * 20:
        wrong = autocorrect.typo(word, "delete", rng)
        if len(word) == 1:  # nothing to delete: a substitution instead
            assert len(wrong) == 1 and wrong in autocorrect.NEIGHBOURS[word]
            continue
        assert len(wrong) == len(word) - 1
        assert any(word[:i] + word[i + 1 :] == wrong for i in range(len(word)))


def test_insertion_adds_a_repeated_or_neighbouring_letter(autocorrect, rng):
    kinds = set()
    for word in WORDS * 20:
        wrong = autocorrect.typo(word, "insert", rng)
        assert len(wrong) == len(word) + 1
        ok = False
        for i in range(len(wrong)):
            if wrong[:i] + wrong[i + 1 :] != word:
                continue
            adjacent = {wrong[j] for j in (i - 1, i + 1) if 0 <= j < len(wrong)}
            if wrong[i] in adjacent:
                ok = True
                kinds.add("repeat")
            if any(wrong[i] in autocorrect.NEIGHBOURS[a] for a in adjacent):
                ok = True
                kinds.add("neighbour")
        assert ok, (word, wrong)
    assert kinds == {"repeat", "neighbour"}


def test_transposition_swaps_two_adjacent_letters(autocorrect, rng):
    for word in WORDS * 20:
        wrong = autocorrect.typo(word, "transpose", rng)
        if len(word) == 1:  # nothing to swap: a substitution instead
            assert wrong in autocorrect.NEIGHBOURS[word]
            continue
        assert sorted(wrong) == sorted(word)  # the same letters
        changed = differing(wrong, word)
        assert changed == [] or (len(changed) == 2 and changed[1] == changed[0] + 1)
        if changed:
            i = changed[0]
            assert (wrong[i], wrong[i + 1]) == (word[i + 1], word[i])


def test_misspell_makes_zero_one_or_two_errors(autocorrect, rng):
    assert autocorrect.misspell("desert", rng, clean=1.0, double=0.0) == "desert"
    one = [autocorrect.misspell("keyboard", rng, 0.0, 0.0) for _ in range(200)]
    assert all(abs(len(w) - 8) <= 1 for w in one)
    assert all(w != "keyboard" for w in one)  # no doubled letter to swap in place
    two = [autocorrect.misspell("keyboard", rng, 0.0, 1.0) for _ in range(200)]
    assert all(abs(len(w) - 8) <= 2 for w in two)
    with pytest.raises(ValueError, match="kind"):
        autocorrect.typo("desert", "swap", rng)


def test_errors_at_the_start(autocorrect, rng):
    typo = autocorrect.typo
    for _ in range(20):
        wrong = typo("desert", "substitute", rng, at_start=True)
        assert wrong[1:] == "esert" and wrong[0] in autocorrect.NEIGHBOURS["d"]
        assert typo("desert", "insert", rng, at_start=True)[1:] == "desert"
    assert typo("desert", "delete", rng, at_start=True) == "esert"
    assert typo("desert", "transpose", rng, at_start=True) == "edsert"
    starts = {
        autocorrect.misspell("keyboard", rng, 0.0, 0.0, start=1.0)[:2]
        for _ in range(100)
    }
    assert "ke" not in starts  # every single error touches the first two letters


def test_encode_is_one_hot_and_right_padded(autocorrect):
    xs, mask = autocorrect.encode(["ab", "zzz"], 4)
    assert xs.shape == (2, 4, 26) and xs.dtype == np.float32
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(xs.sum(-1), mask)
    assert xs[0, 1, 1] == 1 and xs[1, 2, 25] == 1


def test_autocorrect_quick(tmp_path, capsys):
    code = cli.main(["experiment", "autocorrect", "--quick", "--out", str(tmp_path)])
    assert code == 0
    out = tmp_path / "autocorrect"
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "training_curve.png",
        "accuracy.png",
    ):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    accuracy = summary["accuracy"]
    for value in accuracy.values():
        assert 0.0 <= value <= 1.0
    # a few hundred words: chance is 1/300; the quick run reaches about 0.75
    assert summary["chance"] == 1 / summary["vocabulary"]
    assert accuracy["heldout_synthetic"] > 0.4
    for name in ("set1", "set2"):
        assert accuracy[name] <= summary["upper_bound"][name] + 1e-12
        assert summary["out_of_vocabulary"][name] > 0
    assert set(summary["examples_top3"]) >= {"sesert"}
    for top in summary["examples_top3"].values():
        assert len(top) == 3
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-3
    history = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(history["loss"]).all()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["heldout_accuracy"].between(0, 1).all()
    assert "heldout_synthetic" in capsys.readouterr().out
