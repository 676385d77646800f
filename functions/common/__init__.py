"""What every function shares: settings, runtime resources, auth, errors and the Lambda wrapper."""
