"""What the tests share: the sandbox's control client, ACS helpers, the bridge harness and its worlds."""
