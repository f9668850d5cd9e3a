"""The SMS wing: texts in from the ACS SMS and Twilio-style gateways, keyword commands, texts out to phones."""
