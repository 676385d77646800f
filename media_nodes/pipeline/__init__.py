"""One call's orchestration: caller audio in, agent audio out, events beside it."""
