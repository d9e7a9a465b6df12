"""The gateway's test suite: real servers on loopback, one folder per part of the gateway."""
