"""Landmark markups: the 68-point iBUG configuration and the 21/34-point AFLW-PIFA subsets.

Thesis sections 1.2 (Fig. 1.2: the 68-point markup used from chapter 4 on, and the 21/34-point
configurations of chapter 3) and 3.2.1 (AFLW-PIFA).

68-point iBUG markup (0-based indices, "right"/"left" are the *subject's*: the subject's right side
appears on the image left in a frontal face)::

    jaw          0-16   from the subject's right ear, down round the chin (8), to the left ear
    right_brow  17-21   outer corner (17) to inner corner (21)
    left_brow   22-26   inner corner (22) to outer corner (26)
    nose_bridge 27-30   nose root (27) down to the tip (30)
    nose_lower  31-35   right alar base (31), columella (33), left alar base (35)
    right_eye   36-41   outer corner 36, upper lid 37-38, inner corner 39, lower lid 40-41
    left_eye    42-47   inner corner 42, upper lid 43-44, outer corner 45, lower lid 46-47
    outer_lip   48-59   right corner 48, upper lip 49-53 (philtrum top 51), left corner 54,
                        lower lip 55-59 (bottom centre 57)
    inner_lip   60-67   right corner 60, upper 61-63 (centre 62), left corner 64, lower 65-67
                        (centre 66)

AFLW 21-point markup (Koestinger et al. 2011; the "21 points" of thesis Tables 3.3/3.4). Order and
names as in the AFLW database; in this module "left"/"right" in those names are taken as the *image*
side (viewer's left), the convention in which AFLW's "LeftEyeCenter" has the smaller x in a frontal
face. How each point is obtained from the 68-point markup (``PIFA_21_FROM_68``; a tuple of several
indices means "mean of those points")::

     0 left brow, left corner   17        exact (outer corner of the image-left brow)
     1 left brow, centre        19        exact (middle of the 5 brow points)
     2 left brow, right corner  21        exact
     3 right brow, left corner  22        exact
     4 right brow, centre       24        exact
     5 right brow, right corner 26        exact
     6 left eye, left corner    36        exact
     7 left eye, centre         36-41     approximate: AFLW marks the pupil; the mean of the six
                                          eye-contour points is the centre of the eye opening
     8 left eye, right corner   39        exact
     9 right eye, left corner   42        exact
    10 right eye, centre        42-47     approximate, as point 7
    11 right eye, right corner  45        exact
    12 left ear (lobe)          2         approximate: the 68 markup has no ear point; jaw point 2
                                          lies on the cheek contour in front of the lobe, at the
                                          height of the nose base (the same stand-in as common
                                          68->21 conversions for AFLW evaluation)
    13 nose, left               31        exact (alar base)
    14 nose, centre (tip)       30        exact
    15 nose, right              35        exact
    16 right ear (lobe)         14        approximate, as point 12
    17 mouth, left corner       48        exact
    18 mouth, centre            62, 66    approximate: the point between the lips = mean of the
                                          inner upper- and lower-lip centres
    19 mouth, right corner      54        exact
    20 chin, centre             8         exact

AFLW-PIFA 34-point markup (Jourabloo & Liu: the 21 AFLW points plus 13 points annotated "from a 3D
perspective", thesis 3.2.1 and [54]; the caption of thesis Fig. 1.2 says "21 and 31" points, but
chapter 3's text and Tables 3.3, 3.5, 5.11 and 5.12 use 34). The public sources reachable while writing this module (no
internet beyond package registries) do not give the order of the 13 extra points, so this is OUR
definition, chosen to cover what the paper describes (eye lids, lips, nose root and the face
contour). Readers of real AFLW-PIFA files must check the order against the dataset before using
``PIFA_34_FROM_68`` as a correspondence; the synthetic stand-in of this project is defined by it::

    0-20  the 21 AFLW points above
    21 image-left eye, upper lid centre   37, 38   approximate (mean of the two upper-lid points)
    22 image-left eye, lower lid centre   40, 41   approximate
    23 image-right eye, upper lid centre  43, 44   approximate
    24 image-right eye, lower lid centre  46, 47   approximate
    25 nose root                           27       exact
    26 upper lip, top centre               51       exact
    27 lower lip, bottom centre            57       exact
    28-33 face contour                     0, 3, 6, 10, 13, 16   exact jaw points, spread
                                           along the contour (the chin 8 is point 20 and the
                                           ear stand-ins 2 and 14 are points 12 and 16)

A point built from several 68-point indices is visible only when all of them are visible.

CelebA's 5 points (Liu et al. 2015; ``list_landmarks_celeba.txt``; its "left" is the image side, as in a
frontal face its ``lefteye_x`` is the smaller) and how each relates to the 68-point markup
(``CELEBA_5_FROM_68``)::

    0 left eye     36-41   approximate: CelebA marks the eye's centre; the mean of the six contour points
    1 right eye    42-47   approximate, as point 0
    2 nose (tip)   30      exact
    3 left mouth   48      exact
    4 right mouth  54      exact
"""
from __future__ import annotations

import numpy as np

N_LANDMARKS_68 = 68

PARTS_68: dict[str, np.ndarray] = {
    "jaw": np.arange(0, 17),
    "right_brow": np.arange(17, 22),
    "left_brow": np.arange(22, 27),
    "nose_bridge": np.arange(27, 31),
    "nose_lower": np.arange(31, 36),
    "right_eye": np.arange(36, 42),
    "left_eye": np.arange(42, 48),
    "outer_lip": np.arange(48, 60),
    "inner_lip": np.arange(60, 68),
}

# Index of the point that a horizontal mirror of the image turns point i into (the permutation of
# the official FAN code, face-alignment v1.5). It is an involution: applying it twice is the identity.
FLIP_PERMUTATION_68 = np.array(
    list(range(16, -1, -1))            # jaw
    + list(range(26, 16, -1))          # brows swap
    + [27, 28, 29, 30]                 # nose bridge is on the symmetry axis
    + [35, 34, 33, 32, 31]             # nose lower
    + [45, 44, 43, 42, 47, 46]         # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]         # left eye <- right eye
    + list(range(54, 47, -1))          # outer upper lip
    + list(range(59, 54, -1))          # outer lower lip
    + list(range(64, 59, -1))          # inner upper lip
    + [67, 66, 65],                    # inner lower lip
    dtype=np.int64,
)

# Each entry: the 68-point indices whose mean gives that point (see the module docstring).
PIFA_21_FROM_68: tuple[tuple[int, ...], ...] = (
    (17,), (19,), (21,), (22,), (24,), (26,),
    (36,), (36, 37, 38, 39, 40, 41), (39,),
    (42,), (42, 43, 44, 45, 46, 47), (45,),
    (2,), (31,), (30,), (35,), (14,),
    (48,), (62, 66), (54,),
    (8,),
)
PIFA_34_FROM_68: tuple[tuple[int, ...], ...] = PIFA_21_FROM_68 + (
    (37, 38), (40, 41), (43, 44), (46, 47),
    (27,), (51,), (57,),
    (0,), (3,), (6,), (10,), (13,), (16,),
)

CELEBA_5_FROM_68: tuple[tuple[int, ...], ...] = (
    (36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,),
)

# Horizontal-flip permutations of the subsets, consistent with FLIP_PERMUTATION_68 (tested).
FLIP_PERMUTATION_21 = np.array(
    [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 16, 15, 14, 13, 12, 19, 18, 17, 20], dtype=np.int64)
FLIP_PERMUTATION_34 = np.concatenate([
    FLIP_PERMUTATION_21,
    np.array([23, 24, 21, 22, 25, 26, 27, 33, 32, 31, 30, 29, 28], dtype=np.int64),
])


def _as_points(points, name: str = "points"):
    array = points if _is_torch(points) else np.asarray(points)
    if array.ndim < 2 or array.shape[-1] not in (2, 3):
        raise ValueError(f"{name} must have shape (..., N, 2) or (..., N, 3), got {tuple(array.shape)}")
    return array


def _is_torch(values) -> bool:
    return type(values).__module__.startswith("torch")


def flip_landmarks(points, width: float, permutation=None):
    """Landmarks of the horizontally mirrored image: x -> width - x, then the left/right permutation.

    ``width`` is the image width in pixels; in continuous coordinates (pixel centres at j + 0.5)
    the mirror maps x to ``width - x`` exactly. ``points`` has shape (..., N, 2|3) (numpy or torch;
    the same kind is returned); z (if present) is unchanged. ``permutation`` defaults to
    FLIP_PERMUTATION_68 (or the 21/34 ones by N).
    """
    array = _as_points(points)
    n_points = array.shape[-2]
    if permutation is None:
        by_count = {68: FLIP_PERMUTATION_68, 21: FLIP_PERMUTATION_21, 34: FLIP_PERMUTATION_34}
        if n_points not in by_count:
            raise ValueError(f"no default flip permutation for {n_points} points; pass permutation=")
        permutation = by_count[n_points]
    permutation = np.asarray(permutation)
    if permutation.shape != (n_points,):
        raise ValueError(f"permutation must have shape ({n_points},), got {permutation.shape}")
    if _is_torch(array):
        import torch

        flipped = array[..., torch.as_tensor(permutation, device=array.device), :].clone()
    else:
        flipped = np.array(array[..., permutation, :], copy=True)
    flipped[..., 0] = width - flipped[..., 0]
    return flipped


def subset_matrix(groups) -> np.ndarray:
    """(K, 68) float matrix that averages the 68-point indices of each group: ``M @ points``."""
    matrix = np.zeros((len(groups), N_LANDMARKS_68), dtype=np.float64)
    for row, indices in enumerate(groups):
        matrix[row, list(indices)] = 1.0 / len(indices)
    return matrix


def _landmarks_68_to(groups, points) -> np.ndarray:
    array = _as_points(points)
    if array.shape[-2] != N_LANDMARKS_68:
        raise ValueError(f"points must have 68 landmarks on axis -2, got shape {array.shape}")
    out = np.einsum("kn,...nc->...kc", subset_matrix(groups), array.astype(np.float64))
    return out.astype(array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32)


def _visibility_68_to(groups, visibility) -> np.ndarray:
    mask = np.asarray(visibility).astype(bool)
    if mask.shape[-1] != N_LANDMARKS_68:
        raise ValueError(f"visibility must have 68 entries on its last axis, got shape {mask.shape}")
    return np.stack([mask[..., list(indices)].all(axis=-1) for indices in groups], axis=-1)


def landmarks_68_to_pifa34(points) -> np.ndarray:
    """(..., 68, 2|3) -> (..., 34, 2|3) AFLW-PIFA 34-point configuration (module docstring)."""
    return _landmarks_68_to(PIFA_34_FROM_68, points)


def landmarks_68_to_21(points) -> np.ndarray:
    """(..., 68, 2|3) -> (..., 21, 2|3) AFLW 21-point configuration (module docstring)."""
    return _landmarks_68_to(PIFA_21_FROM_68, points)


def visibility_68_to_pifa34(visibility) -> np.ndarray:
    """(..., 68) bool -> (..., 34) bool; a mean point is visible only if all its sources are."""
    return _visibility_68_to(PIFA_34_FROM_68, visibility)


def visibility_68_to_21(visibility) -> np.ndarray:
    """(..., 68) bool -> (..., 21) bool; a mean point is visible only if all its sources are."""
    return _visibility_68_to(PIFA_21_FROM_68, visibility)


def face_part_polygons(repeat_first: bool = False) -> dict[str, np.ndarray]:
    """Closed index loops over the 68 points that enclose each face-parsing region (thesis 5.8).

    Thesis section 5.8 builds its 7-class face-parsing masks (background, skin, upper lip, lower
    lip, inner mouth, eyes, nose) by joining the 68 ground-truth landmarks. Returned loops:

    - ``skin``: jaw 0..16 then the brows' upper outline back from 26 to 17 (the face outline);
    - ``upper_lip``: outer upper lip 48..54 then inner upper lip back 64..60;
    - ``lower_lip``: outer lower lip 54..59, 48 then inner lower lip 60, 67, 66, 65, 64;
    - ``inner_mouth``: inner lip 60..67;
    - ``right_eye`` 36..41, ``left_eye`` 42..47;
    - ``nose``: nose root 27 then the lower nose 31..35.

    A loop is closed: its last vertex joins its first (``cv2.fillPoly`` closes it by itself;
    ``repeat_first=True`` appends the first index, convenient for plotting). Paint skin first and
    the inner parts over it.
    """
    loops = {
        "skin": np.r_[np.arange(0, 17), np.arange(26, 16, -1)],
        "upper_lip": np.r_[np.arange(48, 55), np.arange(64, 59, -1)],
        "lower_lip": np.r_[np.arange(54, 60), 48, 60, 67, 66, 65, 64],
        "inner_mouth": np.arange(60, 68),
        "right_eye": np.arange(36, 42),
        "left_eye": np.arange(42, 48),
        "nose": np.r_[27, np.arange(31, 36)],
    }
    if repeat_first:
        loops = {name: np.r_[loop, loop[0]] for name, loop in loops.items()}
    return {name: loop.astype(np.int64) for name, loop in loops.items()}
