"""Transports: how call audio reaches a media node (Twilio Media Streams, WebRTC)."""
