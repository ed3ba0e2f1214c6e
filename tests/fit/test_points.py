"""Fit input: load_csv, check_points, parse_map, parse_at."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweep.errors import DataError, InputError
from sweep.fit import check_points, load_csv, parse_at, parse_map

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()
CHINCHILLA = DATA / "chinchilla_hoffmann2022_epoch.csv"


def write(tmp_path: Path, text: str, name: str = "points.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "params,tokens,loss\n1e6,1e9,3.5\n2e6,2e9,3.1\n4e6,4e9,2.9\n"


def test_load_plain(tmp_path: Path) -> None:
    df = load_csv(write(tmp_path, GOOD))
    assert list(df.columns) == ["params", "tokens", "flops", "loss"]
    assert (df.dtypes == "float64").all()
    assert df["flops"].tolist() == pytest.approx([6e15, 24e15, 96e15])


def test_load_mapped_flops_become_tokens(tmp_path: Path) -> None:
    p = write(tmp_path, "Model Size,Training FLOP,loss,junk\n1e6,6e15,3.5,x\n2e6,24e15,3.1,y\n")
    df = load_csv(p, parse_map("params=Model Size,flops=Training FLOP"))
    assert df["tokens"].tolist() == pytest.approx([1e9, 2e9])
    assert df["flops"].tolist() == pytest.approx([6e15, 24e15])


def test_load_chinchilla_file() -> None:
    df = load_csv(CHINCHILLA, {"params": "Model Size", "flops": "Training FLOP"})
    assert len(df) == 245
    assert (6 * df["tokens"] * df["params"]).tolist() == pytest.approx(df["flops"].tolist())
    raw = pd.read_csv(CHINCHILLA)
    assert df["flops"].tolist() == pytest.approx(raw["Training FLOP"].tolist(), rel=1e-12)


def test_tokens_win_over_flops_that_agree(tmp_path: Path) -> None:
    df = load_csv(write(tmp_path, "params,tokens,flops,loss\n1e6,1e9,7e15,3.0\n"))
    assert df["flops"].iloc[0] == pytest.approx(6e15)
    with pytest.raises(DataError, match=r"points.csv: FLOPs at line 2 are 1.67e-16x"):
        load_csv(write(tmp_path, "params,tokens,flops,loss\n1e6,1e9,1,3.0\n"))


@pytest.mark.parametrize(
    "text, mapping, needles",
    [
        ("params,loss\n1,2\n", None, ["missing column 'tokens' or 'flops'"]),
        ("tokens,loss\n1,2\n", None, ["missing column 'params'"]),
        (GOOD, {"params": "Model Size"}, ["missing column 'Model Size'"]),
        ("params,tokens,loss\n1e6,1e9,3\n2e6,abc,3\n", None, ["data row 2", "'tokens'", "abc",
                                                             "not a number"]),
        ("params,tokens,loss\n1e6,1e9,3\n2e6,2e9,NaN\n", None, ["data row 2", "'loss'", "NaN"]),
        ("params,tokens,loss\n1e6,1e9,3\n2e6,,3\n", None, ["data row 2", "'tokens'", "missing"]),
        ("params,tokens,loss\n1e6,1e9,3\n-2e6,2e9,3\n", None, ["data row 2", "'params'",
                                                             "not positive"]),
        ("params,tokens,loss\n0,1e9,3\n", None, ["data row 1", "'params'", "not positive"]),
        ("params,tokens,loss\n1e6,inf,3\n", None, ["data row 1", "'tokens'", "infinite"]),
        ("params,tokens,loss\n", None, ["no data rows"]),
        ("", None, ["empty"]),
        ("M,C,loss\n1e6,x,3\n", {"params": "M", "flops": "C"}, ["data row 1", "'C' (flops)"]),
    ],
)
def test_load_errors(tmp_path: Path, text: str, mapping: dict | None, needles: list[str]) -> None:
    p = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(p, mapping)
    msg = str(err.value)
    assert "\n" not in msg and str(p) in msg
    for needle in needles:
        assert needle in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a file"):
        load_csv(tmp_path)


def test_error_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_csv(tmp_path / "nope.csv")


def test_check_points_dataframe() -> None:
    df = check_points(pd.DataFrame({"params": [1e6, 2e6], "flops": [6e15, 24e15],
                                    "loss": [3.0, 2.9]}))
    assert df["tokens"].tolist() == pytest.approx([1e9, 2e9])
    bad = pd.DataFrame({"params": [1e6, 2e6], "tokens": [1e9, float("nan")], "loss": [3, 2]})
    with pytest.raises(DataError, match=r"row 2, column 'tokens'"):
        check_points(bad)
    with pytest.raises(DataError, match="missing column 'loss'"):
        check_points(pd.DataFrame({"params": [1.0], "tokens": [1.0]}))


def test_check_points_does_not_modify_input() -> None:
    df = pd.DataFrame({"params": [1, 2], "tokens": [3, 4], "loss": [5, 6]})
    check_points(df)
    assert list(df.columns) == ["params", "tokens", "loss"]


def test_parse_map_good() -> None:
    assert parse_map("params=Model Size,flops=Training FLOP,loss=loss") == {
        "params": "Model Size", "flops": "Training FLOP", "loss": "loss"}
    assert parse_map(' params = "Model Size" , tokens=D') == {"params": "Model Size",
                                                               "tokens": "D"}


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("size=Model Size", "unknown name 'size'"),
    ("params", "not NAME=COLUMN"),
    ("params=", "not NAME=COLUMN"),
    ("params=a,params=b", "twice"),
])
def test_parse_map_bad(text: str, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        parse_map(text)


def test_parse_at_good() -> None:
    assert parse_at("params=7e10,tokens=1.4e12") == (7e10, 1.4e12)
    n, d = parse_at("params=7e10, flops=5.88e23")
    assert n == 7e10 and d == pytest.approx(1.4e12, rel=1e-12)


@pytest.mark.parametrize("text, needle", [
    ("tokens=1e9", "params=N is missing"),
    ("params=1e6", "exactly one of tokens"),
    ("params=1e6,tokens=1e9,flops=6e15", "exactly one of tokens"),
    ("params=big,tokens=1e9", "'big' is not a number"),
    ("params=-1,tokens=1e9", "not a positive finite"),
    ("params=1e6,tokens=inf", "not a positive finite"),
    ("params=1e6,steps=3", "unknown name 'steps'"),
    ("params=1e6,params=2e6,tokens=1", "twice"),
    ("params 1e6", "not NAME=VALUE"),
])
def test_parse_at_bad(text: str, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        parse_at(text)
