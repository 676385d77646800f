"""Audio plumbing: codecs, resampling, voice activity and turn endpointing."""
