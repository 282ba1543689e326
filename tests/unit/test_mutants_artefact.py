"""Tests that kill mutmut mutants of steproute/policies/_artefact.py (see docs/architecture.md, "Mutation testing").

A small valid artefact of each kind is written and read back; then each check is broken one at a
time, on both sides of its bound, and the error is read word for word (after the file's name).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from steproute.policies import _artefact
from steproute.policies._artefact import (
    Artefact,
    ArtefactError,
    built,
    load_artefact,
    member_artefacts,
    pack_strings,
    save_artefact,
    unpack_strings,
)

ENCODER = "wordllama-l2-256"


def classifier_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    # 2 terms, embedding_dim 1, 3 hand measures, 1 step token: coef 2 × (2 + 2 + 3 + 1)
    arrays = {"terms": pack_strings(["x", "y"]), "idf": np.ones(2), "steps": pack_strings(["step=s"]),
              "hand_mean": np.zeros(3), "hand_scale": np.ones(3), "coef": np.zeros((2, 8)), "intercept": np.zeros(2)}
    return {"embedding_dim": 1, "encoder": ENCODER}, arrays


def semantic_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays = {"embeddings": np.eye(3, 4), "quality": np.ones((3, 2)), "step_ids": np.zeros(3, dtype=np.int32),
              "steps": pack_strings(["s"])}
    return {"neighbours": 1, "temperature": 0.5, "prior_weight": 0.0, "same_step_bonus": 0.0, "encoder": ENCODER}, arrays


def cascade_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return {}, {"mean": np.zeros(3), "scale": np.ones(3), "coef": np.zeros(3), "intercept": np.zeros(1)}


def knn_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    # embedding_dim 2, one hand measure: 5 columns; 4 references of steps s, t
    arrays = {"references": np.zeros((4, 5), dtype=np.float16), "quality": np.ones((4, 2)),
              "step_ids": np.array([0, 1, 1, 0], dtype=np.int32), "steps": pack_strings(["s", "t"]),
              "step_mean": np.ones((2, 2)), "global_mean": np.ones(2), "hand_mean": np.zeros(1), "hand_scale": np.ones(1)}
    meta = {"embedding_dim": 2, "k": 1, "weighting": "uniform", "prior_strength": 0, "context_weight": 0.5,
            "hand_weight": 1.0, "step_penalty": 0.0, "distance_floor": 0.1, "encoder": ENCODER}
    return meta, arrays


def ensemble_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    knn_meta, knn_arrays = knn_parts()
    sem_meta, sem_arrays = semantic_parts()
    members = [{"policy": "knn", "weight": 1, "meta": knn_meta}, {"policy": "semantic", "weight": 0.5, "meta": sem_meta}]
    arrays = {**{f"m0.{k}": v for k, v in knn_arrays.items()}, **{f"m1.{k}": v for k, v in sem_arrays.items()}}
    return {"members": members}, arrays


def irt_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta, arrays = classifier_parts()
    return meta, {**arrays, "difficulty": np.zeros(8), "difficulty_intercept": np.zeros(1), "ability": np.zeros(2),
                  "discrimination": np.ones(2)}


def cascade_routing_parts() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    c_meta, c_arrays = classifier_parts()
    s_meta, s_arrays = cascade_parts()
    arrays = {"costs": np.ones(2), "pre_x": np.zeros((2, 3)), "pre_y": np.zeros((2, 3)), "post_x": np.zeros((1, 4)),
              "post_y": np.zeros((1, 4)), "post_mix": np.zeros((1, 3)),
              **{f"classifier.{k}": v for k, v in c_arrays.items()}, **{f"scorer.{k}": v for k, v in s_arrays.items()}}
    meta = {"lambda": 0.5, "kappa": 1, "classifier": {"labels": ["a", "b"], "threshold": 0.0, **c_meta},
            "scorer": {"labels": ["a", "b"], "threshold": 0.0, **s_meta}}
    return meta, arrays


PARTS = {"classifier": classifier_parts, "semantic": semantic_parts, "cascade": cascade_parts, "knn": knn_parts,
         "ensemble": ensemble_parts, "irt": irt_parts, "cascade_routing": cascade_routing_parts}


def written(tmp_path: Path, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    path = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.steproute"
    save_artefact(Artefact(kind, {"labels": ["a", "b"], "threshold": 0.25, **meta}, arrays), path)
    return path


def error_of(tmp_path: Path, kind: str, change) -> str | None:
    """The error (after the file's name) loading the valid ``kind`` artefact changed by ``change(meta, arrays)``."""
    meta, arrays = PARTS[kind]()
    change(meta, arrays)
    path = written(tmp_path, kind, meta, arrays)
    try:
        load_artefact(path, kind)
    except ArtefactError as exc:
        text = str(exc)
        assert text.startswith(f"{path}: "), text
        return text[len(f"{path}: "):]
    return None


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_a_valid_artefact_of_each_kind_is_read_back_as_written(tmp_path, kind):
    meta, arrays = PARTS[kind]()
    path = written(tmp_path, kind, meta, arrays)
    loaded = load_artefact(path, kind)
    assert loaded.policy == kind and loaded.labels == ("a", "b") and loaded.threshold == 0.25
    assert dict(loaded.meta) == {"labels": ["a", "b"], "threshold": 0.25, **json.loads(json.dumps(meta))}
    assert sorted(loaded.arrays) == sorted(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], value)
        assert loaded.arrays[name].dtype == value.dtype
    assert load_artefact(path).policy == kind  # no kind expected: any


def change_part(part: str, **values: Any):
    def change(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        meta[part] = {**meta[part], **values}
    return change


def set_array(name: str, value: Any):
    def change(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = np.asarray(value)
    return change


def set_meta(**values: Any):
    def change(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        meta.update(values)
    return change


def drop(*names: str):
    def change(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for name in names:
            meta.pop(name, None)
            arrays.pop(name, None)
    return change


SHAPES = "arrays of inconsistent shapes: "
VECTORS = SHAPES + "terms, steps, idf, hand_mean, hand_scale and intercept must be vectors"
KNN_COLUMNS = SHAPES + ("references must have 2 × embedding_dim (4) columns plus one a text measure "
                        "(hand_mean, hand_scale)")
REFUSED = [
    # every kind: labels and threshold
    ("cascade", set_meta(labels=[]), "meta.json: 'labels' must be a list of model names"),
    ("cascade", set_meta(labels="a,b"), "meta.json: 'labels' must be a list of model names"),
    ("cascade", set_meta(labels=["a", 2]), "meta.json: 'labels' must be a list of model names"),
    ("cascade", set_meta(threshold=True), "meta.json: 'threshold' must be a number"),
    ("cascade", set_meta(threshold="0.5"), "meta.json: 'threshold' must be a number"),
    ("cascade", set_meta(threshold=float("inf")), "meta.json: 'threshold' must be a number"),
    ("cascade", set_meta(threshold=float("nan")), "meta.json: 'threshold' must be a number"),
    # arrays and fields a kind needs
    ("knn", drop("quality", "steps"), "arrays.npz lacks quality, steps (needed by a knn artefact)"),
    ("cascade", set_array("mean", np.array(["a", "b", "c"])), "array 'mean' is not numeric"),
    ("cascade", set_array("scale", np.ones(3, dtype=complex)), "array 'scale' is not numeric"),
    ("knn", drop("k"), "meta.json: 'k' is missing or of the wrong type"),
    ("knn", set_meta(k=True), "meta.json: 'k' is missing or of the wrong type"),
    ("knn", set_meta(k=1.0), "meta.json: 'k' is missing or of the wrong type"),
    ("knn", set_meta(prior_strength="1"), "meta.json: 'prior_strength' is missing or of the wrong type"),
    ("knn", set_meta(step_penalty=float("inf")), "meta.json: 'step_penalty' must be finite"),
    ("knn", set_meta(hand_weight=float("nan")), "meta.json: 'hand_weight' must be finite"),
    ("semantic", set_array("steps", np.frombuffer(b"\xff\xfe", dtype=np.uint8)), "a packed string array is not UTF-8"),
    # classifier
    ("classifier", set_meta(embedding_dim=-1), VECTORS),
    *[("classifier", set_array(n, np.zeros((1, 1))), VECTORS) for n in ("terms", "steps", "idf", "hand_mean", "hand_scale",
                                                                         "intercept")],
    ("classifier", set_array("idf", np.ones(3)), SHAPES + "idf must have one weight a term, hand_scale one a feature"),
    ("classifier", set_array("hand_scale", np.ones(2)), SHAPES + "idf must have one weight a term, hand_scale one a feature"),
    ("classifier", set_array("coef", np.zeros((2, 9))), SHAPES + "coef must be 2 × 8"),
    ("classifier", set_array("coef", np.zeros((3, 8))), SHAPES + "coef must be 2 × 8"),
    ("classifier", set_array("intercept", np.zeros(3)), SHAPES + "intercept must have 2 values"),
    # semantic
    ("semantic", set_array("embeddings", np.zeros(4)), SHAPES + "embeddings must be references × dimensions"),
    ("semantic", set_array("embeddings", np.zeros((0, 4))), SHAPES + "embeddings must be references × dimensions"),
    ("semantic", set_array("quality", np.ones((3, 3))), SHAPES + "quality must be references × 2 tiers"),
    ("semantic", set_array("step_ids", np.zeros(2)), SHAPES + "step_ids must have one step a reference"),
    ("semantic", set_array("steps", np.zeros((1, 1), dtype=np.uint8)), SHAPES + "step_ids must have one step a reference"),
    ("semantic", set_meta(neighbours=0), SHAPES + "neighbours must be 1 or more, temperature above 0"),
    ("semantic", set_meta(temperature=0), SHAPES + "neighbours must be 1 or more, temperature above 0"),
    # cascade
    ("cascade", set_array("mean", np.zeros((3, 1))), SHAPES + "mean, scale and coef must be vectors of one length, "
                                                              "intercept one value"),
    *[("cascade", set_array(n, np.zeros(2)), SHAPES + "mean, scale and coef must be vectors of one length, intercept one value")
      for n in ("scale", "coef")],
    ("cascade", set_array("coef", np.zeros((1, 3))), SHAPES + "mean, scale and coef must be vectors of one length, "
                                                              "intercept one value"),
    ("cascade", set_array("intercept", np.zeros(0)), SHAPES + "mean, scale and coef must be vectors of one length, "
                                                              "intercept one value"),
    # knn
    ("knn", set_array("references", np.zeros(5)), SHAPES + "references must be rows × features"),
    ("knn", set_array("references", np.zeros((0, 5))), SHAPES + "references must be rows × features"),
    ("knn", set_meta(embedding_dim=0), SHAPES + "references must be rows × features"),
    ("knn", set_meta(embedding_dim=3), SHAPES + ("references must have 2 × embedding_dim (6) columns plus one a text "
                                                 "measure (hand_mean, hand_scale)")),
    ("knn", set_array("hand_mean", np.zeros(2)), KNN_COLUMNS),
    ("knn", set_array("hand_scale", np.zeros((1, 1))), KNN_COLUMNS),
    ("knn", set_array("quality", np.ones((4, 3))), SHAPES + "quality must be references × 2 tiers"),
    ("knn", set_array("step_ids", np.zeros(3, dtype=np.int32)), SHAPES + "step_ids must have one step a reference"),
    ("knn", set_array("step_ids", np.array([0, 1, 2, 0])), SHAPES + "step_ids must index steps"),
    ("knn", set_array("step_ids", np.array([0, -1, 1, 0])), SHAPES + "step_ids must index steps"),
    ("knn", set_array("step_mean", np.ones((3, 2))), SHAPES + "step_mean must be steps × 2 tiers, global_mean 2 values"),
    ("knn", set_array("step_mean", np.ones((2, 3))), SHAPES + "step_mean must be steps × 2 tiers, global_mean 2 values"),
    ("knn", set_array("global_mean", np.ones(3)), SHAPES + "step_mean must be steps × 2 tiers, global_mean 2 values"),
    ("knn", set_meta(k=0), "meta.json: 'k' must be 1 or more"),
    ("knn", set_meta(weighting="cosine"), "meta.json: 'weighting' must be 'uniform' or 'distance'"),
    ("knn", set_meta(prior_strength=-0.5), "meta.json: 'prior_strength' must be 0 or more and 'distance_floor' above 0"),
    ("knn", set_meta(distance_floor=0), "meta.json: 'prior_strength' must be 0 or more and 'distance_floor' above 0"),
    # ensemble
    ("ensemble", set_meta(members=[]), "meta.json: 'members' must list one member or more"),
    ("ensemble", set_meta(members=["knn"]), "meta.json: members[0] must be an object with 'policy', 'weight' and 'meta'"),
    ("ensemble", set_meta(members=[{"policy": "knn", "weight": 1}]),
     "meta.json: members[0] must be an object with 'policy', 'weight' and 'meta'"),
    ("ensemble", set_meta(members=[{"policy": "irt", "weight": 1, "meta": {}}]),
     "meta.json: members[0].policy must be one of classifier, semantic, knn"),
    *[("ensemble", lambda m, a, w=w: m["members"][1].update(weight=w), "meta.json: members[1].weight must be a number, 0 or more")
      for w in (True, "1", float("inf"), -0.5, None)],
    ("ensemble", lambda m, a: [member.update(weight=0) for member in m["members"]],
     "meta.json: the members' weights must not all be 0"),
    ("ensemble", lambda m, a: a.pop("m1.quality"),
     "members[1] (semantic): arrays.npz lacks quality (needed by a semantic artefact)"),
    ("ensemble", lambda m, a: m["members"][0]["meta"].update(k=0), "members[0] (knn): meta.json: 'k' must be 1 or more"),
    # irt
    ("irt", set_array("difficulty", np.zeros(7)), SHAPES + "difficulty must have one weight a feature (8)"),
    ("irt", set_array("difficulty", np.zeros((1, 8))), SHAPES + "difficulty must have one weight a feature (8)"),
    ("irt", set_array("difficulty_intercept", np.zeros(2)), SHAPES + "difficulty_intercept must be one value"),
    ("irt", set_array("ability", np.zeros(3)), SHAPES + "ability and discrimination must have 2 values"),
    ("irt", set_array("discrimination", np.zeros(1)), SHAPES + "ability and discrimination must have 2 values"),
    ("irt", set_array("coef", np.zeros((2, 9))), SHAPES + "coef must be 2 × 8"),
    # cascade_routing
    ("cascade_routing", set_array("costs", np.ones(3)), SHAPES + "costs must have 2 values"),
    ("cascade_routing", set_array("pre_x", np.zeros(2)), SHAPES + "pre_x and pre_y must be 2 × knots"),
    ("cascade_routing", set_array("pre_x", np.zeros((3, 3))), SHAPES + "pre_x and pre_y must be 2 × knots"),
    ("cascade_routing", set_array("pre_y", np.zeros((2, 2))), SHAPES + "pre_x and pre_y must be 2 × knots"),
    ("cascade_routing", set_array("post_x", np.zeros(4)), SHAPES + "post_x and post_y must be 1 × knots"),
    ("cascade_routing", set_array("post_x", np.zeros((2, 4))), SHAPES + "post_x and post_y must be 1 × knots"),
    ("cascade_routing", set_array("post_y", np.zeros((1, 3))), SHAPES + "post_x and post_y must be 1 × knots"),
    ("cascade_routing", set_array("post_mix", np.zeros((1, 2))), SHAPES + "post_mix must be 1 × 3"),
    ("cascade_routing", set_array("post_mix", np.zeros((2, 3))), SHAPES + "post_mix must be 1 × 3"),
    ("cascade_routing", drop("classifier"), "meta.json: 'classifier' is missing or of the wrong type"),
    ("cascade_routing", set_meta(scorer=[1]), "meta.json: 'scorer' is missing or of the wrong type"),
    ("cascade_routing", set_meta(kappa="1"), "meta.json: 'kappa' is missing or of the wrong type"),
    ("cascade_routing", change_part("classifier", embedding_dim=2), "its classifier: " + SHAPES + "coef must be 2 × 10"),
    ("cascade_routing", lambda m, a: a.pop("classifier.idf"),
     "its classifier: arrays.npz lacks idf (needed by a classifier artefact)"),
    ("cascade_routing", set_array("scorer.scale", np.zeros(2)),
     "its scorer: " + SHAPES + "mean, scale and coef must be vectors of one length, intercept one value"),
    ("cascade_routing", change_part("scorer", threshold="x"), "its scorer: meta.json: 'threshold' must be a number"),
]


@pytest.mark.parametrize(("kind", "change", "message"), REFUSED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(REFUSED)])
def test_each_check_refuses_with_its_own_words(tmp_path, kind, change, message):
    assert error_of(tmp_path, kind, change) == message


ACCEPTED = [
    ("classifier", set_meta(embedding_dim=0, encoder=ENCODER), {"coef": (2, 6)}),
    ("semantic", lambda m, a: a.update(embeddings=np.eye(1, 4), quality=np.ones((1, 2)), step_ids=np.zeros(1)), {}),
    ("semantic", set_meta(neighbours=1, temperature=1e-9), {}),
    ("cascade", set_array("intercept", np.zeros(2)), {}),
    ("knn", set_array("step_ids", np.array([0, 1, 1, 1])), {}),
    ("knn", set_meta(k=1, prior_strength=0.0, distance_floor=1e-9, weighting="distance"), {}),
    ("knn", set_meta(embedding_dim=1), {"hand": 3}),
    ("knn", lambda m, a: a.update(references=np.zeros((4, 4)), hand_mean=np.zeros(0), hand_scale=np.ones(0)), {}),
    ("knn", set_array("step_ids", np.array([0, 0, 0, 0], dtype=np.uint8)), {}),
    ("ensemble", lambda m, a: m["members"][1].update(weight=0), {}),
    ("cascade", set_array("mean", np.zeros(3, dtype=bool)), {}),
    ("cascade", set_meta(threshold=-3), {}),
]


@pytest.mark.parametrize(("kind", "change", "extra"), ACCEPTED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(ACCEPTED)])
def test_values_on_the_bounds_are_accepted(tmp_path, kind, change, extra):
    def changed(meta, arrays):
        change(meta, arrays)
        if "coef" in extra:
            arrays["coef"] = np.zeros(extra["coef"])
        if "hand" in extra:  # embedding_dim 1: three text measures in the same five columns
            arrays["hand_mean"], arrays["hand_scale"] = np.zeros(3), np.ones(3)
    assert error_of(tmp_path, kind, changed) is None


def test_a_single_reference_knn_artefact_still_checks_its_step(tmp_path):
    def one(meta, arrays):
        for name in ("references", "quality"):
            arrays[name] = arrays[name][:1]
        arrays["step_ids"] = np.array([2], dtype=np.int32)
    assert error_of(tmp_path, "knn", one) == SHAPES + "step_ids must index steps"


def test_an_artefact_of_a_kind_without_checks_needs_only_labels_and_threshold(tmp_path):
    path = written(tmp_path, "custom", {}, {"anything": np.zeros((2, 2, 2))})
    assert load_artefact(path).policy == "custom"
    path = written(tmp_path, "custom", {"labels": []}, {})
    with pytest.raises(ArtefactError, match=r"'labels' must be a list of model names$"):
        load_artefact(path)


# -- the file ----------------------------------------------------------------------------------


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def meta_json(**values: Any) -> bytes:
    return json.dumps({"format": 1, "policy": "cascade", "labels": ["a"], "threshold": 0, **values}).encode()


CASCADE = {"mean": np.zeros(2), "scale": np.ones(2), "coef": np.zeros(2), "intercept": np.zeros(1)}


def refused(path: Path, policy: str | None = None) -> str:
    with pytest.raises(ArtefactError) as info:
        load_artefact(path, policy)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    return text[len(f"{path}: "):]


def test_the_file_errors_name_the_file_and_what_is_wrong(tmp_path):
    assert refused(tmp_path / "none.steproute") == "no such artefact file"
    (tmp_path / "plain").write_text("x")
    assert refused(tmp_path / "plain" / "child") == "cannot read the artefact (Not a directory)"
    assert refused(tmp_path) == "not a regular file (a directory, device or pipe); give an artefact file"
    bad = tmp_path / "bad.steproute"
    bad.write_bytes(b"not a zip at all")
    assert refused(bad) == "not a steproute artefact (BadZipFile: File is not a zip file)"
    bad.write_bytes(zipped({"arrays.npz": npz(**CASCADE)}))
    assert refused(bad) == "no meta.json inside: not a steproute artefact"
    bad.write_bytes(zipped({"meta.json": meta_json()}))
    assert refused(bad) == "no arrays.npz inside: not a steproute artefact"
    bad.write_bytes(zipped({"meta.json": b"\xff{}", "arrays.npz": npz(**CASCADE)}))
    assert refused(bad) == "meta.json is not JSON (UTF-8)"
    bad.write_bytes(zipped({"meta.json": b"[1]", "arrays.npz": npz(**CASCADE)}))
    assert refused(bad) == "meta.json is not a JSON object"
    bad.write_bytes(zipped({"meta.json": b"[" * 100_000, "arrays.npz": npz(**CASCADE)}))
    assert refused(bad) == "meta.json is not JSON (UTF-8)"


@pytest.mark.parametrize(("value", "shown"), [
    (2, "2"), (None, "None"), ("x" * 38, repr("x" * 38)), ("x" * 39, "a str"), (list(range(20)), "a list"),
])
def test_an_unknown_format_is_shown_when_short(tmp_path, value, shown):
    path = tmp_path / "f.steproute"
    meta: dict[str, Any] = json.loads(meta_json())
    if value is None:
        del meta["format"]
    else:
        meta["format"] = value
    path.write_bytes(zipped({"meta.json": json.dumps(meta).encode(), "arrays.npz": npz(**CASCADE)}))
    assert refused(path) == f"artefact format {shown}, this steproute reads 1"


def test_the_kind_expected_is_checked(tmp_path):
    path = tmp_path / "k.steproute"
    path.write_bytes(zipped({"meta.json": meta_json(), "arrays.npz": npz(**CASCADE)}))
    assert load_artefact(path, "cascade").policy == "cascade"
    assert refused(path, "knn") == "a 'cascade' artefact, not a 'knn' one"
    path.write_bytes(zipped({"meta.json": meta_json(policy="p" * 45), "arrays.npz": npz(**CASCADE)}))
    assert refused(path, "knn") == "a a str artefact, not a 'knn' one"
    meta = json.loads(meta_json())
    del meta["policy"]
    path.write_bytes(zipped({"meta.json": json.dumps(meta).encode(), "arrays.npz": npz(**CASCADE)}))
    assert refused(path, "knn") == "a None artefact, not a 'knn' one"
    assert load_artefact(path).policy is None


def test_the_size_limits_hold_at_their_bounds(tmp_path, monkeypatch):
    path = tmp_path / "s.steproute"
    meta = meta_json()
    path.write_bytes(zipped({"meta.json": meta, "arrays.npz": npz(**CASCADE)}, zipfile.ZIP_STORED))
    size = path.stat().st_size
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", size)
    assert load_artefact(path).policy == "cascade"
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", size - 1)
    assert refused(path) == "the file is larger than 0 MiB, the artefact limit"
    big_file = tmp_path / "big.steproute"
    big_file.write_bytes(bytes((1 << 20) + 1))  # refused on its size alone, unread
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", 1 << 20)
    assert refused(big_file) == "the file is larger than 1 MiB, the artefact limit"
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", 256 << 20)
    monkeypatch.setattr(_artefact, "MAX_META_BYTES", len(meta))
    assert load_artefact(path).policy == "cascade"
    monkeypatch.setattr(_artefact, "MAX_META_BYTES", len(meta) - 1)
    assert refused(path) == "meta.json is larger than 0 MiB once decompressed, the artefact limit"
    monkeypatch.setattr(_artefact, "MAX_META_BYTES", 16 << 20)
    big = meta + b" " * (3 << 20)
    path.write_bytes(zipped({"meta.json": big, "arrays.npz": npz(**CASCADE)}))
    monkeypatch.setattr(_artefact, "MAX_META_BYTES", 3 << 20)
    assert refused(path) == "meta.json is larger than 3 MiB once decompressed, the artefact limit"
    monkeypatch.setattr(_artefact, "MAX_META_BYTES", 16 << 20)
    # arrays.npz itself may decompress to the file limit, whatever the file's own size
    path.write_bytes(zipped({"meta.json": meta, "arrays.npz": npz(**CASCADE, big=np.zeros(3 << 19, dtype=np.uint8))}))
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", 1 << 20)
    assert path.stat().st_size < 1 << 16
    assert refused(path) == "arrays.npz is larger than 1 MiB once decompressed, the artefact limit"


def test_the_arrays_together_are_bounded_before_they_are_read(tmp_path, monkeypatch):
    path = tmp_path / "a.steproute"
    arrays = {**CASCADE, "big1": np.zeros(3 << 18, dtype=np.uint8), "big2": np.zeros(3 << 18, dtype=np.uint8)}
    path.write_bytes(zipped({"meta.json": meta_json(), "arrays.npz": npz(**arrays)}))
    with zipfile.ZipFile(path) as outer, zipfile.ZipFile(io.BytesIO(outer.read("arrays.npz"))) as inner:
        total = sum(i.file_size for i in inner.infolist())
        largest = max(i.file_size for i in inner.infolist())
    monkeypatch.setattr(_artefact, "MAX_ARRAY_BYTES", total)
    assert load_artefact(path).arrays["big2"].size == 3 << 18
    monkeypatch.setattr(_artefact, "MAX_ARRAY_BYTES", total - 1)
    assert largest < 1 << 20 < total  # no one array is over: their sum is
    assert refused(path) == "arrays.npz is larger than 1 MiB once decompressed, the artefact limit"
    monkeypatch.setattr(_artefact, "MAX_ARRAY_BYTES", 1 << 20)
    assert refused(path) == "arrays.npz is larger than 1 MiB once decompressed, the artefact limit"


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def test_each_array_is_read_from_its_own_npy(tmp_path):
    path = tmp_path / "n.steproute"

    def arrays_error(members: dict[str, bytes]) -> str:
        path.write_bytes(zipped({"meta.json": meta_json(policy="custom"), "arrays.npz": zipped(members)}))
        return refused(path)

    path.write_bytes(zipped({"meta.json": meta_json(policy="custom"), "arrays.npz": zipped(
        {"v1.npy": npy(np.arange(3.0)), "v2.npy": npy(np.arange(4), (2, 0)), "noext": npy(np.ones(2))})}))
    loaded = load_artefact(path).arrays
    assert loaded["v1"].tolist() == [0.0, 1.0, 2.0] and loaded["v2"].tolist() == [0, 1, 2, 3]
    assert loaded["noext"].tolist() == [1.0, 1.0]
    assert arrays_error({"o.npy": npy(np.array([1, "a"], dtype=object))}) == \
        "array 'o' holds Python objects (pickles are never loaded)"
    short = npy(np.arange(10.0))[:-8]  # one float missing
    assert arrays_error({"s.npy": short}) == "array 's': its header claims more data than it holds"
    short2 = npy(np.arange(10.0), (2, 0))[:-1]
    assert arrays_error({"s2.npy": short2}) == "array 's2': its header claims more data than it holds"
    header = io.BytesIO()  # 2**32 × 2**32 elements: 2**64, which a 64-bit product wraps to 0
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**32, 2**32)})
    assert arrays_error({"huge.npy": header.getvalue() + bytes(16)}) == \
        "array 'huge': its header claims more data than it holds"
    assert arrays_error({"g.npy": b"\x93NUMPY\x09\x00junk"}).startswith("array 'g' is not a NumPy array (")
    assert arrays_error({"g.npy": b"junk"}).startswith("array 'g' is not a NumPy array (")


def test_save_writes_atomically_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")  # os.replace onto a non-empty directory fails
    with pytest.raises(OSError):
        save_artefact(Artefact("cascade", {"labels": ["a"], "threshold": 0}, CASCADE), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    path = tmp_path / "ok.steproute"
    save_artefact(Artefact("cascade", {"labels": ["a"], "threshold": 0}, CASCADE), path)
    save_artefact(Artefact("cascade", {"labels": ["b"], "threshold": 1}, CASCADE), path)  # over an existing one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.steproute", "taken"]
    assert load_artefact(path).labels == ("b",)
    assert load_artefact(path).meta == {"labels": ["b"], "threshold": 1}


def test_packed_strings_round_trip():
    for strings in ([], ["a"], ["", "b"], ["é", "東京", "x y"], [""]):
        packed = pack_strings(strings)
        assert packed.dtype == np.uint8
        assert unpack_strings(packed) == (strings if strings != [""] else [])
    assert pack_strings(["ab", "c"]).tobytes() == b"ab\nc"
    with pytest.raises(ValueError, match=r"^strings to pack must not contain newlines$"):
        pack_strings(["ok", "two\nlines"])


def test_built_names_the_file_on_an_error_from_the_content():
    assert built("x.steproute", lambda: 7) == 7

    def fails(exc: BaseException):
        def build():
            raise exc
        return build

    with pytest.raises(ArtefactError, match=re.escape("x.steproute: the artefact does not fit its policy (lacks 'coef')")):
        built("x.steproute", fails(KeyError("coef")))
    for exc in (IndexError("index 3"), TypeError("t"), ValueError("v"), ZeroDivisionError("z")):
        with pytest.raises(ArtefactError) as info:
            built(Path("x.steproute"), fails(exc))
        assert str(info.value) == f"x.steproute: the artefact does not fit its policy ({type(exc).__name__}: {exc})"
    original = ArtefactError("as it was")
    with pytest.raises(ArtefactError) as info:
        built("x.steproute", fails(original))
    assert info.value is original
    with pytest.raises(RuntimeError):
        built("x.steproute", fails(RuntimeError("not about the content")))


def test_member_artefacts_split_an_ensembles_arrays():
    meta = {"labels": ["a", "b"], "threshold": 0.5, "members": [{"policy": "knn", "weight": 2, "meta": {"k": 3}},
                                                                 {"policy": "semantic", "weight": 0.5, "meta": {}}]}
    arrays = {"m0.x": np.zeros(1), "m0.y.z": np.ones(1), "m1.x": np.full(1, 2.0), "m10.x": np.zeros(2), "other": np.zeros(3)}
    (w0, a0), (w1, a1) = member_artefacts(meta, arrays)
    assert (w0, a0.policy, dict(a0.meta)) == (2.0, "knn", {"k": 3, "labels": ["a", "b"], "threshold": 0.0})
    assert isinstance(w0, float) and sorted(a0.arrays) == ["x", "y.z"]
    assert (w1, a1.policy, dict(a1.meta), a1.arrays["x"].tolist()) == (0.5, "semantic",
                                                                       {"labels": ["a", "b"], "threshold": 0.0}, [2.0])
    assert sorted(a1.arrays) == ["x"]


def test_no_file_is_left_when_saving_fails_midway(tmp_path, monkeypatch):
    def broken(*_: Any, **__: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_artefact(Artefact("cascade", {"labels": ["a"], "threshold": 0}, CASCADE), tmp_path / "x.steproute")
    assert list(tmp_path.iterdir()) == []
