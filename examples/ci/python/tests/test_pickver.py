from pickver import newest, releases


def test_orders_numerically():
    assert newest(["1.9.0", "1.10.0", "1.2.0"]) == "1.10.0"


def test_skips_pre_releases():
    assert newest(["2.0.0rc1", "1.4.2"]) == "1.4.2"


def test_skips_what_does_not_parse():
    assert releases(["banana", "0.1"]) == ["0.1"]


def test_normalises():
    assert releases(["1.0.0-post1"]) == ["1.0.0.post1"]


def test_nothing_to_pick():
    assert newest([]) is None
