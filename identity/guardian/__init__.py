"""The guardian on camera in pediatric consultations (issue 4): reference photos, the presence
monitor and its pure state machine."""
