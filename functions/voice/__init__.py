"""Twilio voice webhooks: answer inbound calls with a media stream, and track call status."""
