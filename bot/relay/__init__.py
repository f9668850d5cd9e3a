"""The relay: sessions that follow the call, inbound intake, the outbox workers and the meeting readers."""
