from agent.review_priority import ReviewSignal, doubt_key, expected_values, order_for_review


def test_doubt_key_is_the_unordered_pair() -> None:
    assert doubt_key(ReviewSignal(0.5, "a", "b")) == doubt_key(ReviewSignal(0.4, "b", "a")) == "a|b"
    assert doubt_key(ReviewSignal(0.0, None)) == "-"


def test_uncertain_before_confident_and_close_split_before_clear_one() -> None:
    sure = ReviewSignal(0.95, "a", "b", 0.02)
    close = ReviewSignal(0.45, "c", "d", 0.44)
    clear = ReviewSignal(0.45, "e", "f", 0.05)
    values = expected_values([sure, close, clear])
    assert values[1] > values[2] > values[0]


def test_shared_doubt_and_rare_class_raise_value() -> None:
    lone = ReviewSignal(0.5, "x", "y", 0.3)
    crowd = [ReviewSignal(0.5, "a", "b", 0.3) for _ in range(5)]
    values = expected_values([lone, *crowd])
    assert values[1] > values[0]
    rare, common = ReviewSignal(0.5, "r", "s", 0.3), ReviewSignal(0.5, "c", "d", 0.3)
    v = expected_values([rare, common], {"r": 0, "s": 50, "c": 50, "d": 50})
    assert v[0] > v[1]


def test_order_spreads_a_batch_over_doubts() -> None:
    crowd = [ReviewSignal(0.4, "a", "b", 0.35) for _ in range(10)]
    other = ReviewSignal(0.45, "c", "d", 0.3)
    order = order_for_review([*crowd, other], limit=4)
    assert 10 in order  # the other doubt gets in before the crowd's fifth copy
    assert len(order) == 4 and len(set(order)) == 4
    full = order_for_review([*crowd, other])
    assert sorted(full) == list(range(11))


def test_empty_and_limit_zero() -> None:
    assert order_for_review([]) == []
    assert order_for_review([ReviewSignal(0.1, "a")], limit=0) == []
