"""What one analysed frame (worker.FrameResult) says about the doctor: whether it can be judged
at all (guidance for the doctor) and whether it shows the registered doctor alone. Shared by
the verification before the call (verifier.py) and the re-checks during it (assurance.py)."""

from __future__ import annotations

from ..faces.worker import FrameResult


def frame_problem(result: FrameResult, min_face_px: int, dark_luma: float) -> str | None:
    """Why a frame cannot be judged (guidance for the doctor), or None: one face, big and lit
    enough. Small or dark faces have larger distances to the enrolled photo (config.py), so they
    are left out of the decision instead of counting against the doctor."""
    if result.faces == 0:
        return "too_dark" if result.luma < dark_luma else "no_face"
    if result.faces > 1:
        return "several_faces"
    if result.face_px < min_face_px:
        return "face_too_small"
    if result.luma < dark_luma:
        return "too_dark"
    return None


def classify(result: FrameResult, threshold: float) -> str | None:
    """None when the frame shows exactly one face that matches; else the reason it does not."""
    if result.faces == 0:
        return "no_face"
    if result.faces > 1:
        return "several_faces"
    if result.distance is not None and result.distance > threshold:
        return "not_registered"
    return None
