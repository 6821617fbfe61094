"""Property-based fuzzing of the public functions that take user input."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import re
import zipfile

import numpy as np
import pytest
import torch
from hostile_corpus import read_parts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from riskrl.agents import BayesDQN
from riskrl.bayes import BayesMLP, fit
from riskrl.checkpoint import CheckpointError, load_checkpoint, pack_state, save_checkpoint, unpack_state
from riskrl.envs import make_vec
from riskrl.envs.perturbation import Perturbation
from riskrl.risk import cvar, lcb

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@FAST
@given(st.lists(floats, min_size=1, max_size=50), st.floats(min_value=1e-3, max_value=1.0))
def test_cvar_is_between_min_and_mean_and_monotone(xs: list[float], alpha: float) -> None:
    x = torch.tensor(xs, dtype=torch.float64)
    c = cvar(x, alpha).item()
    assert x.min().item() - 1e-6 <= c <= x.mean().item() + 1e-6 * (1 + abs(x.mean().item()))
    assert cvar(x, min(1.0, alpha * 1.5)).item() >= c - 1e-6 * (1 + abs(c))


@FAST
@given(
    st.lists(st.tuples(floats, st.floats(min_value=0, max_value=1e3)), min_size=1, max_size=20),
    st.one_of(floats, st.just(float("nan")), st.just(float("inf")), st.text(max_size=3)),
)
def test_lcb_either_computes_or_names_the_problem(pairs: list[tuple[float, float]], k: object) -> None:
    mean = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    std = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    try:
        out = lcb(mean, std, k)  # type: ignore[arg-type]
    except ValueError as err:
        assert "risk_tolerance" in str(err)
        return
    assert isinstance(k, float) and math.isfinite(k)
    torch.testing.assert_close(out, mean - k * std)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), floats, st.text(max_size=8))
tensors = st.builds(
    lambda shape, dtype: (torch.arange(int(np.prod(shape))) % 3).to(dtype).reshape(shape),
    st.lists(st.integers(0, 3), min_size=0, max_size=3),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]),
)
nested = st.recursive(
    st.one_of(json_leaf, tensors),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(min_size=1, max_size=6).filter(lambda s: not s.startswith("__")), children, max_size=4
        ),
        st.dictionaries(st.integers(0, 100), children, max_size=3),
        st.tuples(children, children),
    ),
    max_leaves=12,
)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@FAST
@given(nested)
def test_pack_unpack_round_trip(state: object) -> None:
    skeleton, tensors = pack_state(state)
    assert _equal(unpack_state(skeleton, tensors), state)


@FAST
@given(st.binary(max_size=2048))
def test_loading_random_bytes_only_raises_checkpoint_error(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@FAST
@given(st.data())
def test_mutated_checkpoints_never_load_silently_wrong(tmp_path_factory, data: st.DataObject) -> None:
    """Flipping bytes anywhere in a checkpoint gives a CheckpointError or the original state."""
    tmp = tmp_path_factory.mktemp("mut")
    state = {"w": torch.arange(64, dtype=torch.float32), "n": 3}
    good = save_checkpoint(tmp / "g", state, kind="K").read_bytes()
    pos = data.draw(st.integers(0, len(good) - 1))
    flipped = bytearray(good)
    flipped[pos] ^= data.draw(st.integers(1, 255))
    (tmp / "m").write_bytes(bytes(flipped))
    try:
        loaded, _ = load_checkpoint(tmp / "m", kind="K")
    except CheckpointError:
        return
    # Some bytes (zip timestamps, JSON whitespace) do not matter; then the state must be intact.
    assert torch.equal(loaded["w"], state["w"]) and loaded["n"] == 3


@FAST
@given(st.text(max_size=40))
def test_perturbation_parse_is_total(text: str) -> None:
    try:
        p = Perturbation.parse(text)
    except ValueError as err:
        assert "perturbation" in str(err)
        return
    assert p.name == text.partition(":")[0].strip() != ""
    assert all(isinstance(v, float) for v in p.params.values())
    # round trip: the parsed items, written back, parse to the same perturbation
    again = Perturbation.parse(p.name + ":" + ",".join(f"{k}={v!r}" for k, v in p.params.items()))
    assert again.params.keys() == p.params.keys()
    assert all(
        again.params[k] == v or (math.isnan(v) and math.isnan(again.params[k])) for k, v in p.params.items()
    )


def test_zip_bomb_like_member_sizes_are_refused(tmp_path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", b"{" + b" " * (70 * 2**20) + b"}")
        zf.writestr("tensors.safetensors", b"")
    (tmp_path / "bomb").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"manifest\.json inflates \d+-fold"):
        load_checkpoint(tmp_path / "bomb")


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> tuple[dict, dict]:
    """Manifest and tensors of a small trained BayesDQN (trusted: our own file)."""
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(4,), n_members=2, learning_starts=10, buffer_size=64)
    agent.learn(20)
    return read_parts(agent.save(tmp_path_factory.mktemp("small") / "a.riskrl"))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_manifests_only_raise_checkpoint_error(small_checkpoint, tmp_path_factory, data) -> None:
    """Any JSON value in any manifest field (or a random JSON tree as the whole manifest):
    Agent.load either loads or raises CheckpointError, never another exception."""
    manifest, tensors = small_checkpoint
    if data.draw(st.integers(0, 9)) == 0:
        new = data.draw(json_values)
    else:
        new = copy.deepcopy(manifest)
        path = data.draw(st.sampled_from(_paths(manifest)))
        value = data.draw(json_values)
        if not path:
            new = value
        else:
            node = new
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
    target = tmp_path_factory.mktemp("manifest") / "m.riskrl"
    buf = io.BytesIO()
    blob = st_save(tensors)
    if isinstance(new, dict) and new.get("tensors_sha256") == manifest["tensors_sha256"]:
        new["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(new))
        zf.writestr("tensors.safetensors", blob)
    target.write_bytes(buf.getvalue())
    try:
        BayesDQN.load(target)
    except CheckpointError:
        pass


def test_none_in_any_manifest_field_loads_or_raises_checkpoint_error(small_checkpoint, tmp_path) -> None:
    """The deterministic sweep behind the fuzz above for one value: ``None`` in every field in turn
    (the fuzz found ``training.grad_credit = None`` crashing with a TypeError; optional fields take
    ``None`` as absent, every other field refuses it)."""
    manifest, tensors = small_checkpoint
    blob = st_save(tensors)
    loaded = 0
    for path in _paths(manifest):
        if not path or path[-1] == "tensors_sha256":
            continue
        new = copy.deepcopy(manifest)
        node = new
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = None
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("manifest.json", json.dumps(new))
            zf.writestr("tensors.safetensors", blob)
        target = tmp_path / "m.riskrl"
        target.write_bytes(buf.getvalue())
        try:
            BayesDQN.load(target)
            loaded += 1
        except CheckpointError:
            pass
    assert loaded >= 1  # grad_credit = None is the "absent" of a checkpoint made before utd_ratio


arrays = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=12).map(np.array),
    st.tuples(st.integers(0, 3), st.integers(0, 6)).map(lambda s: np.zeros(s, dtype=np.float32)),
    st.lists(st.integers(-5, 5), min_size=1, max_size=8).map(lambda v: np.array(v, dtype=np.int64)),
    st.just(np.array(["a", "b", "c", "d"])),
)


def _numeric_finite(a: np.ndarray) -> bool:
    return a.dtype.kind in "fiu" and bool(np.isfinite(a.astype(np.float64)).all())


@pytest.fixture(scope="module")
def dqn():
    return BayesDQN("CartPole-v1", seed=0, n_members=2, hidden=(8,))


@FAST
@given(arrays)
def test_agent_predict_accepts_or_names_the_problem(dqn, obs: np.ndarray) -> None:
    valid = _numeric_finite(obs) and (
        obs.shape == (4,) or (obs.ndim == 2 and obs.shape[0] >= 1 and obs.shape[1] == 4)
    )
    try:
        action, _ = dqn.predict(obs)
    except ValueError as err:
        assert not valid, f"valid observation refused: {err}"
        assert "observation" in str(err)
        return
    assert obs.shape in {(4,), (obs.shape[0], 4)} and np.isfinite(obs.astype(np.float64)).all()
    assert np.asarray(action).shape == obs.shape[:-1]


@FAST
@given(arrays, st.sampled_from(["CartPole-v1", "Pendulum-v1"]))
def test_env_step_accepts_or_names_the_problem(actions: np.ndarray, env_id: str) -> None:
    env = make_vec(env_id, num_envs=4)
    env.reset(seed=0)
    try:
        obs, *_ = env.step(actions)
    except (ValueError, TypeError) as err:
        assert "action" in str(err)
        return
    assert obs.shape == (4, env.single_observation_space.shape[0]) and torch.isfinite(obs).all()


@FAST
@given(arrays, arrays)
def test_fit_accepts_exactly_the_valid_data_and_names_the_problem(x: np.ndarray, y: np.ndarray) -> None:
    """fit raises iff the data are bad (an independent oracle), with a message naming x, y or emptiness."""
    model = BayesMLP(1, 1, hidden=(4,), family="ensemble", n_members=2)
    x2 = x.reshape(-1, 1) if x.ndim == 1 else x
    valid = (
        _numeric_finite(x2)
        and _numeric_finite(y)
        and x2.ndim == 2
        and x2.shape[1] == 1
        and x2.shape[0] > 0
        and y.shape in {(x2.shape[0],), (x2.shape[0], 1)}
    )
    try:
        fit(model, x2, y, epochs=1)
    except ValueError as err:
        assert not valid, f"valid data refused: {err}"
        assert re.search(r"\b(x|y)\b|empty", str(err)), str(err)
        return
    assert valid, f"bad data accepted: x {x2.shape} {x2.dtype}, y {y.shape} {y.dtype}"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@FAST
@given(arrays)
def test_model_predict_accepts_exactly_the_valid_inputs_and_names_the_problem(x: np.ndarray) -> None:
    model = BayesMLP(4, 1, hidden=(4,), family="bbb")
    valid = _numeric_finite(x) and x.ndim == 2 and x.shape[1] == 4
    try:
        pred = model.predict(x, n_samples=3)
    except ValueError as err:
        assert not valid, f"valid input refused: {err}"
        assert re.search(r"\bx\b", str(err)), str(err)
        return
    assert valid, f"bad input accepted: {x.shape} {x.dtype}"
    assert pred.mean.shape == (x.shape[0], 1) and torch.isfinite(pred.total_std).all()
