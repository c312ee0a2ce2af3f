"""Face analysis shared by both checks: the worker pool (dlib and BlazeFace off the loop), frames
from a live feed, landmark geometry, reference-photo enrollment and protected storage."""
