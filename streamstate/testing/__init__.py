"""Reusable test cases and test tools (the event-log contract, the AWS emulator)."""
