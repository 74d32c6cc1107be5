"""A Django app that starts and steers workflows with ``durableflow.SyncClient``."""
