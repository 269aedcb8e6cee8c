"""Media intake: images from requests, decoded and checked before they reach an engine."""
