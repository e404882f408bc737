"""A patient's timeline: mineral panels and sleep assessments together, newest first."""
