"""Tests of the Redis store, the leader lease and the sandbox Redis server."""
