"""Twilio REST: transfer a live call to a human, and place outbound calls."""
