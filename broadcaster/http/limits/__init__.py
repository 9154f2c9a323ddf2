"""Admission caps (the gate's last policy) and request hygiene: head size and time, body idle time."""
