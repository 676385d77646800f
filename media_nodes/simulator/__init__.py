"""A caller that speaks the Twilio Media Streams protocol, for demos, tests and benchmarks."""
