"""Call recording: both legs mixed into one file, kept in a storage backend."""
