"""The analytics API: calls with filters and cursor pages (JSON or CSV), one call, summaries."""
