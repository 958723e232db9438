"""`voicebridge call`: place an outbound call through a running voicebridge."""
