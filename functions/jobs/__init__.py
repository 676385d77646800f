"""The job scheduler: Celery workers and beat on Redis (campaign dialing and retries, periodic
jobs). ``parley worker`` and ``parley beat`` start them."""
