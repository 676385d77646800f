"""Outbound campaigns: contacts called by an agent in their local calling window, with retries,
limits and a do-not-call list. The API lives here; the dialing runs in the job workers."""
