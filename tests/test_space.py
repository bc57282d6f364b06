"""SearchSpace, Float, Int, Categorical: validation, the encoder, JSON, bounds, ConfigSpace in."""

from __future__ import annotations

import dataclasses
import doctest
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import metaprior.space
from metaprior.errors import ConfigError, InputDataError
from metaprior.space import (
    Categorical,
    Float,
    Int,
    SearchSpace,
    box_from_unit,
    box_to_unit,
)

# YAHPO's data: $METAPRIOR_YAHPO_DATA (the Makefile sets it; the library never guesses a path).
YAHPO = Path(os.environ.get("METAPRIOR_YAHPO_DATA", ""))


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace([
        Float("lr", 1e-5, 1e-1, log=True),
        Int("layers", 1, 5),
        Int("units", 16, 1024, log=True),
        Categorical("opt", ["adam", "sgd", "rmsprop"]),
        Float("dropout", 0.0, 0.5),
    ])


ROWS = [
    {"lr": 1e-3, "layers": 3, "units": 128, "opt": "sgd", "dropout": 0.25},
    {"lr": 1e-5, "layers": 1, "units": 1024, "opt": "rmsprop", "dropout": 0.5},
]
ENCODED = [[0.5, 0.5, 0.5, 0, 1, 0, 0.5], [0, 0, 1, 0, 0, 1, 1]]


def test_module_docstring_examples_run():
    assert doctest.testmod(metaprior.space).failed == 0


# ---- Validation of the definitions
@pytest.mark.parametrize("make, message", [
    (lambda: Float("a", 1, 1), "lower must be below upper (got lower=1.0, upper=1.0)"),
    (lambda: Float("a", 2, 1), "lower=2.0, upper=1.0"),
    (lambda: Float("a", 0, 1, log=True), "log=True needs lower > 0 (got lower=0.0)"),
    (lambda: Float("a", -1, 1, log=True), "got lower=-1.0"),
    (lambda: Float("a", float("nan"), 1), "lower must be a finite number (got nan)"),
    (lambda: Float("a", 0, float("inf")), "upper must be a finite number (got inf)"),
    (lambda: Float("a", "0", 1), "got '0'"),
    (lambda: Float("a", True, 2), "got True"),
    (lambda: Float("a", 0, 1, log="yes"), "log must be True or False (got 'yes')"),
    (lambda: Float("", 0, 1), "non-empty string (got '')"),
    (lambda: Float(3, 0, 1), "non-empty string (got 3)"),
    (lambda: Int("k", 1.5, 3), "Int 'k': lower must be an integer (got 1.5)"),
    (lambda: Int("k", 3, 3), "lower must be below upper (got lower=3, upper=3)"),
    (lambda: Int("k", 0, 10, log=True), "log=True needs lower > 0 (got lower=0)"),
    (lambda: Categorical("c", []), "choices must not be empty"),
    (lambda: Categorical("c", ["a", "b", "a"]), "duplicate choice 'a' (at positions 0 and 2)"),
    (lambda: Categorical("c", [1, 1.0]), "duplicate choice 1.0"),
    (lambda: Categorical("c", "abc"), "choices must be a list of levels (got 'abc')"),
    (lambda: Categorical("c", [None]), "got None of type NoneType"),
    (lambda: Categorical("c", [float("nan")]), "got nan"),
    (lambda: Categorical("c", [[1, 2]]), "got [1, 2]"),
    (lambda: SearchSpace([]), "at least one parameter"),
    (lambda: SearchSpace([Float("a", 0, 1), Int("a", 0, 3)]), "duplicate parameter name 'a'"),
    (lambda: SearchSpace([Float("a", 0, 1), "b"]),
     "parameter 1 must be a Float, Int or Categorical (got 'b')"),
    (lambda: SearchSpace(Float("a", 0, 1)), "takes a list of parameters"),
])
def test_invalid_definitions_name_the_value(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)


def test_definitions_are_normalised_and_frozen():
    k = Int("k", 1.0, np.int64(5))
    assert (k.lower, k.upper) == (1, 5) and type(k.lower) is int and type(k.upper) is int
    f = Float("f", np.float32(0.5), 2)
    assert type(f.lower) is float and f.upper == 2.0
    c = Categorical("c", np.array(["a", "b"]))
    assert c.choices == ("a", "b") and all(type(x) is str for x in c.choices)
    assert Categorical("t", [True, 1, "1"]).width == 3  # kinds keep levels apart
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.lower = 0.0  # type: ignore[misc]


def test_equality_is_by_value_and_kind():
    assert Float("a", 0, 1) == Float("a", 0.0, 1.0) and hash(Float("a", 0, 1)) == hash(Float("a", 0.0, 1.0))
    assert Float("a", 1, 4) != Int("a", 1, 4)
    assert Categorical("c", [1, 2]) == Categorical("c", [1.0, 2.0])
    assert hash(Categorical("c", [1, 2])) == hash(Categorical("c", [1.0, 2.0]))
    assert Categorical("c", [True, False]) != Categorical("c", [1, 0])
    assert Categorical("c", ["a", "b"]) != Categorical("c", ["b", "a"])
    assert SearchSpace([Float("a", 0, 1)]) == SearchSpace((Float("a", 0.0, 1.0),))


def test_repr_is_readable(space):
    text = repr(space)
    assert text.splitlines()[0] == "SearchSpace(["
    assert "    Float('lr', 1e-05, 0.1, log=True)," in text
    assert "    Int('layers', 1, 5)," in text
    assert "    Categorical('opt', ['adam', 'sgd', 'rmsprop'])," in text
    long = repr(Categorical("task", [str(i) for i in range(40)]))
    assert long == "Categorical('task', ['0', '1', '2', '3', '4', '5', ... (40 in all)])"


def test_shape_properties(space):
    assert space.names == ["lr", "layers", "units", "opt", "dropout"]
    assert (space.dim, space.encoded_dim, len(space)) == (5, 7, 5)
    assert space.encoded_names == ["lr", "layers", "units", "opt=adam", "opt=sgd", "opt=rmsprop", "dropout"]
    assert space["units"] == Int("units", 16, 1024, log=True)
    assert [p.name for p in space] == space.names
    with pytest.raises(KeyError, match="No parameter 'width'"):
        space["width"]


# ---- The encoder
@pytest.mark.parametrize("form", ["dataframe", "records", "tuple", "dict", "series"])
def test_encode_accepts_each_input_form(space, form):
    rows = ROWS[:1] if form in ("dict", "series") else ROWS
    values = {
        "dataframe": pd.DataFrame(rows), "records": rows, "tuple": tuple(rows),
        "dict": rows[0], "series": pd.Series(rows[0]),
    }[form]
    U = space.encode(values)
    assert U.dtype == torch.float64 and U.shape == (len(rows), space.encoded_dim)
    torch.testing.assert_close(U, torch.tensor(ENCODED[:len(rows)], dtype=torch.float64))


def test_encode_ignores_column_order_and_numpy_scalars(space):
    df = pd.DataFrame(ROWS)[["opt", "dropout", "units", "layers", "lr"]]
    torch.testing.assert_close(space.encode(df), space.encode(ROWS))
    row = {"lr": np.float32(1e-3), "layers": np.int64(3), "units": 128.0, "opt": np.str_("sgd"),
           "dropout": np.float64(0.25)}
    torch.testing.assert_close(space.encode(row), space.encode(ROWS[:1]), rtol=1e-6, atol=1e-7)


def test_encode_of_no_rows_is_empty(space):
    assert space.encode(pd.DataFrame(columns=space.names)).shape == (0, 7)
    assert space.encode([]).shape == (0, 7)


def test_one_level_categorical_is_a_constant_column():
    s = SearchSpace([Float("x", 0, 1), Categorical("epoch", [52])])
    assert s.encoded_dim == 2
    assert s.encode([{"x": 0.5, "epoch": 52}]).tolist() == [[0.5, 1.0]]
    assert s.decode(torch.tensor([[0.5, 0.0]]))["epoch"].tolist() == [52]
    with pytest.raises(InputDataError, match="holds 50, not one of its 1 levels"):
        s.encode({"x": 0.5, "epoch": 50})


@pytest.mark.parametrize("change, message", [
    ({"lr": 0.5}, "Float 'lr': row 1 holds 0.5, outside its range [1e-05, 0.1]"),
    ({"dropout": -0.1}, "Float 'dropout': row 1 holds -0.1, outside its range [0.0, 0.5]"),
    ({"layers": 6}, "Int 'layers': row 1 holds 6, outside its range [1, 5]"),
    ({"lr": 0.0}, "Float 'lr': row 1 holds 0.0, not positive, and the parameter is on a log scale"),
    ({"units": -16}, "holds -16, not positive"),
    ({"layers": 2.5}, "Int 'layers': row 1 holds 2.5, not a whole number"),
    ({"opt": "adagrad"}, "Categorical 'opt': row 1 holds 'adagrad', not one of its 3 levels"),
    ({"opt": ["sgd"]}, "holds ['sgd'], not one of"),
    ({"dropout": float("nan")}, "holds nan, not a finite number (missing values are refused)"),
    ({"dropout": float("inf")}, "holds inf, not a finite number"),
    ({"dropout": None}, "Float 'dropout': row 1 holds None, not a number"),
    ({"dropout": "0.1"}, "holds '0.1', not a number"),
    ({"layers": True}, "Int 'layers': row 1 holds True, not a number"),
])
def test_bad_values_name_parameter_row_and_value(space, change, message):
    rows = [ROWS[0], {**ROWS[1], **change}]
    with pytest.raises(InputDataError) as info:
        space.encode(rows)
    assert message in str(info.value)


def test_bad_values_in_a_dataframe_column(space):
    df = pd.DataFrame(ROWS)
    df.loc[1, "units"] = 2048
    with pytest.raises(InputDataError, match=r"'units': row 1 holds 2048, outside its range \[16, 1024\]"):
        space.encode(df)
    df = pd.DataFrame(ROWS).astype({"opt": "category"})
    df["opt"] = df["opt"].cat.rename_categories({"sgd": "SGD"})
    with pytest.raises(InputDataError, match="row 0 holds 'SGD'"):
        space.encode(df)


def test_round_off_at_a_bound_is_clamped_not_refused():
    s = SearchSpace([Float("x", 0.1, 1.0), Float("r", 1e-4, 0.1, log=True)])
    U = s.encode({"x": 1.0 + 1e-13, "r": 1e-4 * (1 - 1e-13)})
    assert U.tolist() == [[1.0, 0.0]]
    with pytest.raises(InputDataError, match="outside its range"):
        s.encode({"x": 1.0 + 1e-6, "r": 1e-3})


def test_a_level_of_another_type_gets_a_hint():
    s = SearchSpace([Categorical("task", ["3945", "7593"]), Categorical("flag", [True, False])])
    with pytest.raises(InputDataError, match=r"holds 3945, not one of .*did you mean '3945'\?"):
        s.encode({"task": 3945, "flag": True})
    with pytest.raises(InputDataError, match="Categorical 'flag': row 0 holds 1, not one of"):
        s.encode({"task": "3945", "flag": 1})


@pytest.mark.parametrize("values, message", [
    ([{"lr": 1e-3}], "Row 0: missing column(s) 'layers', 'units', 'opt', 'dropout'"),
    ([ROWS[0], {**ROWS[1], "momentum": 0.9}], "Row 1: extra column(s) 'momentum'"),
    (pd.DataFrame(ROWS).drop(columns="opt").assign(seed=0),
     "The data: missing column(s) 'opt'; extra column(s) 'seed' (the space's parameters: ['lr',"),
    ([ROWS[0], [1e-3, 3, 128, "sgd", 0.25]], "Row 1 is a list, not a dict"),
    ({**ROWS[0], "lr": [1e-3, 1e-2]}, "A dict is one point, but 'lr' holds [0.001, 0.01]"),
    (5, "encode takes a DataFrame, a list of dicts or a dict (got int)"),
    (torch.zeros(2, 5), "A space with categorical parameters takes named values"),
])
def test_bad_shapes_of_values(space, values, message):
    with pytest.raises(InputDataError) as info:
        space.encode(values)
    assert message in str(info.value)


def test_duplicate_dataframe_columns_are_refused(space):
    df = pd.concat([pd.DataFrame(ROWS), pd.DataFrame(ROWS)[["lr"]]], axis=1)
    with pytest.raises(InputDataError, match=r"Duplicate columns: \['lr'\]"):
        space.encode(df)


# ---- Decoding
def test_decode_rounds_ints_in_raw_space_and_clamps():
    s = SearchSpace([Int("k", 0, 4), Int("u", 1, 100, log=True), Float("x", -1.0, 1.0)])
    df = s.decode(torch.tensor([[0.3, 0.5, 0.25], [-0.5, 0.26, 1.7], [1.2, 1.0, -3.0]], dtype=torch.float64))
    assert df["k"].tolist() == [1, 0, 4]  # 1.2 -> 1; clamped to 0 and 4
    assert df["u"].tolist() == [10, 3, 100]  # 10 ** (2 * 0.26) = 3.31 -> 3, rounded in raw space
    assert df["x"].tolist() == [-0.5, 1.0, -1.0]
    assert df["k"].dtype == np.int64 and df["x"].dtype == np.float64


def test_decode_takes_the_argmax_level_with_its_type():
    s = SearchSpace([Categorical("c", ["a", "b", "c"]), Categorical("m", [True, 1, "1", 2.5])])
    U = torch.tensor([[0.2, 0.7, 0.1, 0.0, 0.0, 0.0, 0.9],
                      [0.5, 0.5, 0.5, 0.9, 0.0, 0.0, 0.0],  # a tie goes to the first level
                      [-1.0, 3.0, 2.0, 0.1, 0.8, 0.3, 0.0]])
    df = s.decode(U)
    assert df["c"].tolist() == ["b", "a", "b"]
    assert [type(v) for v in df["m"]] == [float, bool, int] and df["m"].tolist() == [2.5, True, 1]
    torch.testing.assert_close(s.encode(df), s.encode(s.decode(s.encode(df))))


def test_decode_accepts_one_point_and_refuses_bad_shapes(space):
    assert space.decode(torch.tensor(ENCODED[0], dtype=torch.float64)).to_dict("records") == [
        {**ROWS[0], "lr": pytest.approx(1e-3)}]
    with pytest.raises(InputDataError, match=r"decode expects an n x 7 tensor \(got shape \(2, 6\)\)"):
        space.decode(torch.zeros(2, 6))
    with pytest.raises(InputDataError, match="decode got non-finite values: \\[nan\\]"):
        space.decode(torch.tensor([[0.5, float("nan"), 0.5, 1, 0, 0, 0.5]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_then_encode_round_trips(space, seed):
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(50, space.encoded_dim, generator=g, dtype=torch.float64)
    df = space.decode(U)
    assert df.dtypes.to_dict() == {"lr": np.float64, "layers": np.int64, "units": np.int64,
                                   "opt": df["opt"].dtype, "dropout": np.float64}
    assert df["units"].between(16, 1024).all() and set(df["opt"]) <= {"adam", "sgd", "rmsprop"}
    V = space.encode(df)
    torch.testing.assert_close(V[:, [0, 6]], U[:, [0, 6]])  # floats come back exactly (to round-off)
    pd.testing.assert_frame_equal(space.decode(V), df)  # ints and levels are fixed points


def test_encode_then_decode_round_trips(space):
    df = pd.DataFrame(ROWS)
    back = space.decode(space.encode(df))
    pd.testing.assert_frame_equal(back[["layers", "units"]], df[["layers", "units"]])
    assert back["opt"].tolist() == df["opt"].tolist()
    np.testing.assert_allclose(back[["lr", "dropout"]].to_numpy(), df[["lr", "dropout"]].to_numpy(),
                               rtol=1e-12)


# ---- JSON
def test_json_round_trip_keeps_types(space):
    mixed = SearchSpace([*space, Categorical("m", [True, 1, "1", 2.5]), Categorical("k", [0.1])])
    d = mixed.to_dict()
    assert d["version"] == 1 and d["parameters"][1] == {"type": "int", "name": "layers", "lower": 1,
                                                        "upper": 5, "log": False}
    back = SearchSpace.from_dict(json.loads(json.dumps(d)))
    assert back == mixed and back.difference(mixed) is None
    assert [type(c) for c in back["m"].choices] == [bool, int, str, float]
    assert type(back["layers"].lower) is int and type(back["lr"].lower) is float


def test_from_dict_fills_an_omitted_log():
    d = {"version": 1, "parameters": [{"type": "float", "name": "x", "lower": 0, "upper": 1}]}
    assert SearchSpace.from_dict(d) == SearchSpace([Float("x", 0, 1)])


@pytest.mark.parametrize("d, message", [
    ([], "A space dict must be a dict (got list)"),
    ({"parameters": []}, "needs an integer 'version' >= 1 (got None)"),
    ({"version": "1", "parameters": []}, "(got '1')"),
    ({"version": 2, "parameters": []}, "format version 2; this metaprior reads version 1: upgrade"),
    ({"version": 1, "parameters": [], "extra": 0}, "exactly the keys 'version' and 'parameters'"),
    ({"version": 1, "parameters": [{"type": "bool", "name": "b"}]}, "needs a 'type' of"),
    ({"version": 1, "parameters": [{"type": "float", "name": "x", "lower": 0, "upper": 1, "logscale": True}]},
     "unknown key(s) ['logscale']"),
    ({"version": 1, "parameters": [{"type": "categorical", "name": "c"}]}, "missing key(s) ['choices']"),
    ({"version": 1, "parameters": [{"type": "int", "name": "k", "lower": 2, "upper": 1}]},
     "Int 'k': lower must be below upper"),
    ({"version": 1, "parameters": []}, "at least one parameter"),
])
def test_from_dict_refuses_bad_dicts(d, message):
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_dict(d)
    assert message in str(info.value)


# ---- Bounds tensors
def test_from_bounds_is_a_space_of_unnamed_floats():
    bounds = torch.tensor([[0.0, -5.0, 1e-3], [1.0, 10.0, 2.0]], dtype=torch.float64)
    s = SearchSpace.from_bounds(bounds)
    assert s.names == ["x0", "x1", "x2"] and s == SearchSpace.from_dict(s.to_dict())
    torch.testing.assert_close(s.bounds, bounds)
    X = bounds[0] + torch.rand(4, 3, dtype=torch.float64) * (bounds[1] - bounds[0])
    torch.testing.assert_close(s.encode(X), (X - bounds[0]) / (bounds[1] - bounds[0]))
    torch.testing.assert_close(s.encode(X.numpy()), s.encode(X))
    torch.testing.assert_close(torch.tensor(s.decode(s.encode(X)).to_numpy()), X)


# ---- The one affine map between a box and the unit cube
BOX = torch.tensor([[-5.0, 0.0, 1e-3], [10.0, 15.0, 2.0]], dtype=torch.float64)


def test_box_map_round_trips_batched_points():
    U = torch.rand(4, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = box_from_unit(U, BOX)
    assert X.shape == U.shape and ((X >= BOX[0]) & (X <= BOX[1])).all()
    torch.testing.assert_close(box_to_unit(X, BOX), U, rtol=0, atol=1e-15)
    assert torch.equal(box_to_unit(BOX, BOX), torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64))
    # The box follows the points' dtype (meta-training may feed float32 inputs).
    assert box_to_unit(X.float(), BOX).dtype == torch.float32


def test_encoder_model_map_and_box_map_agree_to_the_bit(space):
    """One map, one set of operations: a box space's `encode` (NumPy) and `model_to_unit`
    (torch) give exactly the tensor map's bits."""
    box = SearchSpace.from_bounds(BOX)
    X = box_from_unit(torch.rand(50, 3, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64), BOX)
    assert torch.equal(box.encode(X), box_to_unit(X, BOX))
    assert torch.equal(box.model_to_unit(box.to_model(X)), box_to_unit(X, BOX))
    # An encoded (typed) space's model inputs already are the unit cube: the map is the identity.
    E = space.encode(ROWS)
    assert torch.equal(space.model_to_unit(E), E)
    assert space["lr"].linear_range == pytest.approx((-5.0, -1.0)) and space["layers"].linear_range == (1, 5)


@pytest.mark.parametrize("bounds, message", [
    (torch.zeros(3, 2), "2 x d tensor with d >= 1 (got shape (3, 2))"),
    (torch.zeros(2), "got shape (2,)"),
    (torch.zeros(2, 0), "got shape (2, 0)"),
    (torch.tensor([[0.0, 1.0], [1.0, 1.0]]),
     "Float 'x1': lower must be below upper (got lower=1.0, upper=1.0)"),
    (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), "Float 'x1': lower must be a finite number (got nan)"),
])
def test_from_bounds_refuses_bad_boxes(bounds, message):
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_bounds(bounds)
    assert message in str(info.value)


def test_bounds_property_needs_linear_floats(space):
    with pytest.raises(ConfigError, match=r"linear floats only, and Float\('lr', 1e-05, 0.1, log=True\)"):
        _ = space.bounds
    with pytest.raises(ConfigError, match=r"Int\('k', 0, 3\) is not one"):
        _ = SearchSpace([Float("x", 0, 1), Int("k", 0, 3)]).bounds
    with pytest.raises(InputDataError, match=r"Expected an n x 2 array .* \(got shape \(4, 3\)\)"):
        SearchSpace.from_bounds(torch.ones(2, 2).cumsum(0)).encode(torch.ones(4, 3))


# ---- Comparing spaces
@pytest.mark.parametrize("other, message", [
    ([Float("lr", 1e-5, 1e-1, log=True), Int("layers", 1, 6)], "parameter 'layers': upper is 5 here, 6 in"),
    ([Float("lr", 1e-5, 1e-1), Int("layers", 1, 5)], "parameter 'lr': log is True here, False in"),
    ([Float("lr", 1e-5, 1e-1, log=True), Float("layers", 1, 5)],
     "parameter 'layers': Int('layers', 1, 5) here, Float('layers', 1.0, 5.0) in the other space"),
    ([Int("layers", 1, 5), Float("lr", 1e-5, 1e-1, log=True)], "parameter 0 is 'lr' here, 'layers' in"),
    ([Float("lr", 1e-5, 1e-1, log=True)],
     "parameter 'layers' is missing from the other space (2 parameters here, 1 there)"),
    ([Float("lr", 1e-5, 1e-1, log=True), Int("layers", 1, 5), Float("m", 0, 1)],
     "parameter 'm' is only in the other space (2 parameters here, 3 there)"),
])
def test_difference_names_the_first_differing_parameter(other, message):
    mine = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Int("layers", 1, 5)])
    assert mine.difference(mine) is None
    assert message in mine.difference(SearchSpace(other))


def test_difference_of_categoricals_names_the_level():
    a = SearchSpace([Categorical("opt", ["adam", "sgd", "rmsprop"])])
    assert a.difference(SearchSpace([Categorical("opt", ["adam", "sgd"])])) == (
        "parameter 'opt': 3 levels here, 2 in the other space")
    assert a.difference(SearchSpace([Categorical("opt", ["adam", "rmsprop", "sgd"])])) == (
        "parameter 'opt': level 1 is 'sgd' here, 'rmsprop' in the other space")
    with pytest.raises(TypeError, match="compares two SearchSpaces"):
        a.difference(torch.zeros(2, 1))


# ---- ConfigSpace
def _configspace():
    return pytest.importorskip("ConfigSpace", reason="ConfigSpace is not installed (metaprior[spaces])")


def test_from_configspace_object_maps_each_kind():
    CS = _configspace()
    cs = CS.ConfigurationSpace()
    cs.add([
        CS.UniformFloatHyperparameter("lr", 1e-5, 1e-1, log=True),
        CS.UniformFloatHyperparameter("dropout", 0.0, 0.5),
        CS.UniformIntegerHyperparameter("units", 16, 1024, log=True),
        CS.CategoricalHyperparameter("opt", ["adam", "sgd"], weights=[0.9, 0.1]),
        CS.OrdinalHyperparameter("depth", [2, 4, 8]),
        CS.Constant("epochs", 52),
    ])
    space = SearchSpace.from_configspace(cs)
    expected = {
        "lr": Float("lr", 1e-5, 1e-1, log=True), "dropout": Float("dropout", 0.0, 0.5),
        "units": Int("units", 16, 1024, log=True), "opt": Categorical("opt", ["adam", "sgd"]),
        "depth": Categorical("depth", [2, 4, 8]), "epochs": Categorical("epochs", [52]),
    }
    assert sorted(space.names) == sorted(expected)
    assert all(space[name] == p for name, p in expected.items())
    assert [type(c) for c in space["depth"].choices] == [int, int, int]


def test_from_configspace_file_round_trips(tmp_path):
    CS = _configspace()
    cs = CS.ConfigurationSpace({"x": (0.0, 1.0), "k": (1, 10), "c": ["a", "b"]})
    path = tmp_path / "space.json"
    cs.to_json(path)
    assert SearchSpace.from_configspace(path) == SearchSpace.from_configspace(cs)
    assert SearchSpace.from_configspace(str(path)) == SearchSpace.from_configspace(cs)


@pytest.mark.parametrize("kind", ["condition", "forbidden"])
def test_from_configspace_refuses_conditions_and_forbiddens(kind):
    CS = _configspace()
    cs = CS.ConfigurationSpace({"booster": ["gbtree", "linear"], "depth": (1, 10)})
    if kind == "condition":
        cs.add(CS.EqualsCondition(cs["depth"], cs["booster"], "gbtree"))
        message = "has 1 condition(s) ([depth | booster == 'gbtree'])"
    else:
        cs.add(CS.ForbiddenEqualsClause(cs["depth"], 2))
        message = "has 1 forbidden clause(s)"
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_configspace(cs)
    assert message in str(info.value) and "cannot express them" in str(info.value)


def test_from_configspace_refuses_other_kinds_and_inputs(tmp_path):
    CS = _configspace()
    cs = CS.ConfigurationSpace()
    cs.add(CS.NormalFloatHyperparameter("w", mu=0.0, sigma=1.0, lower=-3.0, upper=3.0))
    with pytest.raises(ConfigError, match="'w' is a NormalFloatHyperparameter, which a SearchSpace cannot"):
        SearchSpace.from_configspace(cs)
    with pytest.raises(ConfigError, match=r"takes a ConfigurationSpace .* \(got dict\)"):
        SearchSpace.from_configspace({"x": (0.0, 1.0)})
    with pytest.raises(FileNotFoundError, match="No ConfigSpace JSON file at"):
        SearchSpace.from_configspace(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json is not a ConfigSpace JSON file"):
        SearchSpace.from_configspace(tmp_path / "bad.json")


def test_from_configspace_without_configspace_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ConfigSpace", None)  # makes `import ConfigSpace` fail
    with pytest.raises(ImportError, match=r"pip install 'metaprior\[spaces\]'"):
        SearchSpace.from_configspace("config_space.json")


@pytest.mark.parametrize("scenario, dim, encoded_dim, checks", [
    ("lcbench", 9, 42, {"batch_size": Int("batch_size", 16, 512, log=True), "epoch": Int("epoch", 1, 52),
                        "max_dropout": Float("max_dropout", 0.0, 1.0)}),
    ("rbv2_rpart", 8, 126, {"maxdepth": Int("maxdepth", 1, 30), "trainsize": Float("trainsize", 0.03, 1.0),
                            "num.impute.selected.cpo": Categorical("num.impute.selected.cpo",
                                                                   ["impute.mean", "impute.median",
                                                                    "impute.hist"])}),
])
def test_yahpo_config_space_files(scenario, dim, encoded_dim, checks, recwarn):
    _configspace()
    path = YAHPO / scenario / "config_space.json"
    if not path.is_file():
        pytest.skip(f"YAHPO data not found at {path} (set METAPRIOR_YAHPO_DATA)")
    space = SearchSpace.from_configspace(path)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]  # old-format notes muted
    assert (space.dim, space.encoded_dim) == (dim, encoded_dim)
    assert all(space[name] == p for name, p in checks.items())
    log_float = next(p for p in space if isinstance(p, Float) and p.log)  # learning_rate, cp
    assert log_float.upper == pytest.approx(0.1 if scenario == "lcbench" else 1.0)
    assert all(isinstance(c, str) for p in space if isinstance(p, Categorical) for c in p.choices)
    df = space.decode(torch.rand(20, space.encoded_dim, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64))
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    pd.testing.assert_frame_equal(space.decode(space.encode(df)), df)
    # ConfigSpace rounds some bounds when it reads them (cp's lower 0.0009118819655545162 becomes
    # 0.0009118819656); values at the file's own bounds still encode, to 0 and 1.
    raw = {h["name"]: h for h in json.loads(path.read_text())["hyperparameters"]}
    edges = df.iloc[:2].copy()
    numeric = [p.name for p in space if not isinstance(p, Categorical)]
    for name in numeric:
        edges[name] = [raw[name]["lower"], raw[name]["upper"]]
    U = space.encode(edges)[:, [space.encoded_names.index(name) for name in numeric]]
    expected = torch.tensor([[0.0], [1.0]], dtype=torch.float64).expand_as(U)
    torch.testing.assert_close(U, expected, atol=1e-12, rtol=0)
