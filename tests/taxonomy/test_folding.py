"""taxonomy.folding: the one folding every matcher uses (validator, extractor, LLM step)."""

from __future__ import annotations

import random

from taxonomy.folding import fold, fold_with_offsets

_ALPHABET = "aZ 9-\t\n\x00\x7f\u00ad\u200b\u00a0ß\u00e9e\u0301ＡﬁİΣ'\""


def test_fold_is_the_offsets_text_stripped_on_the_ascii_fast_path_and_off_it() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))
        folded, index = fold_with_offsets(text)
        assert fold(text) == folded.strip()
        assert len(index) == len(folded) and index == sorted(index)
        assert all(0 <= i < len(text) for i in index)
        ascii_only = "".join(c for c in text if c.isascii())
        slow = fold_with_offsets(ascii_only)[0].strip()
        assert fold(ascii_only) == slow  # the fast path folds as the general one does


def test_what_folding_does() -> None:
    assert fold("  Levi\u00ad's\u200b  501\t\nJEANS ") == "levi's 501 jeans"  # format chars dropped
    assert fold("ＡＢＣ ﬁne") == "abc fine"  # NFKC
    assert fold("Straße") == fold("STRASSE") == "strasse"  # casefold, not lower
    assert fold("a\x00b\x7fc") == "a b c"  # controls are spaces
    folded, index = fold_with_offsets("Ａ  b")
    assert folded == "a b" and index == [0, 1, 3]  # each folded char points into the input
