from functools import partial

import pytest

from stack.errors import ConfigError
from stack.options import (as_bool, as_choice, as_duration, as_float, as_int, as_list,
                           as_size, as_str, check_bool, convert_options)


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("Yes", True), (" on ", True), ("1", True),
    ("false", False), ("NO", False), ("off", False), ("0", False), ("", False),
    (True, True), (False, False),
])
def test_bool(text, expected):
    assert as_bool(text, "debug") is expected


@pytest.mark.parametrize("text", ["maybe", "2", "truee", None, 1])
def test_bool_rejects(text):
    with pytest.raises(ConfigError) as info:
        as_bool(text, "debug")
    message = str(info.value)
    assert "'debug'" in message and repr(text) in message and "boolean" in message
    assert info.value.option == "debug" and info.value.value == text


@pytest.mark.parametrize("value", [True, False])
def test_check_bool(value):
    assert check_bool(value, "debug") is value


@pytest.mark.parametrize("value", ["false", "true", "", 0, 1, None, [], "no"])
def test_check_bool_rejects_non_bools(value):
    # the Python side takes real bools only: the truthy string "false" is no True
    with pytest.raises(ValueError) as info:
        check_bool(value, "honor_pi")
    assert str(info.value) == f"option 'honor_pi': expected True or False, got {value!r}"


@pytest.mark.parametrize("text, expected", [("12", 12), (" -3 ", -3), ("1_000", 1000), (7, 7)])
def test_int(text, expected):
    assert as_int(text, "n") == expected


def test_int_bounds_and_errors():
    level = partial(as_int, minimum=1, maximum=9)
    assert level("9", "level") == 9
    with pytest.raises(ConfigError, match=r"'level': got '10', expected an integer between 1 and 9"):
        level("10", "level")
    with pytest.raises(ConfigError, match=r">= 0"):
        as_int("-1", "n", minimum=0)
    with pytest.raises(ConfigError, match="an integer"):
        as_int("1.5", "n")
    with pytest.raises(ConfigError):
        as_int(True, "n")


def test_float():
    assert as_float("2.5", "t") == 2.5
    assert as_float(3, "t") == 3.0
    for bad in ("abc", "nan", "inf"):
        with pytest.raises(ConfigError, match="'t'"):
            as_float(bad, "t")
    with pytest.raises(ConfigError, match="<= 1"):
        as_float("2", "t", maximum=1)


@pytest.mark.parametrize("text, expected", [
    ("512", 512), ("64KB", 65536), ("64kb", 65536), ("1K", 1024), ("2KiB", 2048),
    ("10MB", 10 * 1024**2), ("1.5M", int(1.5 * 1024**2)), ("1GB", 1024**3), ("3 B", 3), (99, 99),
])
def test_size(text, expected):
    assert as_size(text, "max_bytes") == expected


@pytest.mark.parametrize("text", ["10XB", "MB", "-5", "1e3", "ten"])
def test_size_rejects(text):
    with pytest.raises(ConfigError, match=r"'max_bytes'.*a size such as") as info:
        as_size(text, "max_bytes")
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("2.5", 2.5),
    ("250us", 0.00025), ("1d", 86400.0), (1.5, 1.5), ("10 min", 600.0),
])
def test_duration(text, expected):
    assert as_duration(text, "timeout") == pytest.approx(expected)


@pytest.mark.parametrize("text", ["soon", "5 parsecs", "-1s", ""])
def test_duration_rejects(text):
    with pytest.raises(ConfigError, match=r"'timeout'.*a duration"):
        as_duration(text, "timeout")


@pytest.mark.parametrize("text, expected", [
    ("a b c", ["a", "b", "c"]), ("a, b,c", ["a", "b", "c"]), ("a\n  b\n", ["a", "b"]),
    ("", []), (["x", "y"], ["x", "y"]),
])
def test_list(text, expected):
    assert as_list(text, "names") == expected


def test_list_rejects_non_text():
    with pytest.raises(ConfigError, match="'names'"):
        as_list(5, "names")


def test_choice():
    pick = partial(as_choice, choices=("round_robin", "random"))
    assert pick("RANDOM", "balance") == "random"
    with pytest.raises(ConfigError, match=r"'balance': got 'fastest', expected one of round_robin, random"):
        pick("fastest", "balance")


def test_str():
    assert as_str("  x ", "name") == "x"


def test_convert_options_converts_and_rejects_unknown():
    table = {"level": partial(as_int, minimum=1, maximum=9), "min_size": as_size}
    assert convert_options({"level": "6", "min_size": "1KB"}, table) == {"level": 6, "min_size": 1024}
    with pytest.raises(ConfigError) as info:
        convert_options({"levle": "6"}, table)
    message = str(info.value)
    assert "unknown option 'levle'" in message
    assert "did you mean 'level'?" in message and "known: level, min_size" in message
    assert info.value.option == "levle"
